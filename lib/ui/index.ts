/**
 * The registry UI's router (`express-oci-registry/ui`): serves the browser app in the package's
 * `ui/` folder, which reads everything through the registry's own `/v2` API.
 *
 * @packageDocumentation
 */
import { Router, static as serveStatic, type Request, type Response } from 'express';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { moduleLogger } from '../log';
import type { RegistryRouter } from '../router';

/** Options for {@link createRegistryUi}. */
export interface RegistryUiOptions {
  /**
   * The registry the UI browses: the router from `createRegistryRouter` when it is mounted at the
   * app's root, or the URL path it is mounted under (`'/registry'` for
   * `app.use('/registry', registry)`). The page calls that API from the browser with the user's
   * own credentials, so the registry's `authorize` decides what each user sees and may delete.
   */
  registry: RegistryRouter | string;
  /** The page's heading and document title. Default `'Registry'`. */
  title?: string;
  /** Never offer to delete, whatever the registry allows. Default false. */
  readOnly?: boolean;
  /** Links shown in the page's header beside the title, e.g. to a page of the host app. */
  links?: { href: string; text: string }[];
}

/** What the page reads from its `ui-config` script element. */
interface PageConfig {
  title: string;
  api: string;
  readOnly: boolean;
  links: { href: string; text: string }[];
}

const log = moduleLogger('ui')({});

/**
 * The browser app's files: `ui/` beside the package's package.json, found by walking up from this
 * file, wherever it was compiled to (`lib/ui`, `dist/lib/ui`, a test's build folder).
 */
function staticDirectory(): string {
  for (let directory = __dirname; ; directory = dirname(directory)) {
    if (existsSync(join(directory, 'ui', 'index.html')) && packageName(directory) === PACKAGE_NAME) return join(directory, 'ui');
    if (dirname(directory) === directory) throw new Error(`the registry UI's files are missing: no ${PACKAGE_NAME} package with a ui/ folder above ${__dirname}`);
  }
}

const PACKAGE_NAME = 'express-oci-registry';

function packageName(directory: string): string | undefined {
  try {
    return (JSON.parse(readFileSync(join(directory, 'package.json'), 'utf8')) as { name?: string }).name;
  } catch {
    return undefined;
  }
}

/** The registry's URL path prefix without a trailing slash: `''` at the root. */
function apiPrefix(registry: RegistryRouter | string): string {
  if (typeof registry !== 'string') return '';
  if (!registry.startsWith('/')) throw new TypeError(`createRegistryUi: registry must be a URL path starting with "/", got ${JSON.stringify(registry)}`);
  return registry.replace(/\/+$/, '');
}

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' };

/**
 * The page with its title and configuration filled in, in one pass so a title cannot inject a
 * placeholder; JSON in a script element cannot end it early once `<` is escaped.
 */
function renderPage(template: string, config: PageConfig): string {
  const values: Record<string, string> = {
    title: config.title.replace(/[&<>"]/g, (character) => HTML_ESCAPES[character]),
    config: JSON.stringify(config).replace(/</g, '\\u003c'),
  };
  return template.replace(/\{\{(title|config)\}\}/g, (_, name: string) => values[name]);
}

/**
 * Creates an Express router serving the registry UI: repositories, tags, manifests and images,
 * referrers, pull commands and deletes. Mount it anywhere (`app.use('/ui', createRegistryUi(…))`);
 * it serves only GET and HEAD of its own files and passes every other request on. The page needs
 * no network beyond the registry: every file ships in the package.
 *
 * @example
 * ```ts
 * const registry = createRegistryRouter({ storage });
 * app.use(registry);
 * app.use('/ui', createRegistryUi({ registry, title: 'Our images' }));
 * ```
 */
export function createRegistryUi(options: RegistryUiOptions): Router {
  const directory = staticDirectory();
  const page = renderPage(readFileSync(join(directory, 'index.html'), 'utf8'), {
    title: options.title ?? 'Registry',
    api: apiPrefix(options.registry),
    readOnly: options.readOnly ?? false,
    links: options.links ?? [],
  });
  const sendPage = (req: Request, res: Response) => {
    log('page %s', req.originalUrl);
    res.setHeader('Cache-Control', 'no-cache');
    res.type('html').send(page);
  };
  const router = Router();
  router.get('/', (req: Request, res: Response) => {
    // Without the slash, the page's relative URLs would resolve against the mount's parent.
    const [path, query] = splitUrl(req.originalUrl);
    if (path.endsWith('/')) sendPage(req, res);
    // Leading slashes collapse to one, so the target can never read as another host (`//host/`).
    else res.redirect(301, `${path.replace(/^\/+/, '/')}/${query}`);
  });
  // The template itself is never served as it is.
  router.get('/index.html', sendPage);
  router.use(serveStatic(directory, { index: false, redirect: false }));
  return router;
}

function splitUrl(url: string): [string, string] {
  const at = url.indexOf('?');
  return at === -1 ? [url, ''] : [url.slice(0, at), url.slice(at)];
}
