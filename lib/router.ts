// The registry router: routes, access checks, read-only mode, request tracking and the router's own lifecycle.
import { Router, type NextFunction, type Request, type Response } from 'express';
import type { ServerResponse } from 'node:http';
import { DEFAULT_CHALLENGE, enforceAccess, type AccessRequest, type Action, type Authorize, type Challenge } from './access';
import type { MethodTable, RegistryRequest, ResolvedOptions, ResourceDispatcher, HttpMethod } from './context';
import { RegistryError, sendError } from './errors';
import { moduleLogger } from './log';
import { isName, validateName } from './names';
import { baseDispatcher } from './resources/base';
import { blobDispatcher } from './resources/blobs';
import { catalogDispatcher } from './resources/catalog';
import { manifestDispatcher } from './resources/manifests';
import { referrersDispatcher } from './resources/referrers';
import { tagsDispatcher } from './resources/tags';
import { uploadDispatcher } from './resources/uploads';
import type { StorageAdapter } from './storage/adapter';
import { RegistryEvents, type RegistryEventMap, type RequestInfo, type RouteName } from './events';
import { checkStorage } from './health';
import { Notifier, type NotificationEndpoint } from './notifications/notifier';
import { startRequest, trackRequest, withOrigin } from './request-log';
import { observeStorage } from './storage/observed';
import { RegistryStore, type CollectOptions, type CollectionReport } from './store';

/** Options for {@link createRegistryRouter}. */
export interface RegistryOptions {
  /** Where blobs, uploads and documents are kept: `FileSystemStorage`, `MemoryStorage` or your own adapter. */
  storage: StorageAdapter;
  /**
   * Whether `POST …/blobs/uploads/?mount=<digest>` without `from` links a blob stored under any
   * repository. Default true, or false when `authorize` is set. Turn it off when repositories must
   * not learn of each other's blobs.
   */
  mountFromAnyRepository?: boolean;
  /** Whether DELETE requests are served; when false they get 405 `UNSUPPORTED`. Default true. */
  deleteEnabled?: boolean;
  /** Largest manifest accepted, in bytes; a larger one gets 413 `MANIFEST_INVALID`. Default 4 MiB. */
  maxManifestSize?: number;
  /**
   * Accept sparse manifests: an image whose blobs, or an index whose child manifests, are not in
   * the repository (a mirror that holds one platform of an image, say). They are served like any
   * other manifest; a pull of a blob that is not there is still 404 `BLOB_UNKNOWN`. Default false:
   * such a push gets 400 `MANIFEST_BLOB_UNKNOWN`.
   */
  allowSparseManifests?: boolean;
  /** Least milliseconds between two `uploadProgress` events while one request body streams in. Default 500. */
  progressInterval?: number;
  /**
   * Access control: asked for every request, before any storage is touched, whether it may do
   * the actions its endpoint needs (see the README's table). Default: everything is allowed.
   */
  authorize?: Authorize;
  /** The `WWW-Authenticate` challenge of a 401. Default `Basic realm="registry"`. */
  challenge?: Challenge;
  /** Largest blob accepted, in bytes; a larger one is refused with 413 `SIZE_INVALID` while it streams. Default 16 GiB. */
  maxBlobSize?: number;
  /** Most upload sessions open at once in one repository; more get 429 `TOOMANYREQUESTS`. Default 1000. */
  maxUploadsPerRepository?: number;
  /** Most running hashes kept in memory (about 1 KiB each); a session whose hash was dropped verifies by reading back. Default 4096. */
  runningHashCache?: number;
  /** Most upload session records kept in memory (about 1 KiB each); a dropped one is read from storage again. Default 8192. */
  sessionRecordCache?: number;
  /**
   * Milliseconds a request body may stall (no byte arriving while the registry waits for one)
   * before the request is ended with 408 and its session freed. Default 60000.
   */
  bodyIdleTimeout?: number;
  /**
   * Removing upload sessions nobody finished: sessions older than `maxAge` milliseconds (default
   * 7 days) are removed every `interval` milliseconds (default 24 h, plus up to 10% jitter).
   * `false` schedules nothing; {@link RegistryRouter.purgeStaleUploads} still runs on demand.
   */
  uploadPurging?: { maxAge?: number; interval?: number } | false;
  /**
   * Refuses every write (POST, PATCH, PUT, DELETE) with 405 `UNSUPPORTED` while reads go on, e.g.
   * to drain a registry for maintenance. A function is asked on every request, so the mode can
   * change at run time; {@link RegistryRouter.setReadOnly} changes it too. Default false.
   */
  readOnly?: boolean | (() => boolean);
  /** Called once for every request under `/v2` when it ends: an access log line, see {@link RequestInfo}. */
  onRequest?: (info: RequestInfo) => void;
  /**
   * Webhooks: every change (manifest pushed or deleted, tag deleted, blob mounted or deleted, and
   * blob commits when asked) is POSTed as JSON to each endpoint, at least once, through an outbox
   * kept in the storage adapter. See docs/operations.md.
   */
  notifications?: NotificationEndpoint[];
  /**
   * Online garbage collection, off by default: every `interval` milliseconds (plus up to 10%
   * jitter) a collection runs with `grace` and `untagged` as in {@link CollectOptions} (and the
   * purging `maxAge` for abandoned sessions). {@link RegistryRouter.collectGarbage} runs one on
   * demand either way, with these settings as its defaults.
   */
  garbageCollection?: { interval?: number; grace?: number; untagged?: number } | false;
}

