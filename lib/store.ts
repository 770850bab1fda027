import { randomUUID, type Hash } from 'node:crypto';
import { Readable } from 'node:stream';
import { createDigestHash, parseDigest, type Digest, type DigestAlgorithm } from './digest';
import { RegistryError } from './errors';
import { RegistryEvents } from './events';
import { Meter, type IdleLimit } from './meter';
import { rangeError, type ByteRange } from './range';
import { NotFoundError, pageNames, UploadConflictError, type ListOptions, type StorageAdapter } from './storage/adapter';

/** An upload session as the registry records it. */
export interface UploadSession {
  /** The session id (a UUID), also the adapter's upload id. */
  id: string;
  /** The repository the session was started in; it is unknown to every other. */
  repository: string;
  /** When the session started (ISO 8601), for purging stale sessions. */
  startedAt: string;
}

/** Limits on one append; see {@link RegistryStore.appendToUpload}. */
export interface AppendOptions {
  /** Bytes the chunk's `Content-Range` declares: a longer body fails with 416. */
  declaredLength?: number;
  /** Bytes the request says it carries (`Content-Length`), to refuse an oversized blob before reading it. */
  announcedLength?: number;
  /** Largest blob: a body that would grow the upload past it fails with 413 `SIZE_INVALID`. */
  maxBlobSize?: number;
  /** How long the body may stall, and the error then. */
  idle?: IdleLimit;
}

/** A blob as a repository sees it. */
export interface BlobInfo {
  size: number;
}

/** Settings of a {@link RegistryStore}. */
export interface RegistryStoreOptions {
  /** Where the store announces what changes; a new emitter by default. */
  events?: RegistryEvents;
  /** Least milliseconds between two `uploadProgress` events of one streaming body. Default 500. */
  progressInterval?: number;
}

const UPLOAD_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Document key of an upload session's record. */
export function uploadRecordKey(id: string): string {
  return `uploads/${id}`;
}

/** Key prefix of everything a repository holds (links, manifests, tags, referrers). */
export function repositoryPrefix(repository: string): string {
  return `repositories/${repository}/`;
}

/** Document key of the link that makes a blob visible in a repository. */
export function blobLinkKey(repository: string, digest: Digest): string {
  return `${repositoryPrefix(repository)}_blobs/${digest.algorithm}/${digest.hex}`;
}

const CATALOG_ENTRY = '_repository';

/** Document key that lists a repository in the catalog (a suffix, since one name may extend another: `a/b`, `a/b/c`). */
export function catalogKey(repository: string): string {
  return `catalog/${repository}/${CATALOG_ENTRY}`;
}

/** Content key of a digest's bytes; stored once, whichever repositories link to it. */
export function contentKey(digest: Digest): string {
  return `${digest.algorithm}/${digest.hex.slice(0, 2)}/${digest.hex}`;
}

/**
 * The registry's data model over a {@link StorageAdapter}: upload sessions, content stored once
 * per digest, and per-repository links to it. Adapters only move bytes; every rule about
 * sessions, digests and visibility lives here, once.
 *
 * Digests are computed while bytes stream in. The process that served a session's last append
 * keeps the running sha256 in memory; any other process (or a restarted one, or a sha512 digest)
 * verifies by reading the stored bytes back once at commit.
 */
export class RegistryStore {
  private readonly runningHashes = new Map<string, { hash: Hash; size: number }>();
  /** Repositories known to be in the catalog; entries are never removed, so this cache cannot go stale. */
  private readonly catalogued = new Set<string>();
  /** Every change the store makes is announced here, from this class only. */
  readonly events: RegistryEvents;
  private readonly progressInterval: number;
  /** Sessions with requests in flight in this process, with how many. */
  private readonly inUse = new Map<string, number>();
  /** Sessions the purger is removing: requests that arrive meanwhile find them gone. */
  private readonly purging = new Set<string>();
  /** Session records seen, by id (records never change), so counting sessions reads each once. */
  private readonly knownSessions = new Map<string, UploadSession>();

