/** Appending an upload body to a file: aligned blocks written past the page cache, and background writeback. */
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { ALIGNMENT, alignedBlocks, BLOCKS_PER_APPEND, DIRECT_BLOCK } from './aligned-blocks';

/** Bytes a {@link FileAppender} takes ahead of the disk, so a slow write does not stall the sender at once. */
const WRITE_AHEAD = 8 << 20;

/** An {@link UploadFlusher} starts writeback once this many of the file's bytes may not be on disk. */
export const FLUSH_INTERVAL = 32 << 20;

/** A block that has gathered bytes but received none for this long is written as it is. */
const GATHER_IDLE_MS = 50;


/**
 * Moves an upload file's bytes to disk while the upload is still arriving: once
 * {@link FLUSH_INTERVAL} or more bytes may not be on disk, it starts an `fdatasync` in the
 * background (one at a time, on a descriptor of its own, so it may outlive the request that
 * started it). Left alone, the kernel keeps an upload's pages dirty until a share of RAM is dirty,
 * so the fsync at commit would write the whole upload while the client waits; flushing during
 * the transfer, and during the next chunk's transfer, does that disk work while the client sends.
 *
 * A failed flush is kept in {@link failure}: bytes already acknowledged may not be on disk, and a
 * later fsync through another descriptor need not report the error again.
 */
export class UploadFlusher {
  /** File size when the latest flush started: once it has settled, at least this much is on disk. */
  flushedUpTo = 0;
  /** The error of a flush that failed, if one has. */
  failure?: Error;
  private running?: Promise<void>;

  /** Flushes the file at `path`. */
  constructor(private readonly path: string) {}

  /** Starts a flush when the file, now `size` bytes, has enough unflushed and none is running. */
  flushIfDue(size: number): void {
    if (this.running || size - this.flushedUpTo < FLUSH_INTERVAL) return;
    this.flushedUpTo = size;
    this.running = this.flush().then(
      () => {
        this.running = undefined;
      },
      (error: Error) => {
        this.running = undefined;
        this.failure = error;
      },
    );
  }

  /** Resolves once no flush is running. */
  async idle(): Promise<void> {
    await this.running;
  }

  private async flush(): Promise<void> {
    const handle = await open(this.path, 'r');
    try {
      await handle.datasync();
    } finally {
      await handle.close();
    }
  }
}

/**
 * A stream that appends to an upload file, and has its {@link UploadFlusher} move the bytes to
 * disk as they are written.
 *
 * With direct writes (`O_DIRECT`) on, bytes from the first page boundary on are copied into
 * page-aligned blocks of {@link DIRECT_BLOCK} bytes, and each full block is written past the page
 * cache while the next one fills. The upload has to reach the disk before it is committed anyway;
 * written through the cache, every byte costs a fresh page of memory first, which on a virtual
 * machine whose host takes free memory back is the slowest part of an upload. What does not fill a
 * block (a small upload, the end of a large one) and the bytes before the boundary go through the
 * cache. Where the file system refuses direct writes, the appender says so in
 * {@link directRefused} and writes through the cache.
 *
 * Without direct writes, it takes up to 8 MiB ahead of the disk, so a slow write does not stall
 * the sender at once.
 */
export class FileAppender extends Writable {
  /** Bytes appended so far. */
  bytesWritten = 0;
  /** Whether the file system refused a direct write, so later appends need not try. */
  directRefused = false;
  private writing: Promise<void> = Promise.resolve();
  /** File offset from which bytes gather in blocks; Infinity while everything goes through the cache. */
  private blocksFrom: number;
  private block?: Buffer;
  private filled = 0;
  /** Block writes not yet waited for, oldest first; each starts when the one before it has ended. */
  private readonly blockWrites: Array<Promise<void>> = [];
  private lastBlockWrite: Promise<void> = Promise.resolve();
  private directHandle?: FileHandle;
  private idleTimer?: NodeJS.Timeout;
  private idleWrite: Promise<void> = Promise.resolve();
  private failed = false;

  /** Opens the file at `path`, now `startSize` bytes, to append to it; `direct` asks for direct writes. */
  static async open(path: string, startSize: number, flusher: UploadFlusher, direct: boolean): Promise<FileAppender> {
    return new FileAppender(await open(path, 'a'), startSize, flusher, direct ? path : undefined);
  }

