/** S3Storage: the registry in an S3 bucket, shared by every registry process that names it. */
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { moduleLogger } from '../../log';
import type { ByteRange } from '../../range';
import {
  assertSafeKey,
  NotFoundError,
  UploadConflictError,
  type ContentInfo,
  type ListOptions,
  type PutDocumentOptions,
  type StorageAdapter,
} from '../adapter';
import { Bucket, isMissing, s3Fault } from './bucket';
import { ClaimTable } from './claims';
import { MAX_PART_SIZE, MIN_PART_SIZE, partSizeFor, UploadWriter, type Multipart, type ObjectSpan, type UploadState, type UploadWriterIo } from './upload-writer';

const log = moduleLogger('s3');
const sdkLog = log({ source: 'aws-sdk' });
const sdkLogger = {
  debug: () => undefined,
  info: () => undefined,
  warn: (...content: unknown[]) => sdkLog('%s', content.join(' ')),
  error: (...content: unknown[]) => sdkLog('%s', content.join(' ')),
};

/** Options for {@link S3Storage}. */
export interface S3StorageOptions {
  /** The bucket; it must exist. */
  bucket: string;
  /** Key prefix for everything this registry stores (`/`-separated safe segments), so a bucket can be shared. Default none. */
  prefix?: string;
  /** The S3 endpoint for S3-compatible servers (MinIO, Ceph RGW, Swift, R2), e.g. `http://127.0.0.1:9000`. Default AWS. */
  endpoint?: string;
  /** Region. Default `us-east-1`. */
  region?: string;
  /** Access key; default the AWS SDK's credential chain (environment, profile, instance role). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Address buckets as `<endpoint>/<bucket>` rather than `<bucket>.<endpoint>` (most self-hosted servers need it). Default false. */
  forcePathStyle?: boolean;
  /** Further `S3Client` settings, applied last. */
  clientOptions?: S3ClientConfig;
  /**
   * Bytes per multipart part, at least 5 MiB; also advertised as `OCI-Chunk-Min-Length`, since
   * chunks of whole parts never need their tail read back. Each append holds at most one part
   * in memory. After every 1,000 parts the size doubles. Default 32 MiB: fewer, larger parts cost
   * the registry and the S3 server less per byte (docs/performance.md, S3 uploads).
   */
  partSize?: number;
  /** How long an upload's claim outlives its holder's last renewal (see {@link ClaimTable}). Default 30 s. */
  claimLeaseMs?: number;
  /**
   * When set, blob GETs are answered with a 307 redirect to a presigned GetObject URL valid this
   * many seconds, so the bytes go from S3 to the client directly (clients must be able to reach
   * the endpoint). Default: off, blobs stream through the registry.
   */
  presignedReadSeconds?: number;
}

/**
 * Stores the registry in an S3 bucket (AWS S3 or an S3-compatible server), so that several
 * registry processes can share it. Load it from `express-oci-registry/s3`; it needs the
 * `@aws-sdk/client-s3` and `@aws-sdk/s3-request-presigner` packages.
 *
 * Layout under the prefix:
 * - `documents/<key>`: documents, one small object each.
 * - `uploads/<id>`: an upload's state (size, multipart upload id and parts, tail), so any process
 *   can continue the session.
 * - `data/<id>/…`: an upload's bytes: the object its multipart upload assembles, and the tail
 *   objects that hold bytes that do not yet fill a part.
 * - `content/<key>`: a pointer naming the object (and byte span) that holds committed content.
 *   Committing completes the multipart upload and writes the pointer: no byte is copied again.
 * - `claims/…`: the {@link ClaimTable} that makes appends and commits exclusive across processes.
 *
 * Appends cut the stream into parts of the part size, buffering at most one part; whatever is
 * left when the body ends (fewer bytes than a part) is written as a tail object, and read back
 * into memory by the next append. Reading an upload back (a process that lacks the running
 * hash verifies a digest that way) completes the multipart upload first, because S3 cannot read
 * the parts of an unfinished one; should the client append again after that, the finished
 * object's whole parts are copied server side into a new multipart upload.
 *
 * Incomplete multipart uploads left by crashed processes hold storage until aborted: give the
 * bucket a lifecycle rule that aborts them after a day or so.
 */