  constructor(
    readonly adapter: StorageAdapter,
    options: RegistryStoreOptions = {},
  ) {
    this.events = options.events ?? new RegistryEvents();
    this.progressInterval = options.progressInterval ?? 500;
  }

  /**
   * Starts an upload session in `repository`; with `maxOpen`, fails with 429 `TOOMANYREQUESTS`
   * when the repository already has that many. Concurrent starts may each see the count below
   * the limit, so the limit can be overshot by the number of starts racing.
   */
  async startUpload(repository: string, maxOpen = Number.POSITIVE_INFINITY): Promise<UploadSession> {
    if (Number.isFinite(maxOpen) && (await this.countUploads(repository)) >= maxOpen) {
      throw new RegistryError('TOOMANYREQUESTS', `${repository} already has ${maxOpen} open upload sessions; finish or cancel some first`);
    }
    const session: UploadSession = { id: randomUUID(), repository, startedAt: new Date().toISOString() };
    // The record goes first: a session whose bytes exist always has a record to purge it by.
    await this.adapter.putDocument(uploadRecordKey(session.id), Buffer.from(JSON.stringify(session)));
    this.knownSessions.set(session.id, session);
    await this.adapter.createUpload(session.id);
    this.runningHashes.set(session.id, { hash: createDigestHash('sha256'), size: 0 });
    this.events.notify('uploadStarted', { repository, uploadId: session.id });
    return session;
  }

  /** The session `id`, which must belong to `repository`; else `BLOB_UPLOAD_UNKNOWN`. */
  async findUpload(repository: string, id: string): Promise<UploadSession> {
    const session = UPLOAD_ID.test(id) && !this.purging.has(id) ? await this.readSession(id) : undefined;
    if (!session || session.repository !== repository) {
      throw new RegistryError('BLOB_UPLOAD_UNKNOWN', `upload ${id.slice(0, 80)} is not known in ${repository}`);
    }
    return session;
  }

  /** Bytes stored so far in a session. */
  async uploadSize(session: UploadSession): Promise<number> {
    const size = await this.adapter.uploadSize(session.id);
    if (size === undefined) throw new RegistryError('BLOB_UPLOAD_UNKNOWN', `upload ${session.id} has no data`);
    return size;
  }

  /**
   * Appends `body` to a session stored at `expectedSize` bytes and resolves to the new size,
   * within the limits of `options`. A concurrent writer or a stale offset fails with a 416 that
   * reports the stored size.
   */
  async appendToUpload(session: UploadSession, expectedSize: number, body: Readable, options: AppendOptions = {}): Promise<number> {
    const { declaredLength, maxBlobSize = Number.POSITIVE_INFINITY, idle } = options;
    const tooLarge = () => new RegistryError('SIZE_INVALID', `blobs are limited to ${maxBlobSize} bytes on this registry`, { status: 413 });
    const announced = declaredLength ?? options.announcedLength;
    if (announced !== undefined && expectedSize + announced > maxBlobSize) throw tooLarge();
    const running = this.claimRunningHash(session.id, expectedSize);
    let lastProgress = Number.NEGATIVE_INFINITY;
    const meterOptions = {
      idle,
      onBytes: (bytes: number) => {
        const now = Date.now();
        if (now - lastProgress < this.progressInterval) return;
        lastProgress = now;
        this.events.notify('uploadProgress', { repository: session.repository, uploadId: session.id, bytes: expectedSize + bytes });
      },
    };
    const meter =
      declaredLength === undefined
        ? new Meter(running, maxBlobSize - expectedSize, tooLarge, meterOptions)
        : new Meter(running, declaredLength, () => rangeError(expectedSize, `the body is longer than the ${declaredLength} bytes its Content-Range declares`), meterOptions);
    let bodyFailed = false;
    const forwardBodyError = (error: Error) => {
      bodyFailed = true;
      meter.destroy(error);
    };
    body.once('error', forwardBodyError);
    // The adapter may start reading only after its own awaits (a lock); until it listens, a body
    // that fails (a client gone) must not turn into an uncaught 'error' on the meter.
    meter.on('error', () => undefined);
    body.pipe(meter);
    try {
      const newSize = await this.adapter.appendUpload(session.id, expectedSize, meter);
      if (running && meter.bytes === newSize - expectedSize) {
        this.runningHashes.set(session.id, { hash: running, size: newSize });
      }
      return newSize;
    } catch (error) {
      body.unpipe(meter);
      if (bodyFailed) throw new RegistryError('BLOB_UPLOAD_INVALID', 'the body ended early: the client closed the connection');
      throw translateUploadError(error, session);
    } finally {
      body.removeListener('error', forwardBodyError);
    }
  }

