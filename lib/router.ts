// The registry router: routes, access checks, read-only mode, request tracking and the router's own lifecycle.
import { Router, type NextFunction, type Request, type Response } from 'express';
import type { ServerResponse } from 'node:http';
import { DEFAULT_CHALLENGE, enforceAccess, PULL, type AccessRequest, type Authorize, type Challenge } from './access';
import type { HttpMethod, MethodTable, RegistryRequest, RequestContext, ResolvedOptions } from './context';
import { RegistryError } from './errors';
import { moduleLogger } from './log';
import { validateName } from './names';
import { baseMethods } from './resources/base';
import { blobMethods } from './resources/blobs';
import { catalogMethods } from './resources/catalog';
import { manifestMethods } from './resources/manifests';
import { referrersMethods } from './resources/referrers';
import { tagsMethods } from './resources/tags';
import { uploadSessionMethods, uploadStartMethods } from './resources/uploads';
import { sendError } from './respond';
import type { StorageAdapter } from './storage/adapter';
import { RegistryEvents, type RegistryEventMap, type RequestInfo, type RouteName } from './events';
import { checkStorage } from './health';
import { Notifier, type NotificationEndpoint } from './notifications/notifier';
import { immutableTagHooks, immutableTagPredicate, type ImmutableTagsOption } from './policies/immutable-tags';
import { QuotaPolicy, type QuotaOption, type QuotaUsage } from './policies/quota';
import { applyRetention, validateRetention, type RetentionResult, type RetentionRule } from './policies/retention';
import { startRequest, trackRequest, withOrigin } from './request-log';
import { observeStorage } from './storage/observed';
import { Mirror, type UpstreamOptions } from './mirror/mirror';
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
   * the actions its endpoint needs (docs/security.md has the table). Default: everything is allowed.
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
  /**
   * Storage quotas: the bytes of distinct blobs a repository (or every repository under a
   * namespace, together) may hold. A push that would go over is refused with 403 `DENIED` as
   * soon as that is known. See docs/policies.md.
   */
  quota?: QuotaOption;
  /**
   * Tags that, once set, can be neither moved to another manifest nor deleted (403 `DENIED`);
   * pushing the same manifest again succeeds. See docs/policies.md.
   */
  immutableTags?: ImmutableTagsOption;
  /**
   * Rules for which tags to keep; {@link RegistryRouter.applyRetention} removes the rest (the
   * garbage collector then reclaims what they alone held). Immutable tags are always kept.
   */
  retention?: RetentionRule[];
  /** The clock, in milliseconds since the epoch: tags record when they were set by it, and retention ages them by it. Default `Date.now`. */
  clock?: () => number;
  /**
   * Upstream registries to mirror (a pull-through cache): a repository under an upstream's
   * `prefix` serves that upstream's repository of the same name minus the prefix, fetching and
   * keeping manifests and blobs as clients ask for them. See docs/mirror.md.
   */
  upstreams?: UpstreamOptions[];
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
   * Runs one garbage collection over the storage (docs/gc.md)
   * and resolves to its report. Safe while this and other processes serve pushes and pulls from
   * the same storage; rejects with `CollectionRunningError` while another collection runs. With
   * `retention` rules, it first untags what they do not keep (listing it only, in a dry run), and
   * reclaims what those tags alone held; the report's `tagsRemoved` lists them.
   */
  collectGarbage(options?: CollectOptions): Promise<CollectionReport>;
  /**
   * What `repository`'s blobs take under its quota, counted now: the repository's own usage, or
   * its namespace's when it shares one. `limit` is undefined when it has no quota.
   */
  usage(repository: string): Promise<QuotaUsage>;
  /**
   * Applies the `retention` rules: untags what they do not keep (or, with `dryRun`, only lists
   * it). Resolves to no removals when the router has no rules. {@link collectGarbage} does this
   * first in every collection; this runs it alone, leaving the manifests for a later collection.
   */
  applyRetention(options?: { dryRun?: boolean }): Promise<RetentionResult>;
}

const DAY = 24 * 60 * 60 * 1000;

/** The default of {@link RegistryOptions.maxManifestSize}: the spec asks registries to accept at least 4 MiB. */
export const DEFAULT_MAX_MANIFEST_SIZE = 4 * 1024 * 1024;

/** A path the registry serves: its pattern, and the method table of the resource behind it. */
interface Route {
  pattern: RegExp;
  /** Names of the pattern's capture groups, in order; `name` is the repository. */
  params: string[];
  /** The route's name in metrics and the `debug` namespace of its log lines. */
  module: Exclude<RouteName, 'unknown'>;
  methods: MethodTable;
}

