/** The few object operations on one S3 bucket that S3Storage and its claims need. */
import type { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
  type _Object,
} from '@aws-sdk/client-s3';
import { asStorageFault, StorageFullError, StorageUnavailableError } from '../adapter';

/** Paging for {@link Bucket.list}. */
export interface BucketListOptions {
  /** Only keys after this one. */
  startAfter?: string;
  /** At most this many keys. */
  limit?: number;
}

/**
 * The few object operations the S3 adapter and its claims need, over one bucket: whole-object
 * puts of small values, streamed and ranged reads, and complete listings. "Missing" comes back
 * as undefined rather than as an error.
 */
export class Bucket {
  constructor(
    readonly client: S3Client,
    readonly name: string,
  ) {}

  /** Writes a small object whole (PutObject is atomic: readers see the old or the new value). */
  async put(key: string, body: Buffer | string): Promise<void> {
    await this.client.send(new PutObjectCommand({ Bucket: this.name, Key: key, Body: body, ContentLength: Buffer.byteLength(body) }));
  }

  /** Streams an object, whole or an inclusive byte range; undefined when it does not exist. */
  async read(key: string, range?: { start: number; end: number }): Promise<Readable | undefined> {
    try {
      const response = await this.client.send(
        new GetObjectCommand({ Bucket: this.name, Key: key, Range: range && `bytes=${range.start}-${range.end}` }),
      );
      return response.Body as Readable;
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
  }

  /** A small object's bytes; undefined when it does not exist. */
  async get(key: string): Promise<Buffer | undefined> {
    try {
      const response = await this.client.send(new GetObjectCommand({ Bucket: this.name, Key: key }));
      const bytes = await response.Body!.transformToByteArray();
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
  }

  /** Whether an object exists. */
  async exists(key: string): Promise<boolean> {
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.name, Key: key }));
      return true;
    } catch (error) {
      if (isMissing(error)) return false;
      throw error;
    }
  }

  /** Removes an object; no error when it does not exist. */
  async delete(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.name, Key: key }));
  }

  /** The objects under `prefix` in key order, following continuation tokens up to `limit`. */
  async list(prefix: string, options: BucketListOptions = {}): Promise<_Object[]> {
    const objects: _Object[] = [];
    const limit = options.limit ?? Number.POSITIVE_INFINITY;
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.name,
          Prefix: prefix,
          StartAfter: token ? undefined : options.startAfter,
          ContinuationToken: token,
          MaxKeys: Math.min(limit - objects.length, 1000),
        }),
      );
      objects.push(...(page.Contents ?? []));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token && objects.length < limit);
    return objects;
  }
}

/** Whether an S3 error means "no such key / upload" (any 404). */
export function isMissing(error: unknown): boolean {
  return (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404;
}

/** S3 error codes (the SDK's error names) of a write refused for its size or a quota. */
const FULL_NAMES = new Set(['EntityTooLarge', 'QuotaExceeded', 'InsufficientStorage']);
/** S3 error codes (and the SDK's own) of a server that is overloaded, throttling, or did not answer in time. */
const UNAVAILABLE_NAMES = new Set(['SlowDown', 'ServiceUnavailable', 'RequestTimeout', 'TimeoutError', 'Throttling', 'ThrottlingException']);

/**
 * `error`, from the S3 client, as a storage fault when it is one: a size or quota refusal (413,
 * 507, `EntityTooLarge`, `QuotaExceeded`) is a {@link StorageFullError}; a refused, reset or
 * timed-out connection, a 503 or `SlowDown` a {@link StorageUnavailableError}, with the server's
 * `Retry-After` when it sent one. Anything else is returned as it is.
 */
export function s3Fault(error: unknown): unknown {
  const fault = asStorageFault(error);
  if (fault !== error) return fault;
  const { name, message, $metadata, $response } = error as {
    name?: string;
    message?: string;
    $metadata?: { httpStatusCode?: number };
    $response?: { headers?: Record<string, string> };
  };
  // The SDK rewraps a network error it does not see as an Error (one from another realm, as under
  // a test runner's sandbox) into a plain Error whose message alone still names the code.
  const wrapped = /^AWS SDK error wrapper for .*\b(E[A-Z_]+)\b/.exec(message ?? '');
  if (wrapped) {
    const unwrapped = asStorageFault(Object.assign(new Error(message), { code: wrapped[1] }));
    if (unwrapped instanceof StorageFullError || unwrapped instanceof StorageUnavailableError) return unwrapped;
  }
  const status = $metadata?.httpStatusCode;
  if ((name !== undefined && FULL_NAMES.has(name)) || status === 413 || status === 507) {
    return new StorageFullError(`storage is full (${name ?? status})`, { cause: error });
  }
  if ((name !== undefined && UNAVAILABLE_NAMES.has(name)) || status === 503) {
    const retryAfter = Number($response?.headers?.['retry-after']);
    return new StorageUnavailableError(`storage is unavailable (${name ?? status})`, {
      cause: error,
      retryAfter: Number.isInteger(retryAfter) && retryAfter > 0 ? retryAfter : undefined,
    });
  }
  return error;
}