  /**
   * Verifies the session's bytes against `digest` and, when they match, publishes them as that
   * digest's content linked into the session's repository, and ends the session. On a mismatch
   * nothing is published and the session stays as it was.
   */
  async completeUpload(session: UploadSession, digest: Digest): Promise<BlobInfo> {
    const size = await this.uploadSize(session);
    const actual = await this.hashUpload(session.id, size, digest.algorithm);
    if (actual !== digest.hex) {
      throw new RegistryError('DIGEST_INVALID', `the uploaded content has digest ${digest.algorithm}:${actual}, not ${digest.value}`);
    }
    try {
      await this.adapter.commitUpload(session.id, size, contentKey(digest));
    } catch (error) {
      throw translateUploadError(error, session);
    }
    this.runningHashes.delete(session.id);
    await this.linkBlob(session.repository, digest, size);
    await this.adapter.deleteDocument(uploadRecordKey(session.id));
    this.knownSessions.delete(session.id);
    this.events.notify('blobCommitted', { repository: session.repository, uploadId: session.id, digest: digest.value, size });
    return { size };
  }

  /**
   * Completes a session under the sha256 of the bytes it holds, for uploads whose digest nobody
   * knows beforehand (form files). The digest comes from the running hash, so the bytes are not
   * read again. Resolves to the digest, the size, and whether the repository already had the blob.
   */
  async completeUploadAsStored(session: UploadSession): Promise<BlobInfo & { digest: Digest; alreadyLinked: boolean }> {
    const size = await this.uploadSize(session);
    const digest = parseDigest(`sha256:${await this.hashUpload(session.id, size, 'sha256')}`);
    const alreadyLinked = (await this.blobInfo(session.repository, digest)) !== undefined;
    await this.completeUpload(session, digest);
    return { digest, size, alreadyLinked };
  }

  /** Ends a session at the client's request (or a failed one-request upload) and drops its bytes. */
  async cancelUpload(session: UploadSession): Promise<void> {
    const size = await this.dropUpload(session);
    this.events.notify('uploadCancelled', { repository: session.repository, uploadId: session.id, size });
  }

  /** Ends a stale session and drops its bytes: what purging calls, so hosts hear `uploadExpired`. */
  async expireUpload(session: UploadSession): Promise<void> {
    const size = await this.dropUpload(session);
    this.events.notify('uploadExpired', { repository: session.repository, uploadId: session.id, size });
  }

  /** Notes that a request to session `id` is in flight, so the purger leaves the session alone. */
  markInUse(id: string): void {
    this.inUse.set(id, (this.inUse.get(id) ?? 0) + 1);
  }

  /** Notes that a request noted by {@link markInUse} has ended. */
  markDone(id: string): void {
    const count = (this.inUse.get(id) ?? 1) - 1;
    if (count > 0) this.inUse.set(id, count);
    else this.inUse.delete(id);
  }

