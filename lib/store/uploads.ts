/** Upload sessions: their records, running hashes, appends under the store's limits, commits, and purging. */
import { randomUUID, type Hash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { createDigestHash, parseDigest, type Digest, type DigestAlgorithm } from '../digest';
import { RegistryError } from '../errors';
import { meterBody, type MeterSpec } from '../body';
import { bodyIdleLimit } from '../meter';
import { rangeError } from '../range';
import { NotFoundError, UploadConflictError } from '../storage/adapter';
import type { BlobInfo, BlobStore } from './blobs';
import { LruMap } from '../lru';
import type { CollectionMarks } from './marks';
import { contentItem, contentKey, repositorySessionKey, repositorySessionsPrefix, uploadRecordKey, UPLOADS_PREFIX } from './paths';
import type { StoreShared } from './shared';

/** An upload session as the registry records it. */
export interface UploadSession {
  /** The session id (a UUID), also the adapter's upload id. */
  id: string;
  /** The repository the session was started in; it is unknown to every other. */
  repository: string;
  /** When the session started (ISO 8601), for purging stale sessions. */
  startedAt: string;
  /** The algorithm its bytes are hashed with as they arrive (`?digest-algorithm=`); sha256 when absent. */
  algorithm?: DigestAlgorithm;
}

/** What a request says about the body it appends; see {@link UploadStore.append}. */
export interface AppendOptions {
  /** Bytes the chunk's `Content-Range` declares: a longer body fails with 416. */
  declaredLength?: number;
  /** Bytes the request says it carries (`Content-Length`), to refuse an oversized blob before reading it. */
  announcedLength?: number;
  /** The blob's digest, when the request names it (`?digest=`): a blob its quota already counts is not held to the room left. */
  digest?: Digest;
}

/** A blob stored from a session whose digest was computed as its bytes arrived. */
export interface StoredBlob extends BlobInfo {
  digest: Digest;
  /** Whether the repository already had the blob before this session. */
  alreadyLinked: boolean;
}

const UPLOAD_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Upload sessions over the adapter's uploads. Digests are computed while bytes stream in: the
 * process that served a session's last append keeps the running hash (of the session's
 * algorithm) in memory; any other process (or a restarted one, or a digest of another algorithm)
 * verifies by reading the stored bytes back once at commit.
 */
export class UploadStore {
  /** Running sha256 hashes by session, with the bytes each covers: at most `limits.runningHashCache`. */
  private readonly runningHashes: LruMap<string, { hash: Hash; size: number }>;
  /** Sessions with requests in flight in this process, with how many. */
  private readonly inUse = new Map<string, number>();
  /** Sessions the purger is removing: requests that arrive meanwhile find them gone. */
  private readonly purging = new Set<string>();
  /** Session records seen, by id (records never change), so a session's requests read it once: at most `limits.sessionRecordCache`. */
  private readonly knownSessions: LruMap<string, UploadSession>;

  constructor(
    private readonly shared: StoreShared,
    private readonly blobs: BlobStore,
    private readonly marks: CollectionMarks,
  ) {
    this.runningHashes = new LruMap(shared.limits.runningHashCache);
    this.knownSessions = new LruMap(shared.limits.sessionRecordCache);
  }

  /** The smallest chunk other than the last that the storage takes, advertised as `OCI-Chunk-Min-Length`. */
  get minChunkSize(): number | undefined {
    return this.shared.adapter.minChunkSize;
  }

