/** One append's writing into an S3 upload: the body streamed on into multipart parts, the tail, and the state checkpoints. */
import { once } from 'node:events';
import { PassThrough, type Readable } from 'node:stream';

/** S3's smallest part (other than the last) of a multipart upload. */
export const MIN_PART_SIZE = 5 * 1024 * 1024;
/** S3's largest part. */
export const MAX_PART_SIZE = 5 * 1024 * 1024 * 1024;
/** S3's most parts in one multipart upload. */
const MAX_PARTS = 10_000;
/** The part size doubles after every this many parts, so 10,000 parts hold any blob S3 takes. */
const PARTS_PER_SIZE_STEP = 1_000;

/** Where an upload's bytes are, as stored in its state document. */
export interface UploadState {
  /** Bytes stored: the parts' sizes plus the tail's, or the sealed object's size. */
  size: number;
  /** The part size of part 1 (later parts double every 1,000), fixed when the upload starts. */
  partSize: number;
  /** The multipart upload holding the parts, once the first part is written. */
  multipart?: { key: string; uploadId: string; parts: { number: number; etag: string; size: number }[] };
  /** Bytes after the last part, fewer than a part: an object, or a range of one starting at `offset`. */
  tail?: ObjectSpan;
  /** The bytes as one finished object, after a reader or a failed commit completed the multipart upload. */
  sealed?: string;
}

export type Multipart = NonNullable<UploadState['multipart']>;

/** What an {@link UploadWriter} asks of the storage. */
export interface UploadWriterIo {
  unseal(id: string, state: UploadState): Promise<UploadState>;
  createMultipart(id: string): Promise<Multipart>;
  uploadPart(multipart: Multipart, number: number, body: Readable, length: number, signal: AbortSignal): Promise<string>;
  writeTail(id: string, bytes: Buffer): Promise<ObjectSpan>;
  readSpan(span: ObjectSpan): Promise<Readable>;
  writeState(id: string, state: UploadState): Promise<void>;
  discard(key: string): Promise<void>;
}

/** A run of bytes in one object. */
export interface ObjectSpan {
  key: string;
  offset: number;
  size: number;
}

/** The size of part `number` (1-based) for an upload whose first part size is `first`. */
export function partSizeFor(first: number, number: number): number {
  return Math.min(first * 2 ** Math.floor((number - 1) / PARTS_PER_SIZE_STEP), MAX_PART_SIZE);
}

/** A part being uploaded: its bytes stream to S3 as they arrive. */
interface PartInFlight {
  number: number;
  size: number;
  body: PassThrough;
  abort: AbortController;
  etag: Promise<string>;
  /** The ETag, once S3 has answered. */
  answered?: string;
}

/** Parts whose bytes are all sent while S3 has not answered yet, per append. */
const PARTS_AWAITING_ANSWER = 4;

/**
 * One append's view of an upload. Bytes stream on to S3 as they arrive: a part's request starts
 * once half a part is at hand (at once after a full part) and is sent the rest as it comes,
 * while the next part starts before S3 has answered for the previous ones (up to
 * {@link PARTS_AWAITING_ANSWER}), so the per-request latency of an object store does not stall
 * the client. The current part's chunks
 * are also held (at most one part's bytes) because the body may end before the part is full:
 * that part's request is then aborted and the held bytes become the new tail. They are held as
 * the chunks that arrived, not copied into a part-sized buffer: copying every byte once more and
 * allocating a buffer per part cost more CPU (docs/performance.md). Parts are recorded in the
 * state in order, as S3 confirms them.
 */
export class UploadWriter {
  /** The current part's bytes so far, as they arrived. */
  private held: Buffer[] = [];
  private filled = 0;
  /** The size of the part the held bytes belong to. */
  private partSize: number;
  /** Whether bytes were added, so the state must be written. */
  private grew = false;
  private part?: PartInFlight;
  /** The request of the part after the current one, opened ahead of its bytes. */
  private opened?: PartInFlight;
  /** Whether this append has filled a part: the body is a stream, so the next part starts at once. */
  private streaming = false;
  private readonly sent: PartInFlight[] = [];
  /** State checkpoints after each part, written in order while later parts stream. */
  private checkpoint: Promise<void> = Promise.resolve();
  private checkpointError: unknown;
  private readonly replacedTail?: ObjectSpan;

  private constructor(
    private readonly io: UploadWriterIo,
    private readonly id: string,
    /** The upload's state as of the bytes S3 has confirmed (the held bytes and parts in flight are not in it). */
    readonly state: UploadState,
  ) {
    this.partSize = this.nextPartSize();
    this.replacedTail = state.tail;
  }

  /** A writer that continues `state`: a sealed upload is reopened, the tail read into the held bytes. */
  static async resume(io: UploadWriterIo, id: string, stored: UploadState): Promise<UploadWriter> {
    const state = stored.sealed ? await io.unseal(id, stored) : stored;
    const writer = new UploadWriter(io, id, state);
    if (state.tail && state.tail.size > 0) {
      for await (const chunk of await io.readSpan(state.tail)) {
        writer.held.push(chunk as Buffer);
        writer.filled += (chunk as Buffer).length;
      }
    }
    return writer;
  }