// Repository names may contain slashes, so each pattern anchors on the path's fixed tail.
const ROUTES: Route[] = [
  { pattern: /^\/v2\/?$/, params: [], module: 'base', methods: baseMethods },
  // Before the repository routes: `_catalog` is not a repository name.
  { pattern: /^\/v2\/_catalog$/, params: [], module: 'catalog', methods: catalogMethods },
  { pattern: /^\/v2\/(.+)\/blobs\/uploads\/?$/, params: ['name'], module: 'upload', methods: uploadStartMethods },
  { pattern: /^\/v2\/(.+)\/blobs\/uploads\/([^/]+)$/, params: ['name', 'uploadId'], module: 'upload', methods: uploadSessionMethods },
  { pattern: /^\/v2\/(.+)\/blobs\/([^/]+)$/, params: ['name', 'digest'], module: 'blob', methods: blobMethods },
  { pattern: /^\/v2\/(.+)\/manifests\/([^/]+)$/, params: ['name', 'reference'], module: 'manifest', methods: manifestMethods },
  { pattern: /^\/v2\/(.+)\/tags\/list$/, params: ['name'], module: 'tags', methods: tagsMethods },
  { pattern: /^\/v2\/(.+)\/referrers\/([^/]+)$/, params: ['name', 'digest'], module: 'referrers', methods: referrersMethods },
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
  const now = options.clock ?? Date.now;
  const quota = new QuotaPolicy(options.quota ?? {}, storage, now);
  const isImmutable = options.immutableTags === undefined ? undefined : immutableTagPredicate(options.immutableTags);
  const retention = options.retention ?? [];
  validateRetention(retention);
  const store = new RegistryStore(storage, {
    events,
    maxBlobSize: options.maxBlobSize,
    maxUploadsPerRepository: options.maxUploadsPerRepository,
    bodyIdleTimeout: options.bodyIdleTimeout,
    progressInterval: options.progressInterval,
    allowSparseManifests: options.allowSparseManifests,
    hooks: { ...(options.quota === undefined ? {} : quota.hooks()), ...(isImmutable ? immutableTagHooks(isImmutable) : {}) },
    now,
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
  const mirror = options.upstreams?.length
    ? new Mirror(options.upstreams, store, storage, { maxManifestSize: resolved.maxManifestSize, mountFromAnyRepository: resolved.mountFromAnyRepository, isReadOnly })
    : undefined;
  const purging = options.uploadPurging === false ? undefined : options.uploadPurging ?? {};
  const maxAge = purging?.maxAge ?? 7 * DAY;
  const collection = options.garbageCollection || undefined;
  const timers: NodeJS.Timeout[] = [];
  const router: RegistryRouter = Object.assign(Router(), {
    events: store.events,
    store,
    purgeStaleUploads: (age = maxAge) => purgeTimed(store, age),
    collectGarbage: async (collect: CollectOptions = {}) => {
      const released = retention.length > 0 ? (await router.applyRetention({ dryRun: collect.dryRun })).tagsRemoved : [];
      return store.collector.collect({ grace: collection?.grace, untagged: collection?.untagged, uploadMaxAge: maxAge, released, ...collect });
    },
    usage: (repository: string) => quota.usage(validateName(repository)),
    applyRetention: ({ dryRun = false } = {}) => applyRetention(store, retention, { dryRun, now: now(), protect: isImmutable }),
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
    void dispatch(req as unknown as RegistryRequest, res, { store, mirror, options: resolved, access, isReadOnly });
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
  mirror: Mirror | undefined;
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

async function dispatch(req: RegistryRequest, res: ServerResponse, { store, mirror, options, access, isReadOnly }: RouterState): Promise<void> {
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
    const context: RequestContext = { req, res, store, mirror: mirror?.covers(repository) ? mirror : undefined, options, baseUrl: req.baseUrl, repository, params, query, mayList };
    const method = Object.hasOwn(route.methods, req.method ?? '') ? route.methods[req.method as HttpMethod] : undefined;
    if (!method) {
      const allow = Object.keys(route.methods).join(', ');
      throw new RegistryError('UNSUPPORTED', `${req.method} is not supported here; allowed: ${allow}`, { headers: { Allow: allow } });
    }
    if (!READS.includes(req.method as HttpMethod) && isReadOnly()) {
      const allow = READS.filter((read) => route.methods[read]).join(', ');
      throw new RegistryError('UNSUPPORTED', `the registry is read-only for now: ${req.method} is refused until writes are enabled again; pulls still work`, {
        headers: { Allow: allow },
      });
    }
    if (access) {
      const requests: AccessRequest[] = [{ repository, actions: method.actions, ...(method.catalog && { catalog: true }) }, ...(method.extraAccess?.(query) ?? [])];
      await enforceAccess(req, requests, access.authorize, access.challenge);
    }
    if (method.deletes && !options.deleteEnabled) throw new RegistryError('UNSUPPORTED', 'deleting is disabled on this registry');
    if (method.actions.includes('push') && mirror?.refusesPush(repository)) {
      throw new RegistryError('UNSUPPORTED', `${repository} mirrors an upstream registry; pushes are not accepted here`);
    }
    log('%s %s', req.method, req.path);
    const handle = () => method.handle(context, log);
    const uploadId = params.uploadId;
    await withOrigin(req, () => (uploadId === undefined ? handle() : store.uploads.withSession(uploadId, handle)));
  } catch (error) {
    // Logged here only, with the request's repository and upload id: nothing below logs it again.
    if (!(error instanceof RegistryError)) log('error on %s %s: %O', req.method, req.path, error);
    if (req.complete) sendError(res, error);
    else refuseUnreadBody(req, res, error);
  }
}

/** Most milliseconds a refused request's remaining body is read and dropped before its connection closes. */
const LINGER = 2000;

/**
 * Answers a request whose body was not read to its end (a refusal from its Content-Length, or
 * one mid-stream), then closes the connection rather than read the next request from the middle
 * of this body. The answer goes out whole at once; the connection then stays open, dropping what
 * the client still sends, until the body ends, the client closes, or `LINGER` ms pass: closed
 * while the client is still writing, the client would see a reset instead of the answer.
 */
function refuseUnreadBody(req: RegistryRequest, res: ServerResponse, error: unknown): void {
  res.setHeader('Connection', 'close');
  sendError(res, error, { keepOpen: true });
  if (res.destroyed || res.writableEnded) return;
  const timer = setTimeout(() => res.destroy(), LINGER);
  timer.unref();
  res.once('close', () => clearTimeout(timer));
  req.once('end', () => res.end());
  req.on('error', () => res.destroy());
  req.resume();
}

/** Percent-decodes a path parameter; a malformed escape is left as is and then fails validation. */
function decodeParam(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}
