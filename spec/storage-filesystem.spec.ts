/** FileSystemStorage: the adapter test kit, and what is particular to a folder. */
import { describeStorageAdapter } from 'express-oci-registry/testing';
import { execFile } from 'node:child_process';
import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { FileSystemStorage } from '../lib';
import { useTempDir } from './support/temp-dir';

const run = promisify(execFile);

let root: string | undefined;

/** A FileSystemStorage on a small tmpfs filled to the last page, with one upload created before; it takes root to mount. */
let fullMount: string | undefined;
const fullStorage = {
  async create() {
    fullMount = await mkdtemp(join(tmpdir(), 'oci-fs-full-'));
    await run('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', fullMount]);
    const storage = new FileSystemStorage({ root: join(fullMount, 'registry') });
    await storage.createUpload('full-upload');
    await storage.putDocument('warm/up', Buffer.from('creates the folders'));
    const filler = await open(join(fullMount, 'filler'), 'w');
    try {
      for (;;) await filler.write(Buffer.alloc(64 * 1024));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
    } finally {
      await filler.close();
    }
    return storage;
  },
  async cleanup() {
    if (!fullMount) return;
    await run('umount', [fullMount]);
    await rm(fullMount, { recursive: true, force: true });
    fullMount = undefined;
  },
};

describeStorageAdapter(
  'FileSystemStorage',
  async () => {
    root = await mkdtemp(join(tmpdir(), 'oci-fs-'));
    return new FileSystemStorage({ root });
  },
  {
    cleanup: async () => {
      if (root) await rm(root, { recursive: true, force: true });
    },
    // Mounting the tmpfs takes root (CI runs as root); elsewhere that part of the contract is left out.
    ...(process.getuid?.() === 0 ? { full: fullStorage } : {}),
  },
);
if (process.getuid?.() !== 0) {
  describe.skip('StorageAdapter contract: FileSystemStorage with no space left: SKIPPED, mounting its tmpfs takes root (CI runs as root)', () => {
    it('refuses writes with StorageFullError', () => undefined);
  });
}

describe('FileSystemStorage commits', () => {
  let folder: string;
  beforeEach(async () => {
    folder = await mkdtemp(join(tmpdir(), 'oci-fs-commit-'));
  });
  afterEach(async () => {
    await rm(folder, { recursive: true, force: true });
  });

  it('keeps the stored file when the same content is committed again, and drops the upload', async () => {
    const storage = new FileSystemStorage({ root: folder });
    const upload = async (id: string) => {
      await storage.createUpload(id);
      await storage.appendUpload(id, 0, Readable.from([Buffer.from('same bytes')]));
      await storage.commitUpload(id, 10, 'sha256/ab/same');
    };
    await upload('first');
    const stored = await stat(join(folder, 'content', 'sha256/ab/same'));
    await upload('second');
    expect((await stat(join(folder, 'content', 'sha256/ab/same'))).ino).toBe(stored.ino);
    expect(await storage.uploadSize('second')).toBeUndefined();
    await expect(stat(join(folder, 'uploads', 'second'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('FileSystemStorage memory per session', () => {
  const folder = useTempDir('oci-fs-memory-');

  it('keeps nothing in memory for a session left after small appends', async () => {
    const storage = new FileSystemStorage({ root: folder() });
    for (const id of ['left-1', 'left-2']) {
      await storage.createUpload(id);
      expect(await storage.appendUpload(id, 0, Readable.from([Buffer.from('a few bytes')]))).toBe(11);
      expect(await storage.appendUpload(id, 11, Readable.from([Buffer.from(' and more')]))).toBe(20);
    }
    expect((storage as unknown as { flushers: Map<string, unknown> }).flushers.size).toBe(0);
  });
});
