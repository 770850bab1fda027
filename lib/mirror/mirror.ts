/** The pull-through cache: which repositories mirror an upstream, and how their manifests and blobs are fetched, kept and revalidated. */
import type { ServerResponse } from 'node:http';
import { digestOf, parseDigest, type Digest } from '../digest';
import { RegistryError } from '../errors';
import type { MirrorLookupEvent } from '../events';
import { moduleLogger, type Log } from '../log';
import { DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST, type ManifestReference } from '../manifest';
import type { ByteRange } from '../range';
import type { StorageAdapter } from '../storage/adapter';
import type { BlobInfo, RegistryStore, StoredManifest } from '../store';
import { mirroredTagKey } from '../store/paths';
import { SharedBlobFetch } from './blob-fetch';
import { readBody, UpstreamAuthError, UpstreamClient, UpstreamUnavailableError, type UpstreamCredentials, type UpstreamResponse } from './upstream-client';

/** One upstream registry mirrored under a prefix; see {@link RegistryOptions.upstreams}. */
export interface UpstreamOptions {
  /**
   * Repositories whose names start with this (`docker.io/`, or `docker.io`: the slash is implied)
   * mirror the repository of the rest of the name at the upstream. `''` mirrors every repository.
   * When prefixes overlap, the longest wins.
   */
  prefix: string;
  /** The upstream's base URL, e.g. `https://registry-1.docker.io`. */
  url?: string;
  /** Several base URLs of the same content, tried in order when one is down. */
  urls?: string[];
  /** Credentials for the upstream: sent as Basic auth, or to its token realm, when it asks for them. Anonymous without. */
  auth?: UpstreamCredentials;
  /** Milliseconds a tag fetched from the upstream is served without asking the upstream again. Default 5 minutes. */
  tagTtl?: number;
  /** Milliseconds to wait for the upstream to connect, answer, or send the next byte. Default 15000. */
  timeout?: number;
  /** Whether pushes into the prefix are accepted (stored locally; tags pushed here are never revalidated). Default false: 405 `UNSUPPORTED`. */
  allowPush?: boolean;
}

/** Settings of the router that apply to what the mirror stores (blobs are held to the store's own limits). */
export interface MirrorLimits {
  maxManifestSize: number;
  /** Whether a blob already stored for another repository is linked without asking the upstream. */
  mountFromAnyRepository: boolean;
  /** Whether the registry is read-only now: the mirror then serves what it holds and fetches (stores) nothing. */
  isReadOnly: () => boolean;
}

/** A blob the mirror can answer with: its size, and how to send it while it is still arriving (absent once stored). */
export interface MirroredBlob extends BlobInfo {
  send?: (res: ServerResponse, range: ByteRange | undefined) => Promise<void>;
}

/** When a tag was last confirmed at the upstream, and the digest it named then. */
interface TagRecord {
  digest: string;
  checkedAt: number;
}

/** A lookup before it is known whether storage answers it. */
type Lookup = Omit<MirrorLookupEvent, 'hit'>;

interface Upstream {
  prefix: string;
  client: UpstreamClient;
  tagTtl: number;
  allowPush: boolean;
}

const DEFAULT_TAG_TTL = 5 * 60 * 1000;
const DEFAULT_TIMEOUT = 15_000;
/** Seconds a client is asked to wait before retrying while the upstream is down. */
const RETRY_AFTER_SECONDS = '10';
/** Headers the blob handler sets before the body, which an error answer must not carry. */
const BLOB_HEADERS = ['Docker-Content-Digest', 'Accept-Ranges', 'ETag', 'Cache-Control', 'Content-Range'];
const MANIFEST_ACCEPT = [OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST].join(', ');

const loggers = moduleLogger('mirror');