  /** Takes a chunk of the body. */
  async write(chunk: Buffer): Promise<void> {
    for (let offset = 0; offset < chunk.length; ) {
      const piece = chunk.subarray(offset, offset + this.partSize - this.filled);
      this.held.push(piece);
      this.filled += piece.length;
      offset += piece.length;
      this.grew = true;
      if (this.part) await this.send(piece);
      else if (this.streaming || this.filled * 2 >= this.partSize) await this.startPart();
      if (this.filled === this.partSize) this.endPart();
    }
  }

  /**
   * Waits for S3 to confirm the parts sent, writes the bytes of an unfinished part as the tail,
   * and records the final state. When a part fails, the state ends before it and the error is
   * thrown: the bytes after it are not kept, and the stored size says so.
   */
  async finish(): Promise<void> {
    if (!this.grew) return;
    for (const part of [this.part, this.opened]) if (part) await this.abandon(part);
    let failure: unknown;
    for (const part of [...this.sent]) {
      if (failure) await part.etag.catch(() => undefined);
      else await part.etag.catch((error: unknown) => (failure = error));
    }
    const state = this.state;
    const newBytes = this.filled - (state.tail?.size ?? 0);
    if (!failure && newBytes > 0) {
      state.tail = await this.io.writeTail(this.id, Buffer.concat(this.held, this.filled));
      state.size += newBytes;
    }
    await this.checkpoint;
    if (this.checkpointError) throw this.checkpointError;
    await this.io.writeState(this.id, state);
    if (this.replacedTail && state.tail !== this.replacedTail) await this.io.discard(this.replacedTail.key);
    if (failure) throw failure;
  }

  /** The size of the part after the current one (and `later` more). */
  private nextPartSize(later = 0): number {
    return partSizeFor(this.state.partSize, (this.state.multipart?.parts.length ?? 0) + this.sent.length + 1 + later);
  }

  /** Opens the request for the part being held, and sends the bytes held so far. */
  private async startPart(): Promise<void> {
    const state = this.state;
    state.multipart ??= await this.io.createMultipart(this.id);
    while (this.sent.length >= PARTS_AWAITING_ANSWER) await this.sent[0].etag;
    const number = state.multipart.parts.length + this.sent.length + 1;
    const opened = this.opened;
    this.opened = undefined;
    this.part = opened?.number === number ? opened : this.openPart(number, this.partSize);
    if (opened && opened !== this.part) await this.abandon(opened);
    // In a stream, the next part's request opens now, so the server's per-request setup is done
    // by the time its bytes come.
    if (this.streaming && number < MAX_PARTS) this.opened = this.openPart(number + 1, this.nextPartSize(1));
    for (const bytes of this.held) await this.send(bytes);
  }

  /** Starts the request of part `number`, which will carry `size` bytes as they are sent. */
  private openPart(number: number, size: number): PartInFlight {
    if (number > MAX_PARTS) throw new Error(`upload ${this.id} would exceed ${MAX_PARTS} parts`);
    const body = new PassThrough({ highWaterMark: 1024 * 1024 });
    // The SDK may fail the stream it reads; the part's failure is heard through its etag.
    body.on('error', () => undefined);
    const abort = new AbortController();
    const etag = this.io.uploadPart(this.state.multipart!, number, body, size, abort.signal);
    const part: PartInFlight = { number, size, body, abort, etag };
    // Failures are read where the writer waits for answers; here they must not count as unhandled.
    etag.then(
      (answer) => {
        part.answered = answer;
        this.recordAnswered();
      },
      () => undefined,
    );
    return part;
  }

  /** Cancels a part's request; the multipart upload forgets the part. */
  private async abandon(part: PartInFlight): Promise<void> {
    part.abort.abort();
    part.body.destroy();
    await part.etag.catch(() => undefined);
  }

  /** Streams bytes into the current part's request, waiting while its socket is full. */
  private async send(bytes: Buffer): Promise<void> {
    const part = this.part!;
    if (!part.body.write(bytes)) await Promise.race([once(part.body, 'drain'), part.etag]);
  }

  /** The part is complete: its request has all its bytes, and the next part starts empty. */
  private endPart(): void {
    this.part!.body.end();
    this.sent.push(this.part!);
    this.streaming = true;
    this.part = undefined;
    this.held = [];
    this.filled = 0;
    this.partSize = this.nextPartSize();
  }

  /** Records the parts S3 has confirmed, in order, each with a state checkpoint. */
  private recordAnswered(): void {
    const state = this.state;
    while (this.sent[0]?.answered !== undefined) {
      const part = this.sent.shift()!;
      // The tail's bytes were the start of the first part.
      state.size += part.size - (state.tail?.size ?? 0);
      state.tail = undefined;
      state.multipart!.parts.push({ number: part.number, etag: part.answered!, size: part.size });
      const snapshot = JSON.parse(JSON.stringify(state)) as UploadState;
      this.checkpoint = this.checkpoint
        .then(() => this.io.writeState(this.id, snapshot))
        .catch((error: unknown) => {
          this.checkpointError ??= error;
        });
    }
  }
}