/** The router {@link createRegistryRouter} returns: an Express router with the registry's events, store and maintenance calls. */
export interface RegistryRouter extends Router {
  /** Typed events for every change: uploads, commits, mounts, deletions. See {@link RegistryEventMap}. */
  readonly events: RegistryEvents;
  /**
   * The registry's data model over the storage adapter, held to the router's limits: uploads,
   * blobs (`store.putBlob` stores one in a call) and manifests, for host code that stores or reads
   * content itself (the multer bridge, an artifact built from a form).
   */
  readonly store: RegistryStore;
  /**
   * Removes upload sessions started more than the purging `maxAge` ago (or `maxAge` given here)
   * and resolves to their ids. Sessions with a request in flight are left alone.
   */
  purgeStaleUploads(maxAge?: number): Promise<string[]>;
  /**
   * Resolves once the storage answers a cheap read (one document lookup) within `timeout` ms
   * (default 5000); rejects with the adapter's error or a timeout. For readiness probes.
   */
  health(timeout?: number): Promise<void>;
  /** Whether writes are refused right now; see {@link RegistryOptions.readOnly}. */
  isReadOnly(): boolean;
  /** Switches read-only mode at run time, to a fixed value or to a function asked on every request. */
  setReadOnly(readOnly: boolean | (() => boolean)): void;
  /**
   * Stops the router's timers (purging, garbage collection, notification delivery) and waits for deliveries in
   * flight to end; undelivered notifications stay in the outbox for the next start.
   */
  close(): Promise<void>;
  /**
   * Runs one garbage collection over the storage (see the README's Garbage collection section)
   * and resolves to its report. Safe while this and other processes serve pushes and pulls from
   * the same storage; rejects with `CollectionRunningError` while another collection runs.
   */
  collectGarbage(options?: CollectOptions): Promise<CollectionReport>;
}

const DAY = 24 * 60 * 60 * 1000;

/** The default of {@link RegistryOptions.maxManifestSize}: the spec asks registries to accept at least 4 MiB. */
export const DEFAULT_MAX_MANIFEST_SIZE = 4 * 1024 * 1024;

interface Route {
  pattern: RegExp;
  /** Names of the pattern's capture groups, in order; `name` is the repository. */
  params: string[];
  module: Exclude<RouteName, 'unknown'>;
  dispatcher: ResourceDispatcher;
  /** The actions each method needs on the route's repository; a method absent here is not served. */
  access: Partial<Record<HttpMethod, Action[]>>;
  /** Marks the route's question as the catalog's (see {@link AccessRequest.catalog}). */
  catalog?: true;
  /** Further access a request needs beyond its own repository (a mount's source). */
  extraAccess?: (query: URLSearchParams) => AccessRequest[];
}