  /**
   * Starts an upload session in `repository` whose bytes are hashed with `algorithm` as they
   * arrive; fails with 429 `TOOMANYREQUESTS` when the repository already has
   * `maxUploadsPerRepository`, counted across every process sharing the storage with one listing
   * of the repository's session index (at most the limit's worth of names, however many sessions
   * other repositories hold). Concurrent starts may each see the count below the limit, so the
   * limit can be overshot by the number of starts racing.
   */
  async start(repository: string, algorithm: DigestAlgorithm = 'sha256'): Promise<UploadSession> {
    const { adapter, events, limits } = this.shared;
    const maxOpen = limits.maxUploadsPerRepository;
    if (Number.isFinite(maxOpen) && (await adapter.listDocuments(repositorySessionsPrefix(repository), { limit: maxOpen })).length >= maxOpen) {
      throw new RegistryError('TOOMANYREQUESTS', `${repository} already has ${maxOpen} open upload sessions; finish or cancel some first`);
    }
    const session: UploadSession = { id: randomUUID(), repository, startedAt: new Date().toISOString(), ...(algorithm === 'sha256' ? {} : { algorithm }) };
    // The record goes first: a session whose bytes or index entry exist always has a record to purge it by.
    await adapter.putDocument(uploadRecordKey(session.id), Buffer.from(JSON.stringify(session)));
    // The index entry and the upload both hang off the record, so they are written side by side.
    const [entry, upload] = await Promise.allSettled([
      adapter.putDocument(repositorySessionKey(repository, session.id), Buffer.alloc(0)),
      adapter.createUpload(session.id),
    ]);
    const failure = entry.status === 'rejected' ? entry : upload.status === 'rejected' ? upload : undefined;
    if (failure) {
      // No session was started (a full disk): nothing of it may count against the limit.
      if (upload.status === 'fulfilled') await adapter.deleteUpload(session.id).catch(() => undefined);
      await this.forget(session).catch(() => undefined);
      throw failure.reason;
    }
    this.knownSessions.set(session.id, session);
    // No running hash yet: the first append starts one (see claimRunningHash), so a session
    // opened and left costs no hash.
    events.notify('uploadStarted', { repository, uploadId: session.id });
    return session;
  }

  /** The session `id`, which must belong to `repository`; else `BLOB_UPLOAD_UNKNOWN`. */
  async find(repository: string, id: string): Promise<UploadSession> {
    const session = UPLOAD_ID.test(id) && !this.purging.has(id) ? await this.readSession(id) : undefined;
    if (!session || session.repository !== repository) {
      throw new RegistryError('BLOB_UPLOAD_UNKNOWN', `upload ${id.slice(0, 80)} is not known in ${repository}`);
    }
    return session;
  }

  /** Bytes stored so far in a session. */
  async size(session: UploadSession): Promise<number> {
    const size = await this.shared.adapter.uploadSize(session.id);
    if (size === undefined) throw new RegistryError('BLOB_UPLOAD_UNKNOWN', `upload ${session.id} has no data`);
    return size;
  }

  /**
   * Appends `body` to a session stored at `expectedSize` bytes and resolves to the new size,
   * within `maxBlobSize`, the room its quota leaves (403 `DENIED`), and `bodyIdleTimeout`. A
   * body that announces its length is refused before it is read. A concurrent writer or a stale
   * offset fails with a 416 that reports the stored size.
   */
  async append(session: UploadSession, expectedSize: number, body: Readable, options: AppendOptions = {}): Promise<number> {
    const { adapter, events, limits, hooks } = this.shared;
    const { declaredLength } = options;
    const tooLarge = () => new RegistryError('SIZE_INVALID', `blobs are limited to ${limits.maxBlobSize} bytes on this registry`, { status: 413 });
    const announced = declaredLength ?? options.announcedLength;
    if (announced !== undefined && expectedSize + announced > limits.maxBlobSize) throw tooLarge();
    // The body may already be flowing (a byte counter listens to it): it waits while the quota is counted.
    if (hooks.headroom) body.pause();
    const room = await hooks.headroom?.(session.repository, options.digest);
    if (room && announced !== undefined && expectedSize + announced > room.bytes) throw room.refuse(expectedSize + announced);
    // The quota, when it leaves less room than the size limit, is what a streaming body runs into first.
    const quotaFirst = declaredLength === undefined && room !== undefined && room.bytes < limits.maxBlobSize;
    const running = this.claimRunningHash(session, expectedSize);
    let lastProgress = Number.NEGATIVE_INFINITY;
    const spec: MeterSpec = {
      hash: running,
      limit: declaredLength ?? (quotaFirst ? room.bytes : limits.maxBlobSize) - expectedSize,
      overLimit:
        declaredLength !== undefined
          ? () => rangeError(expectedSize, `the body is longer than the ${declaredLength} bytes its Content-Range declares`)
          : quotaFirst
            ? () => room.refuse(room.bytes + 1)
            : tooLarge,
      idle: bodyIdleLimit(limits.bodyIdleTimeout, 'BLOB_UPLOAD_INVALID'),
      onBytes: (bytes: number) => {
        const now = Date.now();
        if (now - lastProgress < limits.progressInterval) return;
        lastProgress = now;
        events.notify('uploadProgress', { repository: session.repository, uploadId: session.id, bytes: expectedSize + bytes });
      },
      ended: () => new RegistryError('BLOB_UPLOAD_INVALID', 'the body ended early: the client closed the connection'),
    };
    return meterBody(body, spec, async (meter) => {
      let newSize: number;
      try {
        newSize = await adapter.appendUpload(session.id, expectedSize, meter);
      } catch (error) {
        throw translateUploadError(error, session);
      }
      if (running && meter.bytes === newSize - expectedSize) {
        this.runningHashes.set(session.id, { hash: running, size: newSize });
      }
      return newSize;
    });
  }

