/** The storage adapter interface the registry writes through, its errors, and the helpers adapters share. */
import type { Readable } from 'node:stream';
import type { ByteRange } from '../range';

/**
 * A content stream that takes its chunks back for reuse. The router hands each chunk to
 * {@link recycle} once the socket has taken it, so the stream can read into that memory again:
 * with a new buffer per chunk, a download leaves as many bytes of buffers as it sent to the garbage collector.
 * Other consumers never call it, and then the stream keeps allocating.
 */
export interface RecyclingReadable extends Readable {
  /** Takes back a chunk this stream emitted, which its consumer no longer reads. */
  recycle(chunk: Buffer): void;
}

/** Whether `stream` takes its chunks back for reuse. */
export function isRecycling(stream: Readable): stream is RecyclingReadable {
  return typeof (stream as Partial<RecyclingReadable>).recycle === 'function';
}

/** What a storage adapter knows about a piece of stored content. */
export interface ContentInfo {
  /** Size in bytes. */
  size: number;
}

/** Paging for {@link StorageAdapter.listDocuments}. */
export interface ListOptions {
  /** Only names that sort after this one (code unit order). */
  after?: string;
  /** At most this many names. */
  limit?: number;
}

/** Options for {@link StorageAdapter.putDocument}. */
export interface PutDocumentOptions {
  /** Write only when no document exists under the key; the call then returns false instead. */
  ifAbsent?: boolean;
}

/**
 * Where a registry keeps its bytes. A host app supplies one to `createRegistryRouter`; the
 * built-in ones are `MemoryStorage` and `FileSystemStorage`.
 *
 * An adapter knows nothing of repositories, tags or digests: the registry core above it owns
 * that data model and hands the adapter three kinds of things.
 *
 * - **Uploads**: byte sequences that only grow, by conditional appends, until they are committed
 *   (turned into content without copying their bytes again) or deleted. An upload must be
 *   visible to every process that shares the store.
 * - **Content**: immutable bytes under a key, read whole or by range.
 * - **Documents**: small values (JSON records of tags, links, sessions) under a key, with a
 *   conditional create and a sorted, paged listing by prefix.
 *
 * Keys and upload ids are `/`-separated segments of `[A-Za-z0-9._-]`, never `.` or `..`; the core
 * never makes a key that is both a document and a prefix of another document's key.
 *
 * Adapters signal the two expected failures with {@link UploadConflictError} and
 * {@link NotFoundError}, and faults of the backend with {@link StorageFullError} (no space or
 * quota left: the client gets 507) and {@link StorageUnavailableError} (unreachable, timing out
 * or throttling: 503 with `Retry-After`). The core also recognizes the Node error codes those
 * stand for (`ENOSPC`, `ECONNREFUSED`, …; see {@link asStorageFault}) on errors an adapter passes
 * through. Any other error becomes a 500. A write that fails leaves nothing behind that a later
 * read could see: no document, no content, no temporary file; an append that fails keeps exactly
 * the bytes it wrote before the failure, which are a prefix of its body.
 */
export interface StorageAdapter {
  /**
   * The smallest chunk, other than the last, that the backend can take (an object store's
   * minimum part size). Advertised to clients as `OCI-Chunk-Min-Length`; undefined for none.
   */
  readonly minChunkSize?: number;

  /** Creates an empty upload. */
  createUpload(id: string): Promise<void>;

  /**
   * Appends `body` to an upload whose size is `expectedSize`, and resolves to the new size.
   * The check and the append are one atomic step across every process sharing the store:
   * when the size differs, or another append or commit is under way, it rejects with
   * {@link UploadConflictError} without reading `body`. When `body` fails midway, the bytes
   * already written may stay; the upload's size then counts exactly those bytes.
   * Rejects with {@link NotFoundError} for an unknown upload.
   */
  appendUpload(id: string, expectedSize: number, body: Readable): Promise<number>;

  /** The upload's size, or undefined when there is no such upload. */
  uploadSize(id: string): Promise<number | undefined>;

  /**
   * Optional: whether an append or commit to the upload is under way, in any process sharing the
   * store. The purger skips a busy session; without this method it can remove a session another
   * process is writing, whose request then fails with 404 (nothing unverified is ever published).
   */
  uploadBusy?(id: string): Promise<boolean>;

  /** Streams the upload's bytes from the start (used to verify a digest when no running hash is at hand). */
  readUpload(id: string): Promise<Readable>;

  /**
   * Makes the upload's bytes the content under `contentKey`, without copying them, and removes
   * the upload. Rejects with {@link UploadConflictError} unless the upload still has
   * `expectedSize` bytes and no append is under way. When content already exists under the key
   * (another upload of the same bytes), either copy may stay: the core has verified both.
   */
  commitUpload(id: string, expectedSize: number, contentKey: string): Promise<void>;

  /** Removes an upload and its bytes; no error when it does not exist. */
  deleteUpload(id: string): Promise<void>;

  /** Size of the content under `key`, or undefined when there is none. */
  statContent(key: string): Promise<ContentInfo | undefined>;

  /**
   * Streams content, whole or an inclusive byte range. Rejects with {@link NotFoundError}. The
   * stream may be a {@link RecyclingReadable}, to read into the same few buffers throughout.
   */
  readContent(key: string, range?: ByteRange): Promise<Readable>;

