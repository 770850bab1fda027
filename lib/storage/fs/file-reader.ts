/** Reading a range of a file as a stream, with reads in flight ahead of the consumer and buffers it hands back; through the page cache or past it. */
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { RecyclingReadable } from '../adapter';
import { ALIGNMENT, alignedBlocks, DIRECT_BLOCK } from './aligned-blocks';

/** Bytes per read. */
const READ_SIZE = 1 << 20;

/** Reads kept in flight ahead of the consumer. */
const READS_AHEAD = 3;

/** Block reads kept in flight past the page cache: the disk answers several at once faster than one at a time. */
const DIRECT_READS_AHEAD = 8;

interface PendingRead {
  length: number;
  bytes: Promise<Buffer>;
}

/**
 * Blocks lent to the consumer with a direct reader's chunks: a chunk handed back through
 * `recycle` returns its block at once; one the consumer drops returns it once collected, when
 * nothing (a socket write in flight, say) can still refer to it.
 */
const lentBlocks = new FinalizationRegistry<Buffer>((block) => alignedBlocks.give(block));

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

  /** With `direct`, `handle` was opened with `O_DIRECT`: whole aligned blocks are read, past the page cache. */
  constructor(
    private readonly handle: FileHandle,
    private readonly start: number,
    private readonly end: number,
    private readonly direct = false,
  ) {
    super({ highWaterMark: direct ? 2 * DIRECT_BLOCK : READ_SIZE });
    this.next = direct ? start - (start % ALIGNMENT) : start;
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
    if (this.direct) {
      if (lentBlocks.unregister(chunk)) alignedBlocks.give(chunk);
      return;
    }
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
    if (this.direct) return this.readBlocksAhead();
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

  /** Reads whole aligned blocks past the page cache, each chunk the part of its block in the range. */
  private readBlocksAhead(): void {
    while (this.pending.length < DIRECT_READS_AHEAD && this.next <= this.end) {
      const block = alignedBlocks.take();
      if (!block) {
        this.destroy(new Error('no aligned memory for a direct read'));
        return;
      }
      const position = this.next;
      const from = Math.max(this.start - position, 0);
      const to = Math.min(DIRECT_BLOCK, this.end + 1 - position);
      const bytes = this.handle.read(block, 0, DIRECT_BLOCK, position).then(
        ({ bytesRead }) => {
          const chunk = block.subarray(from, Math.max(from, Math.min(to, bytesRead)));
          if (this.destroyed || chunk.length === 0) alignedBlocks.give(block);
          else lentBlocks.register(chunk, block, chunk);
          return chunk;
        },
        (error: Error) => {
          alignedBlocks.give(block);
          throw error;
        },
      );
      bytes.catch(() => undefined);
      this.pending.push({ length: to - from, bytes });
      this.next = position + DIRECT_BLOCK;
    }
  }
}
