/** The adapter of examples/key-value-storage.ts (the one docs/storage-adapters.md shows) against the adapter test kit, and behind the registry. */
import { describeStorageAdapter } from 'express-oci-registry/testing';
import supertest from 'supertest';
import { KeyValueDocumentStorage, MapKeyValueStore } from '../examples/key-value-storage';
import { makeApp, sha256 } from './support/http';
import { useTempDir } from './support/temp-dir';

const root = useTempDir('oci-kv-');

describeStorageAdapter('KeyValueDocumentStorage', () => new KeyValueDocumentStorage(root(), new MapKeyValueStore()));

describe('KeyValueDocumentStorage behind the registry', () => {
  it('keeps the documents in the key-value store and the bytes in the folder', async () => {
    const store = new MapKeyValueStore();
    const agent = supertest(makeApp(new KeyValueDocumentStorage(root(), store)));
    const data = Buffer.from('a blob kept in a folder');
    await agent.post(`/v2/kv/demo/blobs/uploads/?digest=${sha256(data)}`).set('Content-Type', 'application/octet-stream').send(data).expect(201);
    expect((await agent.get(`/v2/kv/demo/blobs/${sha256(data)}`).expect(200)).body).toEqual(data);
    expect((await store.keys('')).length).toBeGreaterThan(0);
  });
});