  /**
   * Optional: a URL from which a client can fetch the content under `key` directly (a presigned
   * object-store URL), whole, with any Range it sends applying there. Blob GETs are then answered
   * with a 307 redirect to it; undefined streams the content through the registry as usual.
   */
  contentUrl?(key: string): Promise<string | undefined>;

  /** Removes content; no error when it does not exist. */
  deleteContent(key: string): Promise<void>;

  /**
   * Optional: the keys of all stored content, sorted by code unit order, paged. Garbage
   * collection needs it to find content no repository links to; without it, a collection
   * removes links and manifests but no content.
   */
  listContent?(options?: ListOptions): Promise<string[]>;

  /** A document's bytes, or undefined. */
  getDocument(key: string): Promise<Buffer | undefined>;

  /**
   * Writes a document atomically (readers see the old or the new value, never a torn one).
   * Resolves to false only when `ifAbsent` was set and the key already existed.
   */
  putDocument(key: string, value: Buffer, options?: PutDocumentOptions): Promise<boolean>;

  /** Removes a document; no error when it does not exist. */
  deleteDocument(key: string): Promise<void>;

  /**
   * The keys of the documents under `prefix` (which ends in `/`), at any depth, with the prefix
   * removed, sorted by code unit order.
   */
  listDocuments(prefix: string, options?: ListOptions): Promise<string[]>;
}

/** An append or commit found the upload at another size, or busy with another request. */
export class UploadConflictError extends Error {
  /** The upload's size as the adapter found it. */
  readonly size: number;

  constructor(size: number, message = `upload is at ${size} bytes or busy`) {
    super(message);
    this.name = 'UploadConflictError';
    this.size = size;
  }
}

/** The upload or content asked for does not exist. */
export class NotFoundError extends Error {
  constructor(what: string) {
    super(`${what} not found`);
    this.name = 'NotFoundError';
  }
}

/**
 * The backend has no room for a write: a full disk, a quota, an object store refusing the size.
 * Nothing of the failed write is visible afterwards (an append keeps the prefix that landed), and
 * the same write succeeds once space is freed. The registry answers 507 Insufficient Storage.
 */
export class StorageFullError extends Error {
  constructor(message = 'storage is full', options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StorageFullError';
  }
}

/**
 * The backend cannot be reached, timed out, or asks to slow down: the same request may succeed
 * later. The registry answers 503 with `Retry-After` set to {@link retryAfter}.
 */
export class StorageUnavailableError extends Error {
  /** Seconds a client should wait before retrying. */
  readonly retryAfter: number;

  constructor(message = 'storage is unavailable', options?: { cause?: unknown; retryAfter?: number }) {
    super(message, options);
    this.name = 'StorageUnavailableError';
    this.retryAfter = options?.retryAfter ?? DEFAULT_RETRY_AFTER;
  }
}

/** The `Retry-After` of a {@link StorageUnavailableError} that names none, in seconds. */
export const DEFAULT_RETRY_AFTER = 5;

/** Node error codes of a full disk or an exhausted quota. */
const FULL_CODES = new Set(['ENOSPC', 'EDQUOT']);
/** Node error codes of a backend that cannot be reached or did not answer in time. */
const UNAVAILABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ECONNABORTED']);

/**
 * `error` as a {@link StorageFullError} or {@link StorageUnavailableError} when its Node error
 * code says it is one (`ENOSPC` and `EDQUOT`; `ECONNREFUSED`, `ECONNRESET`, `ETIMEDOUT`, `EPIPE`,
 * `EHOSTUNREACH`, `ENETUNREACH`, `EAI_AGAIN`, `ECONNABORTED`), otherwise `error` itself. Adapters
 * call it on the errors of their backend; the core calls it again on whatever reaches it, so an
 * adapter that passes such errors through is classified the same way.
 */
export function asStorageFault(error: unknown): unknown {
  if (error instanceof StorageFullError || error instanceof StorageUnavailableError) return error;
  const code = (error as { code?: unknown } | undefined)?.code;
  if (typeof code !== 'string') return error;
  if (FULL_CODES.has(code)) return new StorageFullError(`storage is full (${code})`, { cause: error });
  if (UNAVAILABLE_CODES.has(code)) return new StorageUnavailableError(`storage is unavailable (${code})`, { cause: error });
  return error;
}

const KEY_SEGMENT = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

/**
 * Throws unless `key` follows the key rules in {@link StorageAdapter}. Adapters call it before
 * turning a key into a path, so that no key can reach outside their storage.
 */
export function assertSafeKey(key: string): void {
  const segments = key.split('/');
  for (const segment of segments) {
    if (!KEY_SEGMENT.test(segment)) {
      throw new Error(`unsafe storage key: ${JSON.stringify(key.slice(0, 200))}`);
    }
  }
}

/** Applies {@link ListOptions} to names already sorted. */
export function pageNames(sorted: string[], options: ListOptions = {}): string[] {
  const from = options.after === undefined ? sorted : sorted.filter((name) => name > options.after!);
  return options.limit === undefined ? from : from.slice(0, options.limit);
}