export class S3Storage implements StorageAdapter {
  /** The part size, advertised as the minimum chunk. */
  readonly minChunkSize: number;
  /** The client this storage sends its requests with. */
  readonly client: S3Client;
  private readonly bucket: Bucket;
  private readonly root: string;
  private readonly claims: ClaimTable;
  private readonly presignedReadSeconds?: number;
  private readonly writerIo: UploadWriterIo = {
    unseal: (id, state) => this.unseal(id, state),
    createMultipart: (id) => this.createMultipart(id),
    uploadPart: (multipart, number, body, length, signal) => this.uploadPart(multipart, number, body, length, signal),
    writeTail: (id, bytes) => this.writeTail(id, bytes),
    readSpan: (span) => this.readSpan(span),
    writeState: (id, state) => this.writeState(id, state),
    discard: (key) => this.discard(key),
  };

  constructor(options: S3StorageOptions) {
    if (options.prefix) assertSafeKey(options.prefix);
    const partSize = options.partSize ?? 32 * 1024 * 1024;
    if (!(partSize >= MIN_PART_SIZE && partSize <= MAX_PART_SIZE)) throw new RangeError(`partSize must be between 5 MiB and 5 GiB`);
    this.minChunkSize = partSize;
    this.client = new S3Client({
      endpoint: options.endpoint,
      region: options.region ?? 'us-east-1',
      credentials: options.credentials,
      forcePathStyle: options.forcePathStyle,
      // Checksums only where S3 requires them: many S3-compatible servers refuse the
      // aws-chunked bodies that the SDK's default checksums bring.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      // Parts stream as their bytes arrive; waiting for "100 Continue" before each would stall them.
      expectContinueHeader: false,
      // The SDK's own messages (e.g. for a part request aborted because the body ended short,
      // which is expected here) go to this module's debug namespace, not to the console.
      logger: sdkLogger,
      ...options.clientOptions,
    });
    // Every request's faults are classified once, after the SDK's own retries, whatever sent it.
    this.client.middlewareStack.add(
      (next) => async (args) => {
        try {
          return await next(args);
        } catch (error) {
          throw s3Fault(error);
        }
      },
      { step: 'initialize', name: 'storageFaults' },
    );
    this.bucket = new Bucket(this.client, options.bucket);
    this.root = options.prefix ? `${options.prefix}/` : '';
    this.presignedReadSeconds = options.presignedReadSeconds;
    this.claims = new ClaimTable(this.bucket, `${this.root}claims/`, options.claimLeaseMs ?? 30_000);
  }

  async createUpload(id: string): Promise<void> {
    assertSafeKey(id);
    await this.writeState(id, { size: 0, partSize: this.minChunkSize });
  }

  async appendUpload(id: string, expectedSize: number, body: Readable): Promise<number> {
    return this.withUpload(id, expectedSize, async (state) => {
      const chunks = body[Symbol.asyncIterator]();
      try {
        let next = await chunks.next();
        // An empty body (the purger's busy probe) changes nothing: reopening a sealed upload or
        // reading its tail for it would only cost a copy and leave a multipart upload behind.
        if (next.done) return state.size;
        const writer = await UploadWriter.resume(this.writerIo, id, state);
        try {
          for (; !next.done; next = await chunks.next()) await writer.write(next.value as Buffer);
        } finally {
          // Also when the body failed: the bytes that arrived are the client's, so they stay.
          await writer.finish();
        }
        return writer.state.size;
      } finally {
        await chunks.return?.();
      }
    });
  }

  async uploadSize(id: string): Promise<number | undefined> {
    assertSafeKey(id);
    return (await this.readState(id))?.size;
  }

  async uploadBusy(id: string): Promise<boolean> {
    assertSafeKey(id);
    if (!(await this.readState(id))) return false;
    const claim = await this.claims.tryClaim(`uploads/${id}`);
    await claim?.release();
    return claim === undefined;
  }

