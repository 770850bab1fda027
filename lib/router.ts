import { Router, type NextFunction, type Request, type Response } from 'express';
import type { ServerResponse } from 'node:http';
import type { MethodTable, RegistryRequest, ResolvedOptions, ResourceDispatcher, HttpMethod } from './context';
import { RegistryError, sendError } from './errors';
import { moduleLogger } from './log';
import { ManifestStore } from './manifest-store';
import { validateName } from './names';
import { baseDispatcher } from './resources/base';
import { blobDispatcher } from './resources/blobs';
import { catalogDispatcher } from './resources/catalog';
import { manifestDispatcher } from './resources/manifests';
import { referrersDispatcher } from './resources/referrers';
import { tagsDispatcher } from './resources/tags';
import { uploadDispatcher } from './resources/uploads';
import type { StorageAdapter } from './storage/adapter';
import type { RegistryEvents, RegistryEventMap } from './events';
import { RegistryStore } from './store';

/** Options for {@link createRegistryRouter}. */
export interface RegistryOptions {
  /** Where blobs, uploads and documents are kept: `FileSystemStorage`, `MemoryStorage` or your own adapter. */
  storage: StorageAdapter;
  /**
   * Whether `POST …/blobs/uploads/?mount=<digest>` without `from` links a blob stored under any
   * repository. Default true. Turn it off when repositories must not learn of each other's blobs.
   */
  mountFromAnyRepository?: boolean;
  /** Whether DELETE requests are served; when false they get 405 `UNSUPPORTED`. Default true. */
  deleteEnabled?: boolean;
  /** Largest manifest accepted, in bytes; a larger one gets 413 `MANIFEST_INVALID`. Default 4 MiB. */
  maxManifestSize?: number;
  /** Least milliseconds between two `uploadProgress` events while one request body streams in. Default 500. */
  progressInterval?: number;
}

/** The router {@link createRegistryRouter} returns: an Express router with the registry's events and store. */
export interface RegistryRouter extends Router {
  /** Typed events for every change: uploads, commits, mounts, deletions. See {@link RegistryEventMap}. */
  readonly events: RegistryEvents;
  /** The registry's data model over the storage adapter, for host code that stores blobs itself. */
  readonly store: RegistryStore;
}

/** The default of {@link RegistryOptions.maxManifestSize}: the spec asks registries to accept at least 4 MiB. */
export const DEFAULT_MAX_MANIFEST_SIZE = 4 * 1024 * 1024;

interface Route {
  pattern: RegExp;
  /** Names of the pattern's capture groups, in order; `name` is the repository. */
  params: string[];
  module: string;
  dispatcher: ResourceDispatcher;
}

// Repository names may contain slashes, so each pattern anchors on the path's fixed tail.
const ROUTES: Route[] = [
  { pattern: /^\/v2\/?$/, params: [], module: 'base', dispatcher: baseDispatcher },
  // Before the repository routes: `_catalog` is not a repository name.
  { pattern: /^\/v2\/_catalog$/, params: [], module: 'catalog', dispatcher: catalogDispatcher },
  { pattern: /^\/v2\/(.+)\/blobs\/uploads\/?$/, params: ['name'], module: 'upload', dispatcher: uploadDispatcher },
  { pattern: /^\/v2\/(.+)\/blobs\/uploads\/([^/]+)$/, params: ['name', 'uploadId'], module: 'upload', dispatcher: uploadDispatcher },
  { pattern: /^\/v2\/(.+)\/blobs\/([^/]+)$/, params: ['name', 'digest'], module: 'blob', dispatcher: blobDispatcher },
  { pattern: /^\/v2\/(.+)\/manifests\/([^/]+)$/, params: ['name', 'reference'], module: 'manifest', dispatcher: manifestDispatcher },
  { pattern: /^\/v2\/(.+)\/tags\/list$/, params: ['name'], module: 'tags', dispatcher: tagsDispatcher },
  { pattern: /^\/v2\/(.+)\/referrers\/([^/]+)$/, params: ['name', 'digest'], module: 'referrers', dispatcher: referrersDispatcher },
];

const loggers = new Map(ROUTES.map((route) => [route.module, moduleLogger(route.module)]));
const routerLog = moduleLogger('router')({});

/**
 * Creates an Express router that serves the OCI Distribution API under `/v2/`. Mount it in any
 * Express 4 or 5 app, at the root or under a prefix; every `Location` it returns includes the
 * prefix. Paths outside `/v2` pass through to the host app.
 *
 * @example
 * ```ts
 * const app = express();
 * app.use(createRegistryRouter({ storage: new FileSystemStorage({ root: './registry-data' }) }));
 * ```
 */
export function createRegistryRouter(options: RegistryOptions): RegistryRouter {
  const store = new RegistryStore(options.storage, { progressInterval: options.progressInterval });
  const resolved: ResolvedOptions = {
    mountFromAnyRepository: options.mountFromAnyRepository ?? true,
    deleteEnabled: options.deleteEnabled ?? true,
    maxManifestSize: options.maxManifestSize ?? DEFAULT_MAX_MANIFEST_SIZE,
  };
  const manifests = new ManifestStore(store);
  const router = Router();
  router.use((req: Request, res: Response, next: NextFunction) => {
    const path = req.path;
    if (path !== '/v2' && !path.startsWith('/v2/')) {
      next();
      return;
    }
    void dispatch(req as unknown as RegistryRequest, res, store, manifests, resolved);
  });
  return Object.assign(router, { events: store.events, store });
}

async function dispatch(req: RegistryRequest, res: ServerResponse, store: RegistryStore, manifests: ManifestStore, options: ResolvedOptions): Promise<void> {
  res.setHeader('Docker-Distribution-API-Version', 'registry/2.0');
  try {
    const route = ROUTES.find((candidate) => candidate.pattern.test(req.path));
    if (!route) throw new RegistryError('NAME_UNKNOWN', `no registry endpoint at ${req.path.slice(0, 200)}`, { status: 404 });
    const values = route.pattern.exec(req.path)!.slice(1);
    const params: Record<string, string> = {};
    route.params.forEach((name, index) => (params[name] = decodeParam(values[index])));
    const repository = route.params[0] === 'name' ? validateName(values[0]) : '';
    const query = new URL(req.url ?? '/', 'http://registry.invalid').searchParams;
    const log = loggers.get(route.module)!({ repository: repository || undefined, upload: params.uploadId });
    const table: MethodTable = route.dispatcher({ req, res, store, manifests, options, baseUrl: req.baseUrl, repository, params, query }, log);
    const handler = table[req.method as HttpMethod];
    if (!handler) {
      const allow = Object.keys(table).join(', ');
      throw new RegistryError('UNSUPPORTED', `${req.method} is not supported here; allowed: ${allow}`, { headers: { Allow: allow } });
    }
    log('%s %s', req.method, req.path);
    await handler();
  } catch (error) {
    if (!(error instanceof RegistryError)) routerLog('error on %s %s: %O', req.method, req.path, error);
    if (!req.complete) {
      // The body was not read to its end: close the connection rather than leave it half-read.
      res.setHeader('Connection', 'close');
      req.resume();
    }
    sendError(res, error);
  }
}

/** Percent-decodes a path parameter; a malformed escape is left as is and then fails validation. */
function decodeParam(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}
