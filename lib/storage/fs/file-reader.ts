/** Reading a range of a file as a stream, with reads in flight ahead of the consumer and buffers it hands back. */
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { RecyclingReadable } from '../adapter';

/** Bytes per read. */
const READ_SIZE = 1 << 20;

/** Reads kept in flight ahead of the consumer. */
const READS_AHEAD = 3;

interface PendingRead {
  length: number;
  bytes: Promise<Buffer>;
}

/**
 * Streams bytes `start` to `end` (inclusive) of an open file, keeping several positional reads in
 * flight on libuv's threads: with one read at a time the socket waits on each copy out of the page
 * cache (docs/performance.md has the figures). Ends early, at the first short read, when the file
 * is shorter than `end`. Closes the handle when done. Full
 * reads go into buffers the consumer hands back through {@link recycle} when it does, so a
 * download allocates a few buffers, not one per MiB.
 */
export class FileReader extends Readable implements RecyclingReadable {
  private next: number;
  private readonly pending: PendingRead[] = [];
  /** Read buffers the consumer handed back, used before any new one is allocated. */
  private readonly spare: Buffer[] = [];
  /** The memory of this reader's full-size read buffers: only that is read into again. */
  private readonly own = new WeakSet<ArrayBufferLike>();

  constructor(
    private readonly handle: FileHandle,
    start: number,
    private readonly end: number,
  ) {
    super({ highWaterMark: READ_SIZE });
    this.next = start;
  }

  override _read(): void {
    this.readAhead();
    const head = this.pending.shift();
    if (!head) {
      this.push(null);
      return;
    }
    head.bytes.then(
      (bytes) => {
        if (this.destroyed) return;
        if (bytes.length < head.length) {
          // The end of the file: what later reads found lies past a gap, if anything.
          this.next = this.end + 1;
          this.pending.length = 0;
        }
        if (bytes.length > 0) this.push(bytes);
        if (bytes.length < head.length) this.push(null);
      },
      (error: Error) => this.destroy(error),
    );
  }

  recycle(chunk: Buffer): void {
    // A chunk starts its read buffer (a short read's chunk is shorter, not offset); a view into
    // the middle, or memory that is not ours (Buffer's shared pool, say), is left alone.
    if (chunk.byteOffset === 0 && this.own.has(chunk.buffer) && this.spare.length <= READS_AHEAD) {
      this.spare.push(Buffer.from(chunk.buffer));
    }
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // The handle closes once reads still in flight have returned.
    this.handle.close().then(
      () => callback(error),
      (closeError: Error) => callback(error ?? closeError),
    );
  }

  private newReadBuffer(): Buffer {
    const buffer = Buffer.allocUnsafeSlow(READ_SIZE);
    this.own.add(buffer.buffer);
    return buffer;
  }

  private readAhead(): void {
    while (this.pending.length < READS_AHEAD && this.next <= this.end) {
      const length = Math.min(READ_SIZE, this.end - this.next + 1);
      const buffer = length === READ_SIZE ? (this.spare.pop() ?? this.newReadBuffer()) : Buffer.allocUnsafe(length);
      const bytes = this.handle.read(buffer, 0, length, this.next).then(({ bytesRead }) => buffer.subarray(0, bytesRead));
      // A read dropped after an early end or a destroy must not fail the process when it rejects.
      bytes.catch(() => undefined);
      this.pending.push({ length, bytes });
      this.next += length;
    }
  }
}
