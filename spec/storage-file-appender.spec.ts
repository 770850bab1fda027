/** FileAppender and UploadFlusher: direct and cached writes, failures, and writeback. */
import { createHash, randomBytes } from 'node:crypto';
import { constants, readFileSync, statSync, writeFileSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
// The module object itself (not an import copy), so that a spy on it reaches the code under test.
import fsPromises = require('node:fs/promises');
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DIRECT_BLOCK } from '../lib/storage/fs/aligned-blocks';
import { FileAppender, FLUSH_INTERVAL, UploadFlusher } from '../lib/storage/fs/file-appender';
import { FileSystemStorage } from '../lib/storage/fs';
import { NotFoundError } from '../lib/storage/adapter';
import { useTempDir } from './support/temp-dir';

const MiB = 1 << 20;

function chunks(count: number, size: number): Buffer[] {
  const piece = randomBytes(size);
  return Array.from({ length: count }, (_, index) => Buffer.concat([Buffer.from([index & 0xff]), piece.subarray(1)]));
}

/** Polls `condition`; the limit is far above what a loaded machine needs, so only a real hang fails. */
async function waitUntil(condition: () => boolean): Promise<void> {
  for (let tries = 0; !condition(); tries++) {
    if (tries > 2000) throw new Error('condition not met after 2000 polls 10 ms apart');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function sha256(buffers: Buffer[]): string {
  const hash = createHash('sha256');
  for (const buffer of buffers) hash.update(buffer);
  return hash.digest('hex');
}

describe('FileAppender and UploadFlusher', () => {
  const dir = useTempDir('appender-');
  const path = () => join(dir(), 'data');

  describe('FileAppender through the page cache', () => {
    let handle: FileHandle;
    beforeEach(async () => {
      writeFileSync(path(), 'head');
      handle = await open(path(), 'a');
    });

    it('appends every byte in order and tells its flusher the file size as it opens and after each write', async () => {
      const body = chunks(20, MiB);
      const sizes: number[] = [];
      const flusher = { flushIfDue: (size: number) => sizes.push(size) } as unknown as UploadFlusher;
      const appender = new FileAppender(handle, 4, flusher);
      await pipeline(Readable.from(body), appender);
      await appender.close();

      expect(appender.bytesWritten).toBe(20 * MiB);
      expect(sha256([readFileSync(path())])).toBe(sha256([Buffer.from('head'), ...body]));
      expect(sizes[0]).toBe(4);
      expect(sizes.at(-1)).toBe(4 + 20 * MiB);
      for (let i = 1; i < sizes.length; i++) expect(sizes[i]).toBeGreaterThan(sizes[i - 1]);
    });

    it('turns a short write into an ENOSPC error and counts the bytes that did land', async () => {
      const shortHandle = { writev: (buffers: Buffer[]) => handle.writev([buffers[0].subarray(0, 1)]), close: () => handle.close() } as unknown as FileHandle;
      const appender = new FileAppender(shortHandle, 4, new UploadFlusher(path()));
      await expect(pipeline(Readable.from(chunks(2, 1024)), appender)).rejects.toMatchObject({ code: 'ENOSPC' });
      await appender.close();
      expect(appender.bytesWritten).toBe(1);
      expect(readFileSync(path()).length).toBe(5);
    });
  });

  describe('FileAppender with direct writes', () => {
    const directSupported = async () => {
      const probe = await open(join(dir(), 'probe'), constants.O_WRONLY | constants.O_CREAT | constants.O_DIRECT).catch(() => undefined);
      await probe?.close();
      return probe !== undefined;
    };

    /** Appends `body` to a file holding `start`, counting the bytes that went through the page cache. */
    async function append(start: Buffer, body: Readable, options: { direct?: boolean } = {}) {
      writeFileSync(path(), start);
      const handle = await open(path(), 'a');
      const cached: number[] = [];
      const counting = {
        writev: (buffers: Buffer[]) => {
          cached.push(buffers.reduce((sum, buffer) => sum + buffer.length, 0));
          return handle.writev(buffers);
        },
        close: () => handle.close(),
      } as unknown as FileHandle;
      const appender = new FileAppender(counting, start.length, new UploadFlusher(path()), options.direct === false ? undefined : path());
      const result = await pipeline(body, appender).then(
        () => undefined,
        (error: Error) => error,
      );
      await appender.close();
      return { appender, cached, error: result };
    }

    it('writes a first block\'s worth through the cache, whole blocks past it from the next page boundary, and the rest through it', async () => {
      const body = chunks(7, MiB);
      const { appender, cached, error } = await append(Buffer.from('head'), Readable.from(body));
      expect(error).toBeUndefined();
      expect(sha256([readFileSync(path())])).toBe(sha256([Buffer.from('head'), ...body]));
      expect(appender.bytesWritten).toBe(7 * MiB);
      const cachedTotal = cached.reduce((sum, length) => sum + length, 0);
      if (await directSupported()) {
        expect(appender.directRefused).toBe(false);
        // 2 MiB + 4092 bytes up to the boundary (the first two chunks whole); then two blocks of 2 MiB; the last 1 MiB - 4092 bytes.
        expect(cached.slice(0, 3)).toEqual([MiB, MiB, 4092]);
        expect(cachedTotal).toBe(7 * MiB - 2 * DIRECT_BLOCK);
      } else {
        expect(appender.directRefused).toBe(true);
        expect(cachedTotal).toBe(7 * MiB);
      }
    });

    it('takes no block for a body smaller than one, and writes it through the cache', async () => {
      const body = chunks(1, MiB);
      const { cached, error } = await append(Buffer.alloc(0), Readable.from(body));
      expect(error).toBeUndefined();
      expect(cached).toEqual([MiB]);
      expect(sha256([readFileSync(path())])).toBe(sha256(body));
    });

    it('writes everything through the cache when direct writes are not asked for', async () => {
      const { cached } = await append(Buffer.alloc(0), Readable.from(chunks(5, MiB)), { direct: false });
      expect(cached.reduce((sum, length) => sum + length, 0)).toBe(5 * MiB);
    });

    it('writes what a block gathered once the body pauses, then goes on from the next page boundary', async () => {
      const body = chunks(6, MiB);
      const source = new PassThrough();
      const appending = append(Buffer.alloc(0), source);
      const paused = 2 * MiB + 150_000;
      for (const chunk of [body[0], body[1], body[2].subarray(0, 150_000)]) source.write(chunk);
      await waitUntil(() => statSync(path()).size === paused);
      for (const chunk of [body[2].subarray(150_000), ...body.slice(3)]) source.write(chunk);
      source.end();
      const { cached, error } = await appending;
      expect(error).toBeUndefined();
      expect(sha256([readFileSync(path())])).toBe(sha256(body));
      if (await directSupported()) {
        // The first 2 MiB through the cache; 150,000 gathered bytes written at the pause; up to the next page boundary.
        expect(cached.slice(0, 4)).toEqual([MiB, MiB, 150_000, 4096 - (150_000 % 4096)]);
        // From 2 MiB + 151,552 on, one whole block; the last 1,945,600 bytes fill no block.
        expect(cached.reduce((sum, length) => sum + length, 0)).toBe(6 * MiB - DIRECT_BLOCK);
      }
    });

    it('keeps the bytes it gathered when the body fails midway', async () => {
      const body = chunks(3, MiB);
      const failing = Readable.from(
        (async function* () {
          yield* body;
          throw new Error('client went away');
        })(),
      );
      const { error } = await append(Buffer.alloc(0), failing);
      expect(error?.message).toBe('client went away');
      expect(sha256([readFileSync(path())])).toBe(sha256(body));
    });

    /** Makes opening a direct descriptor, or every write through one, fail with `code` while `run` runs. */
    async function withDirectWritesFailing(code: string, run: () => Promise<void>, failing: 'open' | 'write' = 'write'): Promise<void> {
      const realOpen = fsPromises.open;
      const failure = () => Object.assign(new Error(`direct ${failing} failed: ${code}`), { code });
      const spy = jest.spyOn(fsPromises, 'open').mockImplementation(async (file, flags, mode) => {
        const direct = typeof flags === 'number' && (flags & constants.O_DIRECT) !== 0;
        if (direct && failing === 'open') throw failure();
        const opened = await realOpen(file, flags, mode);
        if (direct) opened.write = (() => Promise.reject(failure())) as typeof opened.write;
        return opened;
      });
      try {
        await run();
      } finally {
        spy.mockRestore();
      }
    }

    it('falls back to the cache, and says so, when the file system refuses a direct write', async () => {
      await withDirectWritesFailing('EINVAL', async () => {
        const body = chunks(5, MiB);
        const { appender, cached, error } = await append(Buffer.alloc(0), Readable.from(body));
        expect(error).toBeUndefined();
        expect(appender.directRefused).toBe(true);
        expect(cached.reduce((sum, length) => sum + length, 0)).toBe(5 * MiB);
        expect(sha256([readFileSync(path())])).toBe(sha256(body));
      });
    });

    it.each(['write', 'open'] as const)('does not append after a direct %s failed, so the file stays a prefix of the body', async (failing) => {
      const code = failing === 'write' ? 'EIO' : 'EMFILE';
      await withDirectWritesFailing(
        code,
        async () => {
          // 2 MiB through the cache, one block whose write fails, and 1 MiB gathered after it that must not be appended.
          const body = chunks(5, MiB);
          const { error } = await append(Buffer.alloc(0), Readable.from(body));
          expect(error).toMatchObject({ code });
          expect(sha256([readFileSync(path())])).toBe(sha256(body.slice(0, 2)));
        },
        failing,
      );
    });
  });

  describe('UploadFlusher', () => {
    it('flushes once FLUSH_INTERVAL bytes may be unflushed, one flush at a time', async () => {
      writeFileSync(path(), 'x');
      const flusher = new UploadFlusher(path());
      flusher.flushIfDue(FLUSH_INTERVAL - 1);
      expect(flusher.flushedUpTo).toBe(0);

      flusher.flushIfDue(FLUSH_INTERVAL);
      expect(flusher.flushedUpTo).toBe(FLUSH_INTERVAL);
      // Still running: the next one waits, and a later call covers what came meanwhile.
      flusher.flushIfDue(3 * FLUSH_INTERVAL);
      expect(flusher.flushedUpTo).toBe(FLUSH_INTERVAL);
      await flusher.idle();
      flusher.flushIfDue(3 * FLUSH_INTERVAL);
      expect(flusher.flushedUpTo).toBe(3 * FLUSH_INTERVAL);
      await flusher.idle();
      expect(flusher.failure).toBeUndefined();
    });

    it('keeps the error of a flush that failed', async () => {
      const flusher = new UploadFlusher(join(dir(), 'missing'));
      flusher.flushIfDue(FLUSH_INTERVAL);
      await flusher.idle();
      expect(flusher.failure).toMatchObject({ code: 'ENOENT' });
    });
  });

  describe('FileSystemStorage after a failed background flush', () => {
    async function uploadWithFailedFlush() {
      // Through the cache, so that the bytes wait for a background flush.
      const storage = new FileSystemStorage({ root: dir(), directWrites: false });
      await storage.createUpload('u1');
      const body = chunks(FLUSH_INTERVAL / MiB, MiB);
      expect(await storage.appendUpload('u1', 0, Readable.from(body))).toBe(FLUSH_INTERVAL);
      const flusher = (storage as unknown as { flushers: Map<string, UploadFlusher> }).flushers.get('u1')!;
      await flusher.idle();
      expect(flusher.flushedUpTo).toBe(FLUSH_INTERVAL);
      flusher.failure = Object.assign(new Error('input/output error'), { code: 'EIO' });
      return storage;
    }

    it('refuses the next append and drops the upload, whose bytes may not be on disk', async () => {
      const storage = await uploadWithFailedFlush();
      await expect(storage.appendUpload('u1', FLUSH_INTERVAL, Readable.from([Buffer.from('more')]))).rejects.toMatchObject({ code: 'EIO' });
      expect(await storage.uploadSize('u1')).toBeUndefined();
    });

    it('refuses to commit and drops the upload', async () => {
      const storage = await uploadWithFailedFlush();
      await expect(storage.commitUpload('u1', FLUSH_INTERVAL, 'sha256/ab/abc')).rejects.toMatchObject({ code: 'EIO' });
      expect(await storage.uploadSize('u1')).toBeUndefined();
      await expect(storage.readContent('sha256/ab/abc')).rejects.toBeInstanceOf(NotFoundError);
    });
  });
});
