/** The pass-through every request body flows through: byte count, running hash, size limit and idle timeout. */
import type { Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { RegistryError, type ErrorCode } from './errors';

/** How long a {@link Meter} waits for the next byte, and the error it fails with then. */
export interface IdleLimit {
  timeout: number;
  error: () => Error;
}

/** Optional behaviour of a {@link Meter}. */
export interface MeterOptions {
  /** Called with the running byte count after each chunk passes. */
  onBytes?: (bytes: number) => void;
  /**
   * Fail when no byte arrives for `idle.timeout` ms while nothing waits in the meter's buffers:
   * the sender has stalled (when storage is slow to take bytes, the wait is ours and does not count).
   */
  idle?: IdleLimit;
}

/**
 * A pass-through stream that counts the bytes going by, feeds them to a running hash, and fails
 * once more than `limit` bytes arrive. Upload bodies flow through one on their way to storage,
 * so digests are computed while bytes stream in, never in a second pass.
 */
export class Meter extends Transform {
  /** Bytes seen so far. */
  bytes = 0;
  private readonly onBytes?: (bytes: number) => void;
  private readonly idleTimer?: NodeJS.Timeout;

  constructor(
    private readonly hash: Hash | undefined,
    private readonly limit = Number.POSITIVE_INFINITY,
    private readonly overLimit: () => Error = () => new Error('body too large'),
    options: MeterOptions = {},
  ) {
    super();
    this.onBytes = options.onBytes;
    const { idle } = options;
    if (idle) {
      this.idleTimer = setTimeout(() => {
        if (this.writableLength > 0 || this.readableLength > 0) this.idleTimer!.refresh();
        else this.destroy(idle.error());
      }, idle.timeout);
      // A stalled upload must not keep the process alive on its own.
      this.idleTimer.unref();
    }
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.idleTimer?.refresh();
    this.bytes += chunk.length;
    if (this.bytes > this.limit) {
      callback(this.overLimit());
      return;
    }
    this.hash?.update(chunk);
    this.onBytes?.(this.bytes);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    clearTimeout(this.idleTimer);
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    clearTimeout(this.idleTimer);
    callback(error);
  }
}

/** The idle limit of request bodies: a 408 with `code` once no byte has arrived for `timeout` ms. */
export function bodyIdleLimit(timeout: number, code: ErrorCode): IdleLimit {
  return {
    timeout,
    error: () => new RegistryError(code, `no bytes arrived for ${timeout} ms; the request was ended`, { status: 408 }),
  };
}
