import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FileAppender, FLUSH_INTERVAL, UploadFlusher } from '../lib/storage/file-appender';
import { FileSystemStorage } from '../lib/storage/filesystem';
import { NotFoundError } from '../lib/storage/adapter';
import { useTempDir } from './support/temp-dir';

const MiB = 1 << 20;

function chunks(count: number, size: number): Buffer[] {
  const piece = randomBytes(size);
  return Array.from({ length: count }, (_, index) => Buffer.concat([Buffer.from([index & 0xff]), piece.subarray(1)]));
}

function sha256(buffers: Buffer[]): string {
  const hash = createHash('sha256');
  for (const buffer of buffers) hash.update(buffer);
  return hash.digest('hex');
}

describe('FileAppender and UploadFlusher', () => {
  const dir = useTempDir('appender-');
  const path = () => join(dir(), 'data');

  describe('FileAppender', () => {
    let handle: FileHandle;
    beforeEach(async () => {
      writeFileSync(path(), 'head');
      handle = await open(path(), 'a');
    });
    afterEach(async () => {
      await handle.close();
    });

    it('appends every byte in order and tells its flusher the file size as it opens and after each write', async () => {
      const body = chunks(20, MiB);
      const sizes: number[] = [];
      const flusher = { flushIfDue: (size: number) => sizes.push(size) } as unknown as UploadFlusher;
      const appender = new FileAppender(handle, 4, flusher);
      await pipeline(Readable.from(body), appender);

      expect(appender.bytesWritten).toBe(20 * MiB);
      expect(sha256([readFileSync(path())])).toBe(sha256([Buffer.from('head'), ...body]));
      expect(sizes[0]).toBe(4);
      expect(sizes.at(-1)).toBe(4 + 20 * MiB);
      for (let i = 1; i < sizes.length; i++) expect(sizes[i]).toBeGreaterThan(sizes[i - 1]);
    });

    it('turns a short write into an ENOSPC error and counts the bytes that did land', async () => {
      const shortHandle = { writev: (buffers: Buffer[]) => handle.writev([buffers[0].subarray(0, 1)]) } as unknown as FileHandle;
      const appender = new FileAppender(shortHandle, 4, new UploadFlusher(path()));
      await expect(pipeline(Readable.from(chunks(2, 1024)), appender)).rejects.toMatchObject({ code: 'ENOSPC' });
      await appender.settled();
      expect(appender.bytesWritten).toBe(1);
      expect(readFileSync(path()).length).toBe(5);
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
      const storage = new FileSystemStorage({ root: dir() });
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
