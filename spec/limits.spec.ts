/** The limits: blob sizes, sessions per repository, stalled bodies. */
import { readdir } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import supertest from 'supertest';
import { FileSystemStorage, MemoryStorage } from '../lib';
import { openFilesUnder } from './support/storage-files';
import { bytes, chunked, listen, makeApp, request, sha256 } from './support/http';
import { finishUpload, openRequest, storedSize } from './support/streaming';
import { useTempDir } from './support/temp-dir';

describe('limits', () => {
  const root = useTempDir('oci-limits-');

  describe('maxBlobSize', () => {
    const maxBlobSize = 100_000;

    it('refuses a monolithic upload over the limit with 413 SIZE_INVALID and keeps no session', async () => {
      const storage = new FileSystemStorage({ root: root() });
      const agent = supertest(makeApp(storage, { maxBlobSize }));
      const data = bytes(maxBlobSize + 1);
      const res = await agent.post(`/v2/a/blobs/uploads/?digest=${sha256(data)}`).set('Content-Type', 'application/octet-stream').send(data).expect(413);
      expect(res.body.errors[0].code).toBe('SIZE_INVALID');
      expect(await storage.listDocuments('uploads/')).toEqual([]);
      const exact = bytes(maxBlobSize);
      await agent.post(`/v2/a/blobs/uploads/?digest=${sha256(exact)}`).set('Content-Type', 'application/octet-stream').send(exact).expect(201);
    });

    it('refuses a chunk whose Content-Range goes past the limit before reading it', async () => {
      const agent = supertest(makeApp(new MemoryStorage(), { maxBlobSize }));
      const location = (await agent.post('/v2/a/blobs/uploads/').expect(202)).headers.location;
      await agent.patch(location).set('Content-Type', 'application/octet-stream').set('Content-Range', `0-${maxBlobSize - 11}`).send(bytes(maxBlobSize - 10)).expect(202);
      const over = await agent.patch(location).set('Content-Type', 'application/octet-stream').set('Content-Range', `${maxBlobSize - 10}-${maxBlobSize}`).send(bytes(11)).expect(413);
      expect(over.body.errors[0].code).toBe('SIZE_INVALID');
      expect((await agent.get(location).expect(204)).headers.range).toBe(`0-${maxBlobSize - 11}`);
    });

    it('stops a streamed body (no length announced) once it passes the limit; the session keeps at most the limit', async () => {
      const storage = new FileSystemStorage({ root: root() });
      const server = await listen(makeApp(storage, { maxBlobSize }));
      try {
        const started = await request(`${server.url}/v2/a/blobs/uploads/`, { method: 'POST' });
        const location = started.headers.location!;
        const res = await request(`${server.url}${location}`, {
          method: 'PATCH',
          headers: { 'Content-Type': 'application/octet-stream' },
          body: chunked(bytes(maxBlobSize * 3), 16 * 1024),
        });
        expect(res.status).toBe(413);
        expect(JSON.parse(res.body.toString()).errors[0].code).toBe('SIZE_INVALID');
        const status = await request(`${server.url}${location}`, { method: 'GET' });
        expect(status.status).toBe(204);
        expect(Number(String(status.headers.range).split('-')[1]) + 1).toBeLessThanOrEqual(maxBlobSize);
      } finally {
        await server.close();
      }
    });
  });

  describe('maxUploadsPerRepository', () => {
    it('answers 429 TOOMANYREQUESTS past the limit, per repository, counting every router on the storage', async () => {
      const first = supertest(makeApp(new FileSystemStorage({ root: root() }), { maxUploadsPerRepository: 2 }));
      const second = supertest(makeApp(new FileSystemStorage({ root: root() }), { maxUploadsPerRepository: 2 }));
      const one = (await first.post('/v2/team/app/blobs/uploads/').expect(202)).headers.location;
      await second.post('/v2/team/app/blobs/uploads/').expect(202);
      for (const agent of [first, second]) {
        const refused = await agent.post('/v2/team/app/blobs/uploads/').expect(429);
        expect(refused.body.errors[0].code).toBe('TOOMANYREQUESTS');
      }
      await first.post('/v2/team/other/blobs/uploads/').expect(202);
      await second.delete(one).expect(204);
      await first.post('/v2/team/app/blobs/uploads/').expect(202);
      // Finished sessions no longer count.
      const data = Buffer.from('done');
      await second.post('/v2/team/app/blobs/uploads/').expect(429);
      await first.post(`/v2/team/other/blobs/uploads/?digest=${sha256(data)}`).set('Content-Type', 'application/octet-stream').send(data).expect(201);
      await first.post('/v2/team/other/blobs/uploads/').expect(202);
    });

    it('counts with one listing of the repository\'s own sessions, whatever other repositories (nested ones too) hold', async () => {
      const storage = new MemoryStorage();
      const listings: { prefix: string; names: number }[] = [];
      const listDocuments = storage.listDocuments.bind(storage);
      storage.listDocuments = async (prefix, options) => {
        const names = await listDocuments(prefix, options);
        listings.push({ prefix, names: names.length });
        return names;
      };
      const agent = supertest(makeApp(storage, { maxUploadsPerRepository: 3, uploadPurging: false }));
      for (let index = 0; index < 39; index++) await agent.post(`/v2/team/other-${index % 13}/blobs/uploads/`).expect(202);
      for (let index = 0; index < 3; index++) await agent.post('/v2/team/app/nested/blobs/uploads/').expect(202);
      listings.length = 0;
      await agent.post('/v2/team/app/blobs/uploads/').expect(202);
      expect(listings).toEqual([{ prefix: 'repositories/team/app/_uploads/', names: 0 }]);
      await agent.post('/v2/team/app/blobs/uploads/').expect(202);
      await agent.post('/v2/team/app/blobs/uploads/').expect(202);
      await agent.post('/v2/team/app/blobs/uploads/').expect(429);
    });
  });

  describe('bodyIdleTimeout', () => {
    it('ends a PATCH whose client stops sending with 408, frees the session and closes the file', async () => {
      const storage = new FileSystemStorage({ root: root() });
      const server = await listen(makeApp(storage, { bodyIdleTimeout: 200 }));
      try {
        const location = (await request(`${server.url}/v2/a/blobs/uploads/`, { method: 'POST' })).headers.location!;
        const data = bytes(50_000, 3);
        // Announce 50,000 bytes, send 20,000, then go silent with the connection open.
        const stalled = await new Promise<{ status: number; body: string }>((resolve, reject) => {
          const req = http.request(`${server.url}${location}`, {
            method: 'PATCH',
            agent: false,
            headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(data.length) },
          });
          req.on('response', (res) => {
            let body = '';
            res.on('data', (chunk: Buffer) => (body += chunk.toString()));
            res.on('end', () => resolve({ status: res.statusCode!, body }));
          });
          req.on('error', reject);
          req.write(data.subarray(0, 20_000));
        });
        expect(stalled.status).toBe(408);
        expect(JSON.parse(stalled.body).errors[0].code).toBe('BLOB_UPLOAD_INVALID');
        // The lock is gone and no file under the storage is held open.
        expect(await readdir(join(root(), 'uploads', location.split('/').pop()!))).toEqual(['data']);
        expect(await openFilesUnder(root())).toEqual([]);

        const stored = await storedSize(server.url, location);
        expect(stored).toBeLessThanOrEqual(20_000);
        expect(await finishUpload(server.url, location, data, stored)).toBe(201);
      } finally {
        await server.close();
      }
    });

    it('ends a manifest PUT whose client stops sending with 408 MANIFEST_INVALID', async () => {
      const server = await listen(makeApp(new MemoryStorage(), { bodyIdleTimeout: 200 }));
      try {
        const put = openRequest(`${server.url}/v2/a/manifests/v1`, 'PUT', { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json', 'Content-Length': '1000' });
        await put.send(Buffer.from('{"schemaVersion":'));
        const res = await put.response;
        expect(res.status).toBe(408);
        expect(JSON.parse(res.body.toString()).errors[0].code).toBe('MANIFEST_INVALID');
        expect((await request(`${server.url}/v2/a/manifests/v1`, { method: 'HEAD' })).status).toBe(404);
      } finally {
        await server.close();
      }
    });
  });
});