  /**
   * Removes sessions started more than `maxAge` ms ago and resolves to their ids. A session with
   * a request in flight in this process is skipped, and so is one another process is appending
   * to or committing (its conditional append is busy). A request to another process that begins
   * after that check finds the session gone (404) and never publishes anything unverified.
   */
  async purgeStaleUploads(maxAge: number): Promise<string[]> {
    const cutoff = Date.now() - maxAge;
    const purged: string[] = [];
    for (const id of await this.listSessionIds()) {
      const session = await this.readSession(id);
      if (!session || !(Date.parse(session.startedAt) <= cutoff) || this.inUse.has(id)) continue;
      if (await this.isBusyElsewhere(id)) continue;
      // Checked and claimed in one synchronous step: a request arriving from here on finds it gone.
      if (this.inUse.has(id) || this.purging.has(id)) continue;
      this.purging.add(id);
      try {
        await this.expireUpload(session);
        purged.push(id);
      } finally {
        this.purging.delete(id);
      }
    }
    return purged;
  }

  /** Makes a blob visible in `repository`. */
  async linkBlob(repository: string, digest: Digest, size: number): Promise<void> {
    await this.adapter.putDocument(blobLinkKey(repository, digest), Buffer.from(JSON.stringify({ size })));
    await this.registerRepository(repository);
  }

  /** Lists `repository` in the catalog; called whenever something is stored in it. */
  async registerRepository(repository: string): Promise<void> {
    if (this.catalogued.has(repository)) return;
    await this.adapter.putDocument(catalogKey(repository), Buffer.from('{}'), { ifAbsent: true });
    this.catalogued.add(repository);
  }

  /** Whether anything was ever stored in `repository`. */
  async repositoryExists(repository: string): Promise<boolean> {
    return this.catalogued.has(repository) || (await this.adapter.getDocument(catalogKey(repository))) !== undefined;
  }

  /**
   * Repository names in code unit order, after `options.after`, at most `options.limit`. The
   * whole index is read and sorted here because the keys' order is not the names' order (`a/b`
   * is stored as `a/b/_repository`, which sorts after `a/b-c/…`).
   */
  async listRepositories(options: ListOptions = {}): Promise<string[]> {
    const keys = await this.adapter.listDocuments('catalog/');
    const suffix = `/${CATALOG_ENTRY}`;
    const names = keys.filter((key) => key.endsWith(suffix)).map((key) => key.slice(0, -suffix.length));
    return pageNames(names.sort(), options);
  }

  /** Removes a blob from `repository`; false when it was not there. The content itself stays. */
  async unlinkBlob(repository: string, digest: Digest): Promise<boolean> {
    if (!(await this.adapter.getDocument(blobLinkKey(repository, digest)))) return false;
    await this.adapter.deleteDocument(blobLinkKey(repository, digest));
    this.events.notify('blobDeleted', { repository, digest: digest.value });
    return true;
  }

  /** The blob as `repository` sees it: undefined unless it was pushed or mounted there and its content exists. */
  async blobInfo(repository: string, digest: Digest): Promise<BlobInfo | undefined> {
    if (!(await this.adapter.getDocument(blobLinkKey(repository, digest)))) return undefined;
    return this.adapter.statContent(contentKey(digest));
  }

  /** A URL the adapter offers for fetching a blob directly (see `StorageAdapter.contentUrl`), if any. */
  async blobUrl(digest: Digest): Promise<string | undefined> {
    return this.adapter.contentUrl?.(contentKey(digest));
  }

  /** Streams a blob's bytes, whole or a range. */
  async openBlob(digest: Digest, range?: ByteRange): Promise<Readable> {
    return this.adapter.readContent(contentKey(digest), range);
  }

  /**
   * Links an existing blob into `repository` without sending its bytes again: from repository
   * `from` when it holds the blob, or (with `from` undefined and `fromAnywhere`) from any stored
   * content. Resolves to false when there is nothing to mount.
   */
  async mountBlob(repository: string, digest: Digest, from: string | undefined, fromAnywhere: boolean): Promise<BlobInfo | undefined> {
    let info: BlobInfo | undefined;
    if (from !== undefined) info = await this.blobInfo(from, digest);
    else if (fromAnywhere) info = await this.adapter.statContent(contentKey(digest));
    if (info) {
      await this.linkBlob(repository, digest, info.size);
      this.events.notify('blobMounted', { repository, digest: digest.value, size: info.size, from });
    }
    return info;
  }

