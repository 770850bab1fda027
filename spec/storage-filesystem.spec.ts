/** FileSystemStorage: the adapter test kit, and what is particular to a folder. */
import { describeStorageAdapter } from 'express-oci-registry/testing';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { FileSystemStorage } from '../lib';

let root: string | undefined;

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
  },
);

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