// Repository names may contain slashes, so each pattern anchors on the path's fixed tail.
// Pushing needs pull too, as in the reference registry: an upload can mount and probe blobs.
const PULL: Action[] = ['pull'];
const PUSH: Action[] = ['pull', 'push'];
const DELETE: Action[] = ['delete'];
export const ROUTES: Route[] = [
  { pattern: /^\/v2\/?$/, params: [], module: 'base', dispatcher: baseDispatcher, access: { GET: [], HEAD: [] } },
  // Before the repository routes: `_catalog` is not a repository name. It lists only what the caller may see.
  { pattern: /^\/v2\/_catalog$/, params: [], module: 'catalog', dispatcher: catalogDispatcher, access: { GET: [] }, catalog: true },
  {
    pattern: /^\/v2\/(.+)\/blobs\/uploads\/?$/,
    params: ['name'],
    module: 'upload',
    dispatcher: uploadDispatcher,
    access: { POST: PUSH },
    // A malformed `from` mounts nothing (the request opens a session in its own repository), so it needs no access.
    extraAccess: (query) => {
      const from = query.get('mount') !== null ? query.get('from') : null;
      return from !== null && isName(from) ? [{ repository: from, actions: PULL }] : [];
    },
  },
  {
    pattern: /^\/v2\/(.+)\/blobs\/uploads\/([^/]+)$/,
    params: ['name', 'uploadId'],
    module: 'upload',
    dispatcher: uploadDispatcher,
    access: { GET: PUSH, HEAD: PUSH, PATCH: PUSH, PUT: PUSH, DELETE: PUSH },
  },
  {
    pattern: /^\/v2\/(.+)\/blobs\/([^/]+)$/,
    params: ['name', 'digest'],
    module: 'blob',
    dispatcher: blobDispatcher,
    access: { GET: PULL, HEAD: PULL, DELETE },
  },
  {
    pattern: /^\/v2\/(.+)\/manifests\/([^/]+)$/,
    params: ['name', 'reference'],
    module: 'manifest',
    dispatcher: manifestDispatcher,
    access: { GET: PULL, HEAD: PULL, PUT: PUSH, DELETE },
  },
  { pattern: /^\/v2\/(.+)\/tags\/list$/, params: ['name'], module: 'tags', dispatcher: tagsDispatcher, access: { GET: PULL } },
  { pattern: /^\/v2\/(.+)\/referrers\/([^/]+)$/, params: ['name', 'digest'], module: 'referrers', dispatcher: referrersDispatcher, access: { GET: PULL } },
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
  const events = new RegistryEvents();
  const storage = observeStorage(options.storage, events);
  const store = new RegistryStore(storage, {
    events,
    maxBlobSize: options.maxBlobSize,
    maxUploadsPerRepository: options.maxUploadsPerRepository,
    bodyIdleTimeout: options.bodyIdleTimeout,
    progressInterval: options.progressInterval,
    allowSparseManifests: options.allowSparseManifests,
  });
  if (options.onRequest) events.on('requestCompleted', options.onRequest);
  let readOnly = options.readOnly ?? false;
  const isReadOnly = () => (typeof readOnly === 'function' ? readOnly() : readOnly);
  const notifier = options.notifications?.length ? new Notifier(storage, events, options.notifications) : undefined;
  const resolved: ResolvedOptions = {
    // With access control on, a mount without `from` would bypass the pull check on the source.
    mountFromAnyRepository: options.mountFromAnyRepository ?? !options.authorize,
    deleteEnabled: options.deleteEnabled ?? true,
    maxManifestSize: options.maxManifestSize ?? DEFAULT_MAX_MANIFEST_SIZE,
  };
  const access: AccessControl | undefined = options.authorize && {
    authorize: options.authorize,
    challenge: options.challenge ?? DEFAULT_CHALLENGE,
  };
  const purging = options.uploadPurging === false ? undefined : options.uploadPurging ?? {};
  const maxAge = purging?.maxAge ?? 7 * DAY;
  const collection = options.garbageCollection || undefined;
  const timers: NodeJS.Timeout[] = [];
  const router: RegistryRouter = Object.assign(Router(), {
    events: store.events,
    store,
    purgeStaleUploads: (age = maxAge) => purgeTimed(store, age),
    collectGarbage: (collect: CollectOptions = {}) =>
      store.collector.collect({ grace: collection?.grace, untagged: collection?.untagged, uploadMaxAge: maxAge, ...collect }),
    health: (timeout = 5000) => checkStorage(storage, timeout),
    isReadOnly,
    setReadOnly: (value: boolean | (() => boolean)) => {
      readOnly = value;
    },
    close: async () => {
      for (const timer of timers) clearTimeout(timer);
      await notifier?.close();
    },
  });
  router.use((req: Request, res: Response, next: NextFunction) => {
    const path = req.path;
    if (path !== '/v2' && !path.startsWith('/v2/')) {
      next();
      return;
    }
    void dispatch(req as unknown as RegistryRequest, res, { store, options: resolved, access, isReadOnly });
  });
  // Purging and collecting write, so a read-only registry skips their runs.
  const unlessReadOnly = (task: () => Promise<string>) => () => (isReadOnly() ? Promise.resolve('skipped: the registry is read-only') : task());
  if (purging) {
    timers.push(schedule('purging stale upload sessions', purging.interval ?? DAY, unlessReadOnly(() => router.purgeStaleUploads().then((ids) => `${ids.length} sessions purged`))));
  }
  if (collection) {
    timers.push(schedule('garbage collection', collection.interval ?? DAY, unlessReadOnly(() => router.collectGarbage().then((report) => JSON.stringify(report)))));
  }
  return router;
}