/**
 * The mirror behind the manifest and blob handlers. Manifests by digest are fetched once; tags
 * are served from storage while younger than their upstream's `tagTtl`, then confirmed with a
 * HEAD (only a changed digest is fetched again), and served from storage when the upstream
 * fails. Blobs are fetched once, by every concurrent request together (see {@link SharedBlobFetch}).
 * Everything fetched is stored as ordinary registry content of the mirrored repository.
 */
export class Mirror {
  private readonly upstreams: Upstream[];
  /** Downloads in progress, by repository and digest. */
  private readonly blobs = new Map<string, Promise<SharedBlobFetch>>();
  /** Manifest lookups at the upstream in progress, by repository and reference. */
  private readonly manifestLookups = new Map<string, Promise<StoredManifest>>();

  constructor(
    options: UpstreamOptions[],
    private readonly store: RegistryStore,
    /** Where the mirror keeps its own records (one per fetched tag); everything else goes through the store. */
    private readonly adapter: StorageAdapter,
    private readonly limits: MirrorLimits,
  ) {
    this.upstreams = options
      .map((upstream) => {
        const urls = upstream.urls ?? (upstream.url !== undefined ? [upstream.url] : []);
        if (urls.length === 0) throw new TypeError(`upstream ${JSON.stringify(upstream.prefix)} needs a url or urls`);
        for (const url of urls) new URL(url);
        const prefix = upstream.prefix === '' || upstream.prefix.endsWith('/') ? upstream.prefix : `${upstream.prefix}/`;
        return {
          prefix,
          client: new UpstreamClient({ urls, credentials: upstream.auth, timeout: upstream.timeout ?? DEFAULT_TIMEOUT }),
          tagTtl: upstream.tagTtl ?? DEFAULT_TAG_TTL,
          allowPush: upstream.allowPush ?? false,
        };
      })
      .sort((a, b) => b.prefix.length - a.prefix.length);
  }

  /** Whether `repository` is under a mirrored prefix. */
  covers(repository: string): boolean {
    return this.upstreamOf(repository) !== undefined;
  }

  /** Whether pushes into `repository` are refused because it mirrors an upstream that does not allow them. */
  refusesPush(repository: string): boolean {
    return this.upstreamOf(repository)?.allowPush === false;
  }

  /**
   * The manifest `reference` names in the mirrored `repository`: from storage, or from the
   * upstream (then stored). Throws `MANIFEST_UNKNOWN` when the upstream does not have it, and a
   * 502/503/429 when the upstream cannot be asked and nothing is stored.
   */
  async manifest(repository: string, reference: ManifestReference): Promise<StoredManifest> {
    const upstream = this.upstreamOf(repository)!;
    const log = loggers({ repository, reference: reference.tag ?? reference.digest.value });
    const stored = await this.store.manifests.resolve(repository, reference);
    const started = Date.now();
    const event: Lookup = { repository, what: 'manifest', reference: reference.tag ?? reference.digest.value };
    if (stored && reference.digest) return this.hit(event, stored);
    const record = stored && reference.tag !== undefined ? await this.tagRecord(repository, reference.tag) : undefined;
    // A stored tag without a record, or one that moved since, was pushed here: it is not the upstream's.
    if (stored && record?.digest !== stored.digest.value) return stored;
    if (stored && (Date.now() - record!.checkedAt < upstream.tagTtl || this.limits.isReadOnly())) return this.hit(event, stored);
    if (!stored) this.miss(event);
    if (this.limits.isReadOnly()) throw readOnly();
    const key = `${repository}\n${event.reference}`;
    let lookup = this.manifestLookups.get(key);
    if (!lookup) {
      lookup = this.lookUpManifest(upstream, repository, reference, stored, log).finally(() => this.manifestLookups.delete(key));
      this.manifestLookups.set(key, lookup);
    }
    try {
      return await lookup;
    } catch (error) {
      const failure = this.unavailable(error);
      if (failure.code === 'MANIFEST_UNKNOWN') throw failure;
      const servedCached = stored !== undefined;
      this.failed(upstream, event, started, failure, servedCached);
      if (!servedCached) throw failure;
      log('the upstream failed (%s); serving the stored %s', failure.detail, stored.digest.value);
      return stored;
    }
  }