  /**
   * Appends to `handle`, opened for appending, whose file holds `startSize` bytes; with
   * `directPath` (the same file's path), full blocks go to a direct descriptor of that file.
   */
  constructor(
    private readonly handle: FileHandle,
    private readonly startSize: number,
    private readonly flusher: UploadFlusher,
    private readonly directPath?: string,
  ) {
    const direct = directPath !== undefined && constants.O_DIRECT !== undefined;
    // With blocks, the blocks are the write-ahead; chunks queue only while the oldest is written.
    super({ highWaterMark: direct ? DIRECT_BLOCK / 2 : WRITE_AHEAD });
    // An append's first block's worth goes through the cache: a small one takes no block at all,
    // and what is soon read back (a config, a small layer) is in the page cache.
    this.blocksFrom = direct ? Math.ceil((startSize + DIRECT_BLOCK) / ALIGNMENT) * ALIGNMENT : Infinity;
    // What earlier appends left goes to disk while this one's body arrives.
    flusher.flushIfDue(startSize);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.track(this.accept([chunk]), callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    this.track(this.accept(chunks.map(({ chunk }) => chunk)), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.track(this.finish(), callback);
  }

  /**
   * Waits until no write this stream started is still running, writes what a block gathered
   * unless a write failed (so the bytes received before a client went away stay in the upload),
   * and closes the file.
   */
  async close(): Promise<void> {
    await this.writing.catch(() => undefined);
    // Only now: a write still running when close() began may have armed the timer at its end.
    clearTimeout(this.idleTimer);
    await this.idleWrite.catch(() => undefined);
    await this.lastBlockWrite.catch(() => undefined);
    try {
      if (!this.failed) await this.writeGathered();
    } catch {
      // The upload keeps the bytes that did land; its size tells the client where to resume.
    } finally {
      if (this.block) alignedBlocks.give(this.block);
      this.block = undefined;
      await this.directHandle?.close();
      await this.handle.close();
    }
  }

  private track(operation: Promise<void>, callback: (error?: Error | null) => void): void {
    this.writing = operation;
    operation.then(() => callback(), callback);
  }

  private async accept(buffers: Buffer[]): Promise<void> {
    clearTimeout(this.idleTimer);
    await this.idleWrite;
    const [cached, gathered] = splitAt(buffers, this.blocksFrom - this.startSize - this.bytesWritten);
    if (cached.length) await this.writeThroughCache(cached);
    for (const buffer of gathered) await this.gather(buffer);
    if (this.filled) {
      // A body that pauses should not leave its bytes in memory: a client that resumes later, or
      // asks how much is stored, sees them on disk.
      this.idleTimer = setTimeout(() => {
        this.idleWrite = this.writeGathered();
        this.idleWrite.catch(() => undefined);
      }, GATHER_IDLE_MS).unref();
    }
  }

  private async gather(buffer: Buffer): Promise<void> {
    for (let offset = 0; offset < buffer.length; ) {
      this.block ??= alignedBlocks.take();
      if (!this.block) {
        // No aligned memory left for another block: the rest goes through the cache, in order.
        await this.lastBlockWrite;
        this.blocksFrom = Infinity;
        return this.writeThroughCache([buffer.subarray(offset)]);
      }
      const copied = buffer.copy(this.block, this.filled, offset);
      this.filled += copied;
      offset += copied;
      if (this.filled === DIRECT_BLOCK) await this.writeBlock(this.block);
    }
  }

  /** Queues the full `block` for writing, and waits while this append holds its most blocks. */
  private async writeBlock(block: Buffer): Promise<void> {
    const write = this.lastBlockWrite.then(() => this.writeDirect(block)).finally(() => alignedBlocks.give(block));
    // Waited for below or by close(); noted here, so that a failure is known even before then.
    write.catch(() => {
      this.failed = true;
    });
    this.lastBlockWrite = write;
    this.blockWrites.push(write);
    this.block = undefined;
    this.filled = 0;
    if (this.blockWrites.length >= BLOCKS_PER_APPEND) await this.blockWrites.shift();
  }

  private async writeDirect(block: Buffer): Promise<void> {
    if (!this.directHandle && !this.directRefused) {
      this.directHandle = await open(this.directPath!, constants.O_WRONLY | constants.O_DIRECT).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'EINVAL') throw error;
        this.directRefused = true;
        return undefined;
      });
    }
    if (this.directHandle && !this.directRefused) {
      let bytesWritten: number;
      try {
        ({ bytesWritten } = await this.directHandle.write(block, 0, block.length, this.startSize + this.bytesWritten));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EINVAL') throw error;
        this.directRefused = true;
      }
      if (!this.directRefused) return this.count(bytesWritten!, block.length);
    }
    // Every earlier write has ended, so an append lands where this block belongs.
    await this.writeThroughCache([block]);
  }

  private async finish(): Promise<void> {
    clearTimeout(this.idleTimer);
    await this.idleWrite;
    await this.writeGathered();
  }

  /** Waits for the block writes, then writes the bytes gathered so far and starts the next block on a page boundary again. */
  private async writeGathered(): Promise<void> {
    while (this.blockWrites.length) await this.blockWrites.shift();
    if (!this.filled) return;
    await this.writeThroughCache([this.block!.subarray(0, this.filled)]);
    this.filled = 0;
    this.blocksFrom = Math.ceil((this.startSize + this.bytesWritten) / ALIGNMENT) * ALIGNMENT;
  }

  private async writeThroughCache(buffers: Buffer[]): Promise<void> {
    const length = buffers.reduce((sum, buffer) => sum + buffer.length, 0);
    let bytesWritten: number;
    try {
      ({ bytesWritten } = await this.handle.writev(buffers));
    } catch (error) {
      throw this.fail(error);
    }
    this.count(bytesWritten, length);
    this.flusher.flushIfDue(this.startSize + this.bytesWritten);
  }

  private count(bytesWritten: number, length: number): void {
    this.bytesWritten += bytesWritten;
    // The file system took only part of it: it is full or failing, and the next write would say so.
    if (bytesWritten !== length) throw this.fail(Object.assign(new Error(`only ${bytesWritten} of ${length} bytes could be written`), { code: 'ENOSPC' }));
  }

  /** Notes that a write failed, so nothing more is appended after the bytes that did land. */
  private fail(error: unknown): unknown {
    this.failed = true;
    return error;
  }
}

/** Splits `buffers` into the first `length` bytes (none when `length` is 0 or less) and the rest. */
function splitAt(buffers: Buffer[], length: number): [Buffer[], Buffer[]] {
  const before: Buffer[] = [];
  let left = length;
  for (let index = 0; index < buffers.length; index++) {
    const buffer = buffers[index];
    if (left <= 0) return [before, buffers.slice(index)];
    if (buffer.length > left) return [[...before, buffer.subarray(0, left)], [buffer.subarray(left), ...buffers.slice(index + 1)]];
    before.push(buffer);
    left -= buffer.length;
  }
  return [before, []];
}
