/** FileReader: ranges, reads in flight, recycled buffers and read errors, through the page cache and past it. */
import { randomBytes } from 'node:crypto';
import { constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
// The module object itself (not an import copy), so that a spy on it reaches the code under test.
import fsPromises = require('node:fs/promises');
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { RecyclingReadable } from '../lib/storage/adapter';
import { FileSystemStorage } from '../lib/storage/fs';
import { FileReader } from '../lib/storage/fs/file-reader';

const MiB = 1 << 20;

async function readAll(reader: FileReader): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of reader) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Wraps a real handle, counting reads in flight at once and whether it was closed. */
function watchedHandle(handle: FileHandle, failAt?: number, laterReadsWaitFor?: Promise<void>) {
  const state = { inFlight: 0, mostInFlight: 0, reads: 0, closed: false };
  const watched = {
    async read(buffer: Buffer, offset: number, length: number, position: number) {
      state.reads++;
      state.inFlight++;
      state.mostInFlight = Math.max(state.mostInFlight, state.inFlight);
      try {
        await new Promise((done) => setTimeout(done, 2));
        if (position > 0) await laterReadsWaitFor;
        if (position === failAt) throw Object.assign(new Error('input/output error'), { code: 'EIO' });
        return await handle.read(buffer, offset, length, position);
      } finally {
        state.inFlight--;
      }
    },
    async close() {
      state.closed = true;
      await handle.close();
    },
  } as unknown as FileHandle;
  return { state, handle: watched };
}

describe('FileReader', () => {
  let dir: string;
  let path: string;
  const content = randomBytes(5 * MiB + 12345);

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'reader-'));
    path = join(dir, 'data');
    writeFileSync(path, content);
  });

  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it.each([
    ['the whole file', 0, 5 * MiB + 12344],
    ['a range across read boundaries', MiB - 7, 3 * MiB + 9],
    ['one byte', 4242, 4242],
    ['the last partial read', 5 * MiB, 5 * MiB + 12344],
  ])('streams %s exactly, several reads in flight, and closes the handle', async (_what, start, end) => {
    const { state, handle } = watchedHandle(await open(path, 'r'));
    const bytes = await readAll(new FileReader(handle, start, end));
    expect(bytes.equals(content.subarray(start, end + 1))).toBe(true);
    expect(state.closed).toBe(true);
    if (end - start + 1 > 2 * MiB) expect(state.mostInFlight).toBeGreaterThan(1);
    expect(state.mostInFlight).toBeLessThanOrEqual(3);
  });

  it('reads into the buffers its consumer hands back, and keeps no more than it can use', async () => {
    const bigPath = join(dir, 'big');
    const big = randomBytes(12 * MiB);
    writeFileSync(bigPath, big);
    const reader = new FileReader(await open(bigPath, 'r'), 0, big.length - 1);
    const chunks: Buffer[] = [];
    const buffers = new Set<ArrayBufferLike>();
    for await (const chunk of reader) {
      const bytes = chunk as Buffer;
      // Copied out before the buffer goes back: the next reads overwrite it.
      chunks.push(Buffer.from(bytes));
      buffers.add(bytes.buffer);
      reader.recycle(bytes);
    }
    expect(Buffer.concat(chunks).equals(big)).toBe(true);
    expect(chunks).toHaveLength(12);
    // Three reads in flight, one chunk waiting in the stream, one with the consumer.
    expect(buffers.size).toBeLessThanOrEqual(5);
  });

  it('reads only into its own read buffers: not a view into one, nor memory it did not allocate', async () => {
    const reader = new FileReader(await open(path, 'r'), 0, content.length - 1);
    const buffers = new Set<ArrayBufferLike>();
    const foreign = Buffer.alloc(MiB);
    for await (const chunk of reader) {
      buffers.add((chunk as Buffer).buffer);
      reader.recycle((chunk as Buffer).subarray(1));
      reader.recycle(foreign);
    }
    expect(buffers.size).toBe(6);
    expect(buffers.has(foreign.buffer)).toBe(false);
  });

  it('ends at the end of a file shorter than the range, without a gap', async () => {
    const bytes = await readAll(new FileReader(await open(path, 'r'), 3 * MiB, 9 * MiB));
    expect(bytes.equals(content.subarray(3 * MiB))).toBe(true);
  });

  it('fails with the error of a failed read and closes the handle', async () => {
    const { state, handle } = watchedHandle(await open(path, 'r'), 2 * MiB);
    const reader = new FileReader(handle, 0, content.length - 1);
    await expect(readAll(reader)).rejects.toMatchObject({ code: 'EIO' });
    if (!reader.closed) await new Promise((done) => reader.once('close', done));
    expect(state.closed).toBe(true);
  });

  it('closes the handle when the consumer stops early, with reads still in flight', async () => {
    let releaseLaterReads = () => {};
    const laterReads = new Promise<void>((release) => (releaseLaterReads = release));
    const { state, handle } = watchedHandle(await open(path, 'r'), undefined, laterReads);
    const reader = new FileReader(handle, 0, content.length - 1);
    for await (const chunk of reader) {
      expect((chunk as Buffer).length).toBe(MiB);
      expect(state.inFlight).toBeGreaterThanOrEqual(2);
      expect(state.inFlight).toBeLessThanOrEqual(3);
      break;
    }
    if (!reader.closed) await new Promise((done) => reader.once('close', done));
    expect(state.closed).toBe(true);
    // The reads dropped in flight now fail on the closed handle, without an unhandled rejection.
    releaseLaterReads();
    await new Promise((done) => setTimeout(done, 50));
    expect(state.inFlight).toBe(0);
  });
});