  /**
   * Verifies the session's bytes against `digest` and, when they match, publishes them as that
   * digest's content linked into the session's repository, and ends the session. On a mismatch
   * nothing is published and the session stays as it was.
   */
  async complete(session: UploadSession, digest: Digest): Promise<BlobInfo> {
    const { adapter, events } = this.shared;
    // Whether the content is stored already is asked alongside the size, to spare the wait for one.
    const [size, stored] = await Promise.all([this.size(session), this.blobs.content(digest)]);
    const verifyStart = performance.now();
    const actual = await this.hash(session, size, digest.algorithm);
    const verifyMs = performance.now() - verifyStart;
    if (actual !== digest.hex) {
      throw new RegistryError('DIGEST_INVALID', `the uploaded content has digest ${digest.algorithm}:${actual}, not ${digest.value}`);
    }
    // Content stored already, perhaps unreferenced, is the copy the commit keeps: it is pinned
    // until the link names it (and a collection deleting it now is waited for). New content needs
    // no pin: no collection has marked it, and the touch after the link covers the rest.
    if (stored) await this.marks.pin(contentItem(digest));
    await this.blobs.link(session.repository, digest, size, async () => {
      try {
        await adapter.commitUpload(session.id, size, contentKey(digest));
      } catch (error) {
        throw translateUploadError(error, session);
      }
      this.runningHashes.delete(session.id);
    }).catch(async (error: unknown) => {
      // When the bytes became content but the link was refused (a full disk), the session has
      // ended as after a crash at this point, and pushing again links the content.
      if ((await adapter.uploadSize(session.id)) === undefined) await this.forget(session).catch(() => undefined);
      throw error;
    });
    await this.forget(session);
    await events.publish('blobCommitted', { repository: session.repository, uploadId: session.id, digest: digest.value, size, verifyMs });
    return { size };
  }

  /**
   * Completes a session under `digest`, or, when none is given, under the sha256 of the bytes it
   * holds (from the running hash, so they are not read again), for uploads whose digest nobody
   * knows beforehand (form files).
   */
  async completeAs(session: UploadSession, digest?: Digest): Promise<StoredBlob> {
    const stored = digest ?? parseDigest(`sha256:${await this.hash(session, await this.size(session), 'sha256')}`);
    const alreadyLinked = (await this.blobs.info(session.repository, stored)) !== undefined;
    const { size } = await this.complete(session, stored);
    return { digest: stored, size, alreadyLinked };
  }

  /** Ends a session at the client's request (or a failed one-request upload) and drops its bytes. */
  async cancel(session: UploadSession): Promise<void> {
    const size = await this.drop(session);
    this.shared.events.notify('uploadCancelled', { repository: session.repository, uploadId: session.id, size });
  }

  /** Runs `work` with session `id` marked in use, so the purger leaves it alone meanwhile. */
  async withSession<T>(id: string, work: () => Promise<T>): Promise<T> {
    this.inUse.set(id, (this.inUse.get(id) ?? 0) + 1);
    try {
      return await work();
    } finally {
      const count = this.inUse.get(id)! - 1;
      if (count > 0) this.inUse.set(id, count);
      else this.inUse.delete(id);
    }
  }