  /**
   * A blob of the mirrored `repository`: stored there, linked from other stored content when the
   * router allows it, else being fetched from the upstream (joining a download in progress).
   * HEAD (`withBody` false) of a blob not stored only asks the upstream for the size.
   */
  async blob(repository: string, digest: Digest, withBody: boolean): Promise<MirroredBlob> {
    const upstream = this.upstreamOf(repository)!;
    const started = Date.now();
    const event: Lookup = { repository, what: 'blob', reference: digest.value };
    const stored = await this.store.blobs.info(repository, digest);
    if (stored) return this.hit(event, stored);
    if (this.limits.isReadOnly()) {
      this.miss(event);
      throw readOnly();
    }
    if (this.limits.mountFromAnyRepository) {
      const mounted = await this.store.blobs.mount(repository, digest, undefined, true);
      if (mounted) return this.hit(event, mounted);
    }
    this.miss(event);
    const key = `${repository}\n${digest.value}`;
    let download = this.blobs.get(key);
    let fetch: SharedBlobFetch;
    try {
      if (!download && !withBody) return { size: await this.blobSize(upstream, repository, digest) };
      if (!download) {
        download = this.download(upstream, repository, digest);
        this.blobs.set(key, download);
        const forget = () => {
          if (this.blobs.get(key) === download) this.blobs.delete(key);
        };
        download.then((started) => started.done).then(forget, forget);
      }
      fetch = await download;
    } catch (error) {
      const failure = this.unavailable(error);
      if (failure.code !== 'BLOB_UNKNOWN') this.failed(upstream, event, started, failure, false);
      throw failure;
    }
    return {
      size: fetch.size,
      send: (res, range) =>
        fetch.send(res, range).catch((error: unknown) => {
          // A response that has not begun becomes the error: without the blob's headers.
          if (!res.headersSent) for (const name of BLOB_HEADERS) res.removeHeader(name);
          throw this.downloadError(error, digest);
        }),
    };
  }

  private hit<T>(event: Lookup, value: T): T {
    this.store.events.notify('mirrorLookup', { ...event, hit: true });
    return value;
  }

  private miss(event: Lookup): void {
    this.store.events.notify('mirrorLookup', { ...event, hit: false });
  }

  /** Announces a failed trip to the upstream (for the metrics of `upstreamFetched`, with `ok` false). */
  private failed(upstream: Upstream, event: Lookup, started: number, failure: Error, servedCached: boolean, bytes = 0): void {
    const error = failure instanceof RegistryError ? String(failure.detail) : failure.message;
    const { repository, what, reference } = event;
    this.store.events.notify('upstreamFetched', { repository, what, reference, upstream: upstream.client.url, bytes, ms: Date.now() - started, ok: false, error, servedCached });
  }

  private upstreamOf(repository: string): Upstream | undefined {
    return this.upstreams.find(({ prefix }) => repository.startsWith(prefix) && repository.length > prefix.length);
  }

  /** The repository's name at the upstream, and the token scope to read it. */
  private remote(upstream: Upstream, repository: string): { name: string; scope: string } {
    const name = repository.slice(upstream.prefix.length);
    return { name, scope: `repository:${name}:pull` };
  }

