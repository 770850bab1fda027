/** One upstream blob download shared by every request for that blob: stored, verified, and passed on to readers as it arrives. */
import type { ServerResponse } from 'node:http';
import { PassThrough, type Readable } from 'node:stream';
import { sendStream } from '../respond';
import type { Digest } from '../digest';
import type { Log } from '../log';
import type { ByteRange } from '../range';
import type { RegistryStore } from '../store';

/** Bytes from the start of a blob kept in memory, so that readers arriving shortly after the first bytes still read along. */
const JOIN_WINDOW = 2 * 1024 * 1024;
/**
 * Bytes a reader may leave unsent in its response before it stops reading along and is served
 * from storage once the blob is stored; above the join window, so that a joiner's catching up
 * alone never counts as falling behind.
 */
const SLOW_READER_LIMIT = 2 * JOIN_WINDOW;

/** One response being served from a {@link SharedBlobFetch}. */
interface Reader {
  res: ServerResponse;
  /** Offset of the next byte it needs. */
  next: number;
  /** Offset of its last byte. */
  end: number;
  /** Whether it is written to as bytes arrive; if not, it is served from storage once the blob is stored. */
  live: boolean;
  settle: (error?: Error) => void;
}

/**
 * Streams an upstream's blob body into an upload session and to every reader at once. Storage
 * sets the pace; a reader that falls behind by more than a bound stops reading along and gets
 * the rest from storage. The last chunk is withheld from readers until the stored bytes have
 * been verified against the digest and committed, so a whole-blob response never completes with
 * wrong bytes: on a mismatch, or any failure, nothing is stored and every reader's connection is
 * aborted. A reader that disconnects leaves the download running for the others and for storage.
 */
export class SharedBlobFetch {
  /** Settles once the blob is stored, or rejects with why not. */
  readonly done: Promise<void>;
  /** Bytes taken from the upstream so far. */
  received = 0;
  private passed = 0;
  private held: Buffer | undefined;
  private window: Buffer[] | undefined = [];
  private readonly readers = new Set<Reader>();
  private state: 'running' | 'stored' | 'failed' = 'running';
  private failure: Error | undefined;

  constructor(
    private readonly store: RegistryStore,
    private readonly repository: string,
    private readonly digest: Digest,
    /** The blob's size, as the upstream announced it. */
    readonly size: number,
    body: Readable,
    private readonly log: Log,
  ) {
    this.done = this.run(body);
    this.done.catch(() => undefined);
  }

  /**
   * Writes the blob (or `range` of it) into `res`, whose headers are set. Resolves once it is
   * sent or the client left; rejects when the download fails (the response is then aborted).
   */
  send(res: ServerResponse, range?: ByteRange): Promise<void> {
    return new Promise((resolve, reject) => {
      const reader: Reader = {
        res,
        next: range?.start ?? 0,
        end: range?.end ?? this.size - 1,
        live: false,
        settle: (error) => {
          this.readers.delete(reader);
          if (error) reject(error);
          else resolve();
        },
      };
      if (this.state === 'failed') return reader.settle(this.failure);
      this.readers.add(reader);
      res.once('close', () => {
        if (this.readers.has(reader)) reader.settle();
      });
      if (this.state === 'stored') return this.sendFromStorage(reader);
      if (reader.next >= this.passed) {
        reader.live = true;
      } else if (this.window) {
        reader.live = true;
        let offset = 0;
        for (const chunk of this.window) {
          if (!reader.live || !this.readers.has(reader)) break;
          this.feed(reader, chunk, offset);
          offset += chunk.length;
        }
      }
      this.log('a reader joined the download of %s at %d of %d bytes (%s)', this.digest.value, this.passed, this.size, reader.live ? 'reading along' : 'waiting for storage');
    });
  }

  private async run(body: Readable): Promise<void> {
    const sink = new PassThrough();
    let upstreamFailure: Error | undefined;
    body.on('data', (chunk: Buffer) => {
      this.take(chunk);
      if (!sink.write(chunk)) body.pause();
    });
    sink.on('drain', () => body.resume());
    body.once('end', () => sink.end());
    body.once('error', (error) => {
      upstreamFailure = error;
      sink.destroy(error);
    });
    try {
      // Verified against the digest before it becomes visible; a failure leaves nothing behind.
      await this.store.putBlob(this.repository, sink, this.digest);
    } catch (error) {
      body.destroy();
      sink.destroy();
      const failure = upstreamFailure ?? (error as Error);
      this.fail(failure);
      throw failure;
    }
    this.state = 'stored';
    const last = this.held;
    this.held = undefined;
    if (last) this.pass(last);
    for (const reader of this.readers) this.sendFromStorage(reader);
  }

  /** Takes a chunk from the upstream, passing on the one before: the latest is held back until the blob is verified. */
  private take(chunk: Buffer): void {
    this.received += chunk.length;
    const previous = this.held;
    this.held = chunk;
    if (previous) this.pass(previous);
  }

  private pass(chunk: Buffer): void {
    const offset = this.passed;
    this.passed += chunk.length;
    if (this.window) {
      if (this.passed <= JOIN_WINDOW) this.window.push(chunk);
      else this.window = undefined;
    }
    for (const reader of this.readers) if (reader.live) this.feed(reader, chunk, offset);
  }

  /** Writes the part of `chunk` (at `offset` in the blob) that `reader` needs next. */
  private feed(reader: Reader, chunk: Buffer, offset: number): void {
    const from = reader.next - offset;
    const to = Math.min(chunk.length, reader.end - offset + 1);
    if (from < 0 || from >= to) return;
    reader.res.write(chunk.subarray(from, to));
    reader.next = offset + to;
    if (reader.next > reader.end) {
      reader.res.end();
      reader.settle();
    } else if (reader.res.writableLength > SLOW_READER_LIMIT) {
      this.log('a reader of %s fell behind at %d bytes; it continues from storage once the blob is stored', this.digest.value, reader.next);
      reader.live = false;
    }
  }

  private sendFromStorage(reader: Reader): void {
    reader.live = false;
    this.store.blobs.open(this.digest, { start: reader.next, end: reader.end }).then(
      (stream) => sendStream(stream, reader.res).then(() => reader.settle(), reader.settle),
      reader.settle,
    );
  }

  private fail(error: Error): void {
    this.state = 'failed';
    this.failure = error;
    this.held = undefined;
    this.window = undefined;
    for (const reader of this.readers) {
      // A response that has begun can only be cut short, so that the client sees it incomplete.
      if (reader.res.headersSent) reader.res.destroy();
      reader.settle(error);
    }
  }
}