describe('FileSystemStorage with directReads', () => {
  let root: string;
  const size = 9 * MiB + 12345;
  const blobs = [randomBytes(size), randomBytes(size)];
  let storage: FileSystemStorage;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'direct-reads-'));
    storage = new FileSystemStorage({ root, directReads: true });
    for (const [index, bytes] of blobs.entries()) {
      await storage.createUpload(`upload-${index}`);
      await storage.appendUpload(`upload-${index}`, 0, Readable.from([bytes]));
      await storage.commitUpload(`upload-${index}`, bytes.length, `blob-${index}`);
    }
  });

  afterAll(() => {
    rmSync(root, { recursive: true, force: true });
  });

  /** Reads content as a response does: each chunk handed back once used (here, once copied). */
  async function readRecycling(key: string, range?: { start: number; end: number }): Promise<Buffer> {
    const stream = (await storage.readContent(key, range)) as Readable & Partial<RecyclingReadable>;
    const copies: Buffer[] = [];
    for await (const chunk of stream) {
      copies.push(Buffer.from(chunk as Buffer));
      stream.recycle?.(chunk as Buffer);
    }
    return Buffer.concat(copies);
  }

  it.each([
    ['the whole blob', undefined],
    ['a range from an unaligned start to an unaligned end', { start: 4095, end: 8 * MiB + 4095 + 10 }],
    ['a range from byte 1 to the end', { start: 1, end: size - 1 }],
    ['the last 8 MiB and a few bytes', { start: size - 8 * MiB - 3, end: size - 1 }],
    ['a range smaller than DIRECT_READ_MIN (read through the cache)', { start: 3, end: MiB }],
  ])('returns exactly %s', async (_what, range) => {
    const bytes = await readRecycling('blob-0', range);
    expect(bytes.equals(range ? blobs[0].subarray(range.start, range.end + 1) : blobs[0])).toBe(true);
  });

  it('keeps concurrent readers apart while they reuse blocks handed back', async () => {
    const reads = Array.from({ length: 6 }, (_, index) => readRecycling(`blob-${index % 2}`));
    const results = await Promise.all(reads);
    for (const [index, bytes] of results.entries()) expect(bytes.equals(blobs[index % 2])).toBe(true);
  });

  it('serves later reads correctly after a reader was dropped midway, its chunks never handed back', async () => {
    const stream = await storage.readContent('blob-1');
    for await (const chunk of stream) {
      expect((chunk as Buffer).length).toBeGreaterThan(0);
      break;
    }
    if (!stream.closed) await new Promise((done) => stream.once('close', done));
    expect((await readRecycling('blob-1')).equals(blobs[1])).toBe(true);
  });

  it('reads through the cache when the file system refuses a direct open', async () => {
    const realOpen = fsPromises.open;
    const spy = jest.spyOn(fsPromises, 'open').mockImplementation(async (file, flags, mode) => {
      if (typeof flags === 'number' && (flags & constants.O_DIRECT) !== 0) throw Object.assign(new Error('direct open refused'), { code: 'EINVAL' });
      return realOpen(file, flags, mode);
    });
    try {
      const refusing = new FileSystemStorage({ root, directReads: true });
      const stream = await refusing.readContent('blob-0');
      const chunks: Buffer[] = [];
      for await (const chunk of stream) chunks.push(chunk as Buffer);
      expect(Buffer.concat(chunks).equals(blobs[0])).toBe(true);
      expect(spy.mock.calls.some(([, flags]) => typeof flags === 'number' && (flags & constants.O_DIRECT) !== 0)).toBe(true);
    } finally {
      spy.mockRestore();
    }
  });
});