  async readUpload(id: string): Promise<Readable> {
    assertSafeKey(id);
    let state = await this.requireState(id);
    if (state.multipart) {
      const claim = await this.claims.claim(`uploads/${id}`);
      try {
        state = await this.requireState(id);
        if (state.multipart) state = await this.seal(id, state);
      } finally {
        await claim.release();
      }
    }
    const span = this.contentSpan(state);
    return span ? this.readSpan(span) : Readable.from([]);
  }

  async commitUpload(id: string, expectedSize: number, contentKey: string): Promise<void> {
    assertSafeKey(contentKey);
    await this.withUpload(id, expectedSize, async (state) => {
      if (state.multipart) state = await this.seal(id, state);
      const span = this.contentSpan(state);
      // The upload ends before its content appears: a crash in between loses the session (the
      // client starts again) but never leaves an upload whose cleanup would delete content.
      await this.bucket.delete(this.stateKey(id));
      // Under a claim, so that of two uploads of the same content exactly one object is kept and
      // the other's is deleted, never both kept with one of them unreferenced.
      const kept = await this.putIfAbsent(this.contentPointerKey(contentKey), `content/${contentKey}`, JSON.stringify(span ?? { size: 0 }));
      await this.deleteData(id, kept ? span?.key : undefined);
      log({ upload: id })('committed %d bytes as %s%s', state.size, contentKey, kept ? '' : ' (already stored)');
    });
  }

  async deleteUpload(id: string): Promise<void> {
    assertSafeKey(id);
    if (!(await this.readState(id))) return;
    // Wait for an append under way to finish, so that it cannot write the state back afterwards.
    const claim = await this.claims.claim(`uploads/${id}`).catch(() => undefined);
    try {
      const state = await this.readState(id);
      if (!state) return;
      await this.bucket.delete(this.stateKey(id));
      if (state.multipart) await this.abortMultipart(state.multipart);
      await this.deleteData(id);
    } finally {
      await claim?.release();
    }
  }

  async statContent(key: string): Promise<ContentInfo | undefined> {
    const pointer = await this.readPointer(key);
    return pointer && { size: pointer.size };
  }

  async readContent(key: string, range?: ByteRange): Promise<Readable> {
    const pointer = await this.readPointer(key);
    if (!pointer) throw new NotFoundError(`content ${key}`);
    if (pointer.size === 0) return Readable.from([]);
    const start = range?.start ?? 0;
    const end = range?.end ?? pointer.size - 1;
    return this.readSpan({ key: pointer.key, offset: pointer.offset + start, size: end - start + 1 });
  }