  private async lookUpManifest(upstream: Upstream, repository: string, reference: ManifestReference, stored: StoredManifest | undefined, log: Log): Promise<StoredManifest> {
    const { name, scope } = this.remote(upstream, repository);
    const path = `/v2/${name}/manifests/${reference.tag ?? reference.digest.value}`;
    if (stored && reference.tag !== undefined) {
      const head = await this.ask(upstream, 'HEAD', path, scope, { Accept: MANIFEST_ACCEPT });
      head.body.resume();
      if (head.status === 404) {
        // The tag is gone upstream: it goes here too (the manifest stays, by digest).
        await this.adapter.deleteDocument(mirroredTagKey(repository, reference.tag));
        await this.store.manifests.deleteTag(repository, reference.tag);
      }
      if (head.status !== 200) throw upstreamStatusError(head, 'MANIFEST_UNKNOWN', `${name}:${reference.tag}`);
      const event: Lookup = { repository, what: 'manifest', reference: reference.tag, revalidated: true };
      if (head.headers['docker-content-digest'] === stored.digest.value) {
        await this.recordTag(repository, reference.tag, stored.digest);
        log('the upstream still tags %s', stored.digest.value);
        return this.hit(event, stored);
      }
      this.miss(event);
    }
    const started = Date.now();
    const response = await this.ask(upstream, 'GET', path, scope, { Accept: MANIFEST_ACCEPT });
    if (response.status !== 200) {
      response.body.resume();
      throw upstreamStatusError(response, 'MANIFEST_UNKNOWN', `${name}:${reference.tag ?? reference.digest.value}`);
    }
    const body = await readBody(response.body, this.limits.maxManifestSize).catch((error: unknown) => {
      throw badGateway(`reading the manifest from the upstream failed: ${(error as Error).message}`);
    });
    const digest = parseDigest(digestOf(body, reference.digest?.algorithm ?? 'sha256'));
    if (reference.digest && digest.value !== reference.digest.value) {
      throw badGateway(`the upstream sent a manifest with digest ${digest.value} for ${reference.digest.value}`);
    }
    const contentType = response.headers['content-type'];
    await this.store.manifests.put(repository, reference, body, contentType, [], { sparse: true }).catch((error: unknown) => {
      throw error instanceof RegistryError ? badGateway(`the upstream's manifest was refused: ${String(error.detail)}`) : error;
    });
    if (reference.tag !== undefined) await this.recordTag(repository, reference.tag, digest);
    this.store.events.notify('upstreamFetched', {
      repository,
      upstream: upstream.client.url,
      what: 'manifest',
      reference: reference.tag ?? digest.value,
      digest: digest.value,
      bytes: body.length,
      ms: Date.now() - started,
      ok: true,
    });
    log('fetched %s (%d bytes)', digest.value, body.length);
    return (await this.store.manifests.resolve(repository, { digest }))!;
  }

  private async download(upstream: Upstream, repository: string, digest: Digest): Promise<SharedBlobFetch> {
    const log = loggers({ repository, digest: digest.value });
    const { name, scope } = this.remote(upstream, repository);
    const started = Date.now();
    const response = await this.ask(upstream, 'GET', `/v2/${name}/blobs/${digest.value}`, scope);
    const size = this.announcedSize(response, name, digest);
    log('downloading %d bytes from %s', size, upstream.client.url);
    const fetch = new SharedBlobFetch(this.store, repository, digest, size, response.body, log);
    fetch.done.then(
      () => {
        log('stored %s (%d bytes)', digest.value, size);
        this.store.events.notify('upstreamFetched', { repository, what: 'blob', reference: digest.value, upstream: upstream.client.url, digest: digest.value, bytes: size, ms: Date.now() - started, ok: true });
      },
      (error: unknown) => {
        log('the download of %s failed: %s', digest.value, (error as Error).message);
        this.failed(upstream, { repository, what: 'blob', reference: digest.value }, started, error as Error, false, fetch.received);
      },
    );
    return fetch;
  }

  private async blobSize(upstream: Upstream, repository: string, digest: Digest): Promise<number> {
    const { name, scope } = this.remote(upstream, repository);
    const response = await this.ask(upstream, 'HEAD', `/v2/${name}/blobs/${digest.value}`, scope);
    response.body.resume();
    return this.announcedSize(response, name, digest);
  }