  /**
   * Removes sessions started more than `maxAge` ms ago and resolves to their ids; each emits
   * `uploadExpired`. A session with a request in flight in this process is skipped, and so is one
   * the adapter reports busy (see `StorageAdapter.uploadBusy`). A request to another process that
   * begins after that check finds the session gone (404) and never publishes anything unverified.
   */
  async purgeStale(maxAge: number): Promise<string[]> {
    const { events } = this.shared;
    const purged: string[] = [];
    for (const session of await this.staleSessions(maxAge)) {
      const { id } = session;
      // Checked and claimed in one synchronous step: a request arriving from here on finds it gone.
      if (this.inUse.has(id) || this.purging.has(id)) continue;
      this.purging.add(id);
      try {
        const size = await this.drop(session);
        events.notify('uploadExpired', { repository: session.repository, uploadId: session.id, size });
        purged.push(id);
      } finally {
        this.purging.delete(id);
      }
    }
    return purged;
  }

  /** Sessions started more than `maxAge` ms ago that no request is using: what {@link purgeStale} removes. */
  async staleSessions(maxAge: number): Promise<UploadSession[]> {
    const cutoff = Date.now() - maxAge;
    const stale: UploadSession[] = [];
    for (const id of await this.listSessionIds()) {
      const session = await this.readSession(id);
      if (!session || !(Date.parse(session.startedAt) <= cutoff) || this.inUse.has(id)) continue;
      if (!(await this.shared.adapter.uploadBusy?.(id))) stale.push(session);
    }
    return stale;
  }

  /** Deletes a session's bytes and record; resolves to how many bytes it held. */
  private async drop(session: UploadSession): Promise<number> {
    const { adapter } = this.shared;
    this.runningHashes.delete(session.id);
    const size = (await adapter.uploadSize(session.id)) ?? 0;
    await adapter.deleteUpload(session.id);
    await this.forget(session);
    return size;
  }

  /** Removes a session's index entry, then its record (last, so that a crash in between leaves a record to purge by). */
  private async forget(session: UploadSession): Promise<void> {
    const { adapter } = this.shared;
    await adapter.deleteDocument(repositorySessionKey(session.repository, session.id));
    await adapter.deleteDocument(uploadRecordKey(session.id));
    this.knownSessions.delete(session.id);
  }

  /** The ids of all sessions in the storage; forgets the records of sessions that are gone. */
  private async listSessionIds(): Promise<string[]> {
    const ids = await this.shared.adapter.listDocuments(UPLOADS_PREFIX);
    const listed = new Set(ids);
    for (const id of this.knownSessions.keys()) if (!listed.has(id)) this.knownSessions.delete(id);
    return ids;
  }

  /** A session's record, from memory when seen before. */
  private async readSession(id: string): Promise<UploadSession | undefined> {
    const known = this.knownSessions.get(id);
    if (known) return known;
    const record = await this.shared.adapter.getDocument(uploadRecordKey(id));
    if (!record) return undefined;
    const session = JSON.parse(record.toString('utf8')) as UploadSession;
    this.knownSessions.set(id, session);
    return session;
  }

  /** Takes the session's running hash if it covers exactly `size` bytes, so no other request can feed it. */
  private claimRunningHash(session: UploadSession, size: number): Hash | undefined {
    const running = this.runningHashes.get(session.id);
    this.runningHashes.delete(session.id);
    if (running && running.size === size) return running.hash;
    return size === 0 ? createDigestHash(session.algorithm ?? 'sha256') : undefined;
  }

  /** The hex digest of the first `size` bytes of an upload: from the running hash, or by reading them back. */
  private async hash(session: UploadSession, size: number, algorithm: DigestAlgorithm): Promise<string> {
    if (size === 0) return createDigestHash(algorithm).digest('hex');
    const { id } = session;
    const own = algorithm === (session.algorithm ?? 'sha256');
    const running = this.runningHashes.get(id);
    if (own && running && running.size === size) return running.hash.copy().digest('hex');
    const hash = createDigestHash(algorithm);
    const stream = await this.shared.adapter.readUpload(id);
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
    if (own) this.runningHashes.set(id, { hash: hash.copy(), size });
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