  async contentUrl(key: string): Promise<string | undefined> {
    if (this.presignedReadSeconds === undefined) return undefined;
    const pointer = await this.readPointer(key);
    // Only a span that is its whole object can be handed out (an offset would shift the bytes).
    if (!pointer || pointer.size === 0 || pointer.offset !== 0) return undefined;
    return getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket.name, Key: pointer.key }), {
      expiresIn: this.presignedReadSeconds,
    });
  }

  async deleteContent(key: string): Promise<void> {
    const pointer = await this.readPointer(key);
    if (!pointer) return;
    await this.bucket.delete(this.contentPointerKey(key));
    if (pointer.size > 0) await this.bucket.delete(pointer.key);
  }

  async getDocument(key: string): Promise<Buffer | undefined> {
    return this.bucket.get(this.documentKey(key));
  }

  async putDocument(key: string, value: Buffer, options: PutDocumentOptions = {}): Promise<boolean> {
    const objectKey = this.documentKey(key);
    if (!options.ifAbsent) {
      await this.bucket.put(objectKey, value);
      return true;
    }
    return this.putIfAbsent(objectKey, `documents/${key}`, value);
  }

  async deleteDocument(key: string): Promise<void> {
    await this.bucket.delete(this.documentKey(key));
  }

  async listContent(options: ListOptions = {}): Promise<string[]> {
    return this.listNames(`${this.root}content/`, options);
  }

  async listDocuments(prefix: string, options: ListOptions = {}): Promise<string[]> {
    if (prefix) assertSafeKey(prefix.replace(/\/$/, ''));
    return this.listNames(`${this.root}documents/${prefix}`, options);
  }

  /** The object keys under `base`, with `base` removed, paged by names relative to it. */
  private async listNames(base: string, options: ListOptions): Promise<string[]> {
    const objects = await this.bucket.list(base, {
      startAfter: options.after === undefined ? undefined : base + options.after,
      limit: options.limit,
    });
    return objects.map((object) => object.Key!.slice(base.length));
  }

  /**
   * Writes `objectKey` unless it exists and says whether it wrote. No conditional PUT on every
   * S3-compatible server: the check and the write happen under the claim `claimName`, which orders
   * them against other such writes of the key (not against plain puts).
   */
  private async putIfAbsent(objectKey: string, claimName: string, value: Buffer | string): Promise<boolean> {
    const claim = await this.claims.claim(claimName);
    try {
      if (await this.bucket.exists(objectKey)) return false;
      await this.bucket.put(objectKey, value);
      return true;
    } finally {
      await claim.release();
    }
  }

  /** Reads and checks an upload's state under its claim, runs `work`, then releases the claim. */
  private async withUpload<T>(id: string, expectedSize: number, work: (state: UploadState) => Promise<T>): Promise<T> {
    assertSafeKey(id);
    // A cheap early answer for a stale offset, before any claim traffic.
    const seen = await this.requireState(id);
    if (seen.size !== expectedSize) throw new UploadConflictError(seen.size);
    const claim = await this.claims.tryClaim(`uploads/${id}`);
    if (!claim) throw new UploadConflictError(seen.size, 'another request is writing to this upload');
    try {
      const state = await this.requireState(id);
      if (state.size !== expectedSize) throw new UploadConflictError(state.size);
      return await work(state);
    } finally {
      await claim.release();
    }
  }

  /**
   * Completes the multipart upload (its tail becomes the last part, copied server side: fewer
   * bytes than a part) and records the finished object as the upload's bytes.
   */
  private async seal(id: string, state: UploadState): Promise<UploadState> {
    const multipart = state.multipart!;
    const parts = multipart.parts.map(({ number, etag }) => ({ PartNumber: number, ETag: etag }));
    if (state.tail && state.tail.size > 0) {
      parts.push({ PartNumber: parts.length + 1, ETag: await this.copyPart(multipart, parts.length + 1, state.tail) });
    }
    await this.client.send(
      new CompleteMultipartUploadCommand({
        Bucket: this.bucket.name,
        Key: multipart.key,
        UploadId: multipart.uploadId,
        MultipartUpload: { Parts: parts },
      }),
    );
    const sealed: UploadState = { size: state.size, partSize: state.partSize, sealed: multipart.key };
    await this.writeState(id, sealed);
    if (state.tail) await this.discard(state.tail.key);
    log({ upload: id })('sealed %d parts into one object', parts.length);
    return sealed;
  }

  /**
   * Turns a sealed upload back into a multipart upload so that it can grow: its whole parts are
   * copied server side, the rest becomes the tail (a span of the sealed object).
   */
  private async unseal(id: string, state: UploadState): Promise<UploadState> {
    const source = state.sealed!;
    let multipart: Multipart | undefined;
    let offset = 0;
    while (state.size - offset >= partSizeFor(state.partSize, (multipart?.parts.length ?? 0) + 1)) {
      multipart ??= await this.createMultipart(id);
      const number = multipart.parts.length + 1;
      const size = partSizeFor(state.partSize, number);
      const etag = await this.copyPart(multipart, number, { key: source, offset, size });
      multipart.parts.push({ number, etag, size });
      offset += size;
    }
    log({ upload: id })('reopened a sealed upload, copying %d bytes server side', offset);
    return { size: state.size, partSize: state.partSize, multipart, tail: { key: source, offset, size: state.size - offset } };
  }

  /** Starts the multipart upload that will assemble an upload's bytes. */
  private async createMultipart(id: string): Promise<Multipart> {
    const key = `${this.dataPrefix(id)}${randomUUID()}`;
    const created = await this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket.name, Key: key }));
    return { key, uploadId: created.UploadId!, parts: [] };
  }

  /** Uploads one part of `length` bytes as `body` streams them; resolves to its ETag. */
  private async uploadPart(multipart: Multipart, number: number, body: Readable, length: number, signal: AbortSignal): Promise<string> {
    const uploaded = await this.client.send(
      new UploadPartCommand({
        Bucket: this.bucket.name,
        Key: multipart.key,
        UploadId: multipart.uploadId,
        PartNumber: number,
        Body: body,
        ContentLength: length,
      }),
      { abortSignal: signal },
    );
    return uploaded.ETag!;
  }

  /** Writes a tail object; resolves to its span. */
  private async writeTail(id: string, bytes: Buffer): Promise<ObjectSpan> {
    const key = `${this.dataPrefix(id)}tail-${randomUUID()}`;
    await this.bucket.put(key, bytes);
    return { key, offset: 0, size: bytes.length };
  }

  /** Streams a span of an object. */
  private async readSpan(span: ObjectSpan): Promise<Readable> {
    const stream = await this.bucket.read(span.key, { start: span.offset, end: span.offset + span.size - 1 });
    if (!stream) throw new NotFoundError(`object ${span.key}`);
    return stream;
  }

  /** Writes an upload's state document. */
  private async writeState(id: string, state: UploadState): Promise<void> {
    await this.bucket.put(this.stateKey(id), JSON.stringify(state));
  }

  /** Deletes an object the upload no longer needs (best effort: a leftover only costs storage). */
  private async discard(key: string): Promise<void> {
    await this.bucket.delete(key).catch((error) => log({ object: key })('could not delete: %O', error));
  }

  private async copyPart(multipart: Multipart, number: number, span: ObjectSpan): Promise<string> {
    const copied = await this.client.send(
      new UploadPartCopyCommand({
        Bucket: this.bucket.name,
        Key: multipart.key,
        UploadId: multipart.uploadId,
        PartNumber: number,
        CopySource: `${this.bucket.name}/${span.key}`,
        CopySourceRange: `bytes=${span.offset}-${span.offset + span.size - 1}`,
      }),
    );
    return copied.CopyPartResult!.ETag!;
  }

  private async abortMultipart(multipart: Multipart): Promise<void> {
    try {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket.name, Key: multipart.key, UploadId: multipart.uploadId }));
    } catch (error) {
      if (!isMissing(error)) throw error;
    }
  }

  /** Deletes an upload's data objects, except `keep`. */
  private async deleteData(id: string, keep?: string): Promise<void> {
    for (const object of await this.bucket.list(this.dataPrefix(id))) {
      if (object.Key !== keep) await this.discard(object.Key!);
    }
  }

  /** The span holding a sealed or part-less upload's bytes; undefined when it is empty. */
  private contentSpan(state: UploadState): ObjectSpan | undefined {
    if (state.sealed) return state.size > 0 ? { key: state.sealed, offset: 0, size: state.size } : undefined;
    return state.tail && state.tail.size > 0 ? state.tail : undefined;
  }

  private async readState(id: string): Promise<UploadState | undefined> {
    const bytes = await this.bucket.get(this.stateKey(id));
    return bytes && (JSON.parse(bytes.toString('utf8')) as UploadState);
  }

  private async requireState(id: string): Promise<UploadState> {
    const state = await this.readState(id);
    if (!state) throw new NotFoundError(`upload ${id}`);
    return state;
  }

  private async readPointer(key: string): Promise<ObjectSpan | undefined> {
    const bytes = await this.bucket.get(this.contentPointerKey(key));
    if (!bytes) return undefined;
    const pointer = JSON.parse(bytes.toString('utf8')) as Partial<ObjectSpan>;
    return { key: pointer.key ?? '', offset: pointer.offset ?? 0, size: pointer.size ?? 0 };
  }

  private stateKey(id: string): string {
    return `${this.root}uploads/${id}`;
  }

  private dataPrefix(id: string): string {
    return `${this.root}data/${id}/`;
  }

  private contentPointerKey(key: string): string {
    assertSafeKey(key);
    return `${this.root}content/${key}`;
  }

  private documentKey(key: string): string {
    assertSafeKey(key);
    return `${this.root}documents/${key}`;
  }
}