/** Runs the purger once and reports the run as a `purgeCompleted` event. */
async function purgeTimed(store: RegistryStore, maxAge: number): Promise<string[]> {
  const started = performance.now();
  try {
    const ids = await store.uploads.purgeStale(maxAge);
    store.events.notify('purgeCompleted', { expired: ids.length, ms: performance.now() - started, ok: true });
    return ids;
  } catch (error) {
    store.events.notify('purgeCompleted', { expired: 0, ms: performance.now() - started, ok: false });
    throw error;
  }
}

interface AccessControl {
  authorize: Authorize;
  challenge: Challenge;
}

/** What every request of one router shares. */
interface RouterState {
  store: RegistryStore;
  options: ResolvedOptions;
  access: AccessControl | undefined;
  isReadOnly: () => boolean;
}

/** Runs `task` every `interval` ms (plus up to 10% jitter) on a timer that never keeps the process alive. */
function schedule(what: string, interval: number, task: () => Promise<string>): NodeJS.Timeout {
  const timer = setTimeout(function run() {
    task().then(
      (outcome) => routerLog('%s: %s', what, outcome),
      (error: unknown) => routerLog('%s failed: %O', what, error),
    );
    timer.refresh();
  }, interval * (1 + Math.random() / 10));
  timer.unref();
  return timer;
}

const READS: HttpMethod[] = ['GET', 'HEAD'];

async function dispatch(req: RegistryRequest, res: ServerResponse, { store, options, access, isReadOnly }: RouterState): Promise<void> {
  res.setHeader('Docker-Distribution-API-Version', 'registry/2.0');
  const labels = trackRequest(req, res, store.events);
  let log = routerLog;
  try {
    const route = ROUTES.find((candidate) => candidate.pattern.test(req.path));
    startRequest(labels, route?.module ?? 'unknown', req.method ?? 'GET', store.events);
    if (!route) throw new RegistryError('NAME_UNKNOWN', `no registry endpoint at ${req.path.slice(0, 200)}`, { status: 404 });
    const values = route.pattern.exec(req.path)!.slice(1);
    const params: Record<string, string> = {};
    route.params.forEach((name, index) => (params[name] = decodeParam(values[index])));
    const repository = route.params[0] === 'name' ? validateName(values[0]) : '';
    labels.repository = repository || undefined;
    const query = new URL(req.url ?? '/', 'http://registry.invalid').searchParams;
    log = loggers.get(route.module)!({ repository: repository || undefined, upload: params.uploadId });
    const mayList = async (name: string) => !access || (await access.authorize(req, { repository: name, actions: PULL, catalog: true })) === true;
    const context = { req, res, store, options, baseUrl: req.baseUrl, repository, params, query, mayList };
    const table: MethodTable = route.dispatcher(context, log);
    const method = req.method as HttpMethod;
    const handler = table[method];
    const actions = route.access[method];
    if (!handler || !actions) {
      const allow = Object.keys(table).join(', ');
      throw new RegistryError('UNSUPPORTED', `${req.method} is not supported here; allowed: ${allow}`, { headers: { Allow: allow } });
    }
    if (!READS.includes(method) && isReadOnly()) {
      const allow = READS.filter((read) => table[read]).join(', ');
      throw new RegistryError('UNSUPPORTED', `the registry is read-only for now: ${req.method} is refused until writes are enabled again; pulls still work`, {
        headers: { Allow: allow },
      });
    }
    if (access) {
      const requests: AccessRequest[] = [{ repository, actions, ...(route.catalog && { catalog: true }) }, ...(route.extraAccess?.(query) ?? [])];
      await enforceAccess(req, requests, access.authorize, access.challenge);
    }
    log('%s %s', req.method, req.path);
    const uploadId = params.uploadId;
    await withOrigin(req, () => (uploadId === undefined ? handler() : store.uploads.withSession(uploadId, handler)));
  } catch (error) {
    // Logged here only, with the request's repository and upload id: nothing below logs it again.
    if (!(error instanceof RegistryError)) log('error on %s %s: %O', req.method, req.path, error);
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