  /** Deletes a session's bytes and record; resolves to how many bytes it held. */
  private async dropUpload(session: UploadSession): Promise<number> {
    this.runningHashes.delete(session.id);
    const size = (await this.adapter.uploadSize(session.id)) ?? 0;
    await this.adapter.deleteUpload(session.id);
    await this.adapter.deleteDocument(uploadRecordKey(session.id));
    this.knownSessions.delete(session.id);
    return size;
  }

  /** How many sessions are open in `repository`, across every process sharing the storage. */
  private async countUploads(repository: string): Promise<number> {
    const ids = await this.listSessionIds();
    let count = 0;
    for (const id of ids) if ((await this.readSession(id))?.repository === repository) count++;
    return count;
  }

  /** The ids of all sessions in the storage; forgets the records of sessions that are gone. */
  private async listSessionIds(): Promise<string[]> {
    const ids = await this.adapter.listDocuments(uploadRecordKey(''));
    const listed = new Set(ids);
    for (const id of this.knownSessions.keys()) if (!listed.has(id)) this.knownSessions.delete(id);
    return ids;
  }

  /** A session's record, from memory when seen before. */
  private async readSession(id: string): Promise<UploadSession | undefined> {
    const known = this.knownSessions.get(id);
    if (known) return known;
    const record = await this.adapter.getDocument(uploadRecordKey(id));
    if (!record) return undefined;
    const session = JSON.parse(record.toString('utf8')) as UploadSession;
    this.knownSessions.set(id, session);
    return session;
  }

  /** Whether another process holds the upload for an append or commit: a zero-byte conditional append then fails. */
  private async isBusyElsewhere(id: string): Promise<boolean> {
    const size = await this.adapter.uploadSize(id);
    if (size === undefined) return false;
    try {
      await this.adapter.appendUpload(id, size, Readable.from([]));
      return false;
    } catch (error) {
      if (error instanceof UploadConflictError) return true;
      if (error instanceof NotFoundError) return false;
      throw error;
    }
  }

  /** Takes the session's running hash if it covers exactly `size` bytes, so no other request can feed it. */
  private claimRunningHash(id: string, size: number): Hash | undefined {
    const running = this.runningHashes.get(id);
    this.runningHashes.delete(id);
    if (running && running.size === size) return running.hash;
    return size === 0 ? createDigestHash('sha256') : undefined;
  }

  /** The hex digest of the first `size` bytes of an upload: from the running hash, or by reading them back. */
  private async hashUpload(id: string, size: number, algorithm: DigestAlgorithm): Promise<string> {
    const running = this.runningHashes.get(id);
    if (algorithm === 'sha256' && running && running.size === size) return running.hash.copy().digest('hex');
    const hash = createDigestHash(algorithm);
    const stream = await this.adapter.readUpload(id);
    let remaining = size;
    try {
      for await (const chunk of stream) {
        const buffer = chunk as Buffer;
        hash.update(buffer.length > remaining ? buffer.subarray(0, remaining) : buffer);
        remaining -= Math.min(buffer.length, remaining);
        if (remaining === 0) break;
      }
    } finally {
      stream.destroy();
    }
    if (remaining > 0) throw new RegistryError('BLOB_UPLOAD_INVALID', 'the upload changed while it was being verified');
    if (algorithm === 'sha256') this.runningHashes.set(id, { hash: hash.copy(), size });
    return hash.digest('hex');
  }
}

function translateUploadError(error: unknown, session: UploadSession): unknown {
  if (error instanceof UploadConflictError) {
    return rangeError(error.size, `the upload is at ${error.size} bytes or another request is writing to it: ${error.message}`);
  }
  if (error instanceof NotFoundError) {
    return new RegistryError('BLOB_UPLOAD_UNKNOWN', `upload ${session.id} is gone`);
  }
  return error;
}
