import type { Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

/**
 * A pass-through stream that counts the bytes going by, feeds them to a running hash, and fails
 * once more than `limit` bytes arrive. Upload bodies flow through one on their way to storage,
 * so digests are computed while bytes stream in, never in a second pass.
 */
export class Meter extends Transform {
  /** Bytes seen so far. */
  bytes = 0;

  constructor(
    private readonly hash: Hash | undefined,
    private readonly limit = Number.POSITIVE_INFINITY,
    private readonly overLimit: () => Error = () => new Error('body too large'),
    /** Called with the running byte count after each chunk passes. */
    private readonly onBytes?: (bytes: number) => void,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limit) {
      callback(this.overLimit());
      return;
    }
    this.hash?.update(chunk);
    this.onBytes?.(this.bytes);
    callback(null, chunk);
  }
}
