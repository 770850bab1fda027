import { open, type FileHandle } from 'node:fs/promises';
import { Writable } from 'node:stream';

/** Bytes a {@link FileAppender} takes ahead of the disk, so a slow write does not stall the sender at once. */
const WRITE_AHEAD = 8 << 20;

/** An {@link UploadFlusher} starts writeback once this many of the file's bytes may not be on disk. */
export const FLUSH_INTERVAL = 32 << 20;

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
 * A stream that appends to an open file, taking up to 8 MiB ahead of the disk, and has its
 * {@link UploadFlusher} move the bytes to disk as they are written.
 */
export class FileAppender extends Writable {
  /** Bytes appended so far. */
  bytesWritten = 0;
  private writing: Promise<void> = Promise.resolve();

  /** Appends to `handle`, opened for appending, whose file holds `startSize` bytes. */
  constructor(
    private readonly handle: FileHandle,
    private readonly startSize: number,
    private readonly flusher: UploadFlusher,
  ) {
    super({ highWaterMark: WRITE_AHEAD });
    // What earlier appends left goes to disk while this one's body arrives.
    flusher.flushIfDue(startSize);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.track(this.append([chunk]), callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    this.track(this.append(chunks.map(({ chunk }) => chunk)), callback);
  }

  /** Resolves once no write this stream started is still running, whether or not it failed. */
  async settled(): Promise<void> {
    await this.writing.catch(() => undefined);
  }

  private track(operation: Promise<void>, callback: (error?: Error | null) => void): void {
    this.writing = operation;
    operation.then(() => callback(), callback);
  }

  private async append(buffers: Buffer[]): Promise<void> {
    const length = buffers.reduce((sum, buffer) => sum + buffer.length, 0);
    const { bytesWritten } = await this.handle.writev(buffers);
    this.bytesWritten += bytesWritten;
    // The file system took only part of it: it is full or failing, and the next write would say so.
    if (bytesWritten !== length) throw Object.assign(new Error(`only ${bytesWritten} of ${length} bytes could be written`), { code: 'ENOSPC' });
    this.flusher.flushIfDue(this.startSize + this.bytesWritten);
  }
}
