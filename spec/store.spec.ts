/** The store on its own: putBlob in one call. */
import { Readable } from 'node:stream';
import { MemoryStorage, parseDigest, RegistryStore } from '../lib';
import { readAll } from 'express-oci-registry/testing';
import { sha256 } from './support/http';

describe('RegistryStore.putBlob', () => {
  it('stores a buffer or a stream in one call under its sha256, and knows when the repository had it', async () => {
    const storage = new MemoryStorage();
    const store = new RegistryStore(storage);
    const bytes = Buffer.from('one call');
    const first = await store.putBlob('put/blob', bytes);
    expect(first).toMatchObject({ size: bytes.length, alreadyLinked: false });
    expect(first.digest.value).toBe(sha256(bytes));
    const again = await store.putBlob('put/blob', Readable.from([bytes.subarray(0, 3), bytes.subarray(3)]));
    expect(again).toMatchObject({ size: bytes.length, alreadyLinked: true });
    expect((await readAll(await store.blobs.open(first.digest))).equals(bytes)).toBe(true);
    expect(await storage.listDocuments('uploads/')).toEqual([]);
  });

  it('verifies a given digest and leaves nothing behind when it does not match', async () => {
    const storage = new MemoryStorage();
    const store = new RegistryStore(storage);
    const wrong = parseDigest(sha256(Buffer.from('other')));
    await expect(store.putBlob('put/blob', Buffer.from('bytes'), wrong)).rejects.toMatchObject({ code: 'DIGEST_INVALID' });
    expect(await store.blobs.info('put/blob', wrong)).toBeUndefined();
    expect(await storage.listDocuments('uploads/')).toEqual([]);
  });

  it('holds the blob to the store limits, refusing an oversized one before storing it', async () => {
    const storage = new MemoryStorage();
    const store = new RegistryStore(storage, { maxBlobSize: 4 });
    await expect(store.putBlob('put/blob', Buffer.from('too long'))).rejects.toMatchObject({ code: 'SIZE_INVALID', status: 413 });
    await expect(store.putBlob('put/blob', Readable.from([Buffer.from('too'), Buffer.from(' long')]))).rejects.toMatchObject({ code: 'SIZE_INVALID' });
    expect(await storage.listDocuments('uploads/')).toEqual([]);
    expect(store.limits).toMatchObject({ maxBlobSize: 4, maxUploadsPerRepository: 1000 });
  });
});