  /** The size a 200 for a blob announces; anything else becomes the OCI error it means. */
  private announcedSize(response: UpstreamResponse, name: string, digest: Digest): number {
    const size = Number(response.headers['content-length']);
    const failure =
      response.status !== 200
        ? upstreamStatusError(response, 'BLOB_UNKNOWN', `${name}@${digest.value}`)
        : !Number.isSafeInteger(size) || size < 0
          ? badGateway(`the upstream sent ${digest.value} without a Content-Length`)
          : size > this.store.limits.maxBlobSize
            ? new RegistryError('SIZE_INVALID', `${digest.value} is ${size} bytes; blobs are limited to ${this.store.limits.maxBlobSize} bytes on this registry`, { status: 413 })
            : undefined;
    if (failure) {
      response.body.destroy();
      throw failure;
    }
    return size;
  }

  /** A request to the upstream whose failure to answer at all becomes a 502/503. */
  private async ask(upstream: Upstream, method: 'GET' | 'HEAD', path: string, scope: string, headers?: Record<string, string>): Promise<UpstreamResponse> {
    try {
      return await upstream.client.request(method, path, scope, headers);
    } catch (error) {
      throw this.unavailable(error);
    }
  }

  private unavailable(error: unknown): RegistryError {
    if (error instanceof RegistryError) return error;
    if (error instanceof UpstreamAuthError) return badGateway(`the upstream's token service refused the mirror: ${error.message}`);
    const answered = error instanceof UpstreamUnavailableError && error.answered;
    return new RegistryError('UNKNOWN', `the upstream is ${answered ? 'failing' : 'unreachable'}: ${(error as Error).message}`, {
      status: answered ? 502 : 503,
      headers: { 'Retry-After': RETRY_AFTER_SECONDS },
    });
  }

  /** What a reader is told when the download it reads from fails. */
  private downloadError(error: unknown, digest: Digest): RegistryError {
    if (error instanceof RegistryError && error.code === 'DIGEST_INVALID') return badGateway(`the upstream sent bytes that do not match ${digest.value}; nothing was stored`);
    if (error instanceof RegistryError) return error;
    return new RegistryError('UNKNOWN', `the download from the upstream failed: ${(error as Error).message}`, { status: 502, headers: { 'Retry-After': RETRY_AFTER_SECONDS } });
  }

  private async tagRecord(repository: string, tag: string): Promise<TagRecord | undefined> {
    const document = await this.adapter.getDocument(mirroredTagKey(repository, tag));
    return document && (JSON.parse(document.toString('utf8')) as TagRecord);
  }

  private async recordTag(repository: string, tag: string, digest: Digest): Promise<void> {
    const record: TagRecord = { digest: digest.value, checkedAt: Date.now() };
    await this.adapter.putDocument(mirroredTagKey(repository, tag), Buffer.from(JSON.stringify(record)));
  }
}

function readOnly(): RegistryError {
  return new RegistryError('UNKNOWN', 'the registry is read-only for now: the mirror serves what it holds and fetches nothing from its upstream', {
    status: 503,
    headers: { 'Retry-After': RETRY_AFTER_SECONDS },
  });
}

function badGateway(detail: string): RegistryError {
  return new RegistryError('UNKNOWN', detail, { status: 502 });
}

/** The OCI error an upstream's non-200 answer means for the client. */
function upstreamStatusError(response: UpstreamResponse, notFound: 'BLOB_UNKNOWN' | 'MANIFEST_UNKNOWN', what: string): RegistryError {
  const { status } = response;
  if (status === 404) return new RegistryError(notFound, `the upstream has no ${what}`);
  if (status === 429) {
    const retryAfter = response.headers['retry-after'];
    return new RegistryError('TOOMANYREQUESTS', `the upstream limits requests for ${what}`, { headers: retryAfter ? { 'Retry-After': retryAfter } : {} });
  }
  if (status === 401 || status === 403) return new RegistryError('DENIED', `the upstream refused the mirror access to ${what} (${status})`);
  return badGateway(`the upstream answered ${status} for ${what}`);
}
