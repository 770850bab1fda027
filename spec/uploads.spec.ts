/** The upload protocol: sessions, chunks, monolithic uploads, mounts, cancel. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import supertest from 'supertest';
import { FileSystemStorage, MemoryStorage, type StorageAdapter } from '../lib';
import { bytes, chunked, listen, makeApp, request, sha256, sha512 } from './support/http';

const adapters: [string, () => Promise<StorageAdapter>][] = [
  ['MemoryStorage', async () => new MemoryStorage()],
  ['FileSystemStorage', async () => new FileSystemStorage({ root: await mkdtemp(join(tmpdir(), 'oci-uploads-')) })],
];

describe.each(adapters)('upload dispatcher over %s', (_name, createStorage) => {
  let storage: StorageAdapter;
  let agent: ReturnType<typeof supertest>;

  beforeEach(async () => {
    storage = await createStorage();
    agent = supertest(makeApp(storage));
  });
  afterEach(async () => {
    if (storage instanceof FileSystemStorage) await rm(storage.root, { recursive: true, force: true });
  });

  async function startSession(repository = 'library/app'): Promise<string> {
    const res = await agent.post(`/v2/${repository}/blobs/uploads/`).expect(202);
    return res.headers.location;
  }

  function expectError(res: supertest.Response, status: number, code: string) {
    expect(res.status).toBe(status);
    expect(res.body.errors[0].code).toBe(code);
    expect(typeof res.body.errors[0].message).toBe('string');
    expect(res.body.errors[0]).toHaveProperty('detail');
  }

  it('POST opens a session: 202 with Location, Docker-Upload-UUID, Range 0-0 and no body', async () => {
    const res = await agent.post('/v2/library/app/blobs/uploads/').expect(202);
    expect(res.headers.location).toMatch(/^\/v2\/library\/app\/blobs\/uploads\/[0-9a-f-]{36}$/);
    expect(res.headers['docker-upload-uuid']).toBe(res.headers.location.split('/').pop());
    expect(res.headers.range).toBe('0-0');
    expect(res.headers['content-length']).toBe('0');
    expect(res.headers['docker-distribution-api-version']).toBe('registry/2.0');
    expect(res.headers['oci-chunk-min-length']).toBeUndefined();
  });

  it('POST ?digest= with a body completes a monolithic upload', async () => {
    const data = bytes(100_000);
    const res = await agent
      .post(`/v2/library/app/blobs/uploads/?digest=${sha256(data)}`)
      .set('Content-Type', 'application/octet-stream')
      .send(data)
      .expect(201);
    expect(res.headers.location).toBe(`/v2/library/app/blobs/${sha256(data)}`);
    expect(res.headers['docker-content-digest']).toBe(sha256(data));
    const blob = await agent.get(res.headers.location).buffer(true).expect(200);
    expect(Buffer.compare(blob.body, data)).toBe(0);
  });

  it('POST ?digest= with the wrong bytes publishes nothing and leaves no session', async () => {
    const res = await agent
      .post(`/v2/library/app/blobs/uploads/?digest=${sha256('other')}`)
      .set('Content-Type', 'application/octet-stream')
      .send(Buffer.from('these bytes'));
    expectError(res, 400, 'DIGEST_INVALID');
    await agent.head(`/v2/library/app/blobs/${sha256('other')}`).expect(404);
    expect(await storage.listDocuments('uploads/')).toEqual([]);
  });

  it('POST then PUT with the whole body', async () => {
    const data = bytes(5000, 2);
    const location = await startSession();
    const res = await agent.put(`${location}?digest=${sha256(data)}`).set('Content-Type', 'application/octet-stream').send(data).expect(201);
    expect(res.headers['docker-content-digest']).toBe(sha256(data));
    const head = await agent.head(`/v2/library/app/blobs/${sha256(data)}`).expect(200);
    expect(head.headers['content-length']).toBe('5000');
  });

  it('chunks with Content-Range: out-of-order and repeated chunks get 416 with the stored Range, then the upload continues', async () => {
    const data = bytes(30_000, 3);
    const location = await startSession();
    const patch = (start: number, end: number) =>
      agent
        .patch(location)
        .set('Content-Type', 'application/octet-stream')
        .set('Content-Range', `${start}-${end}`)
        .send(data.subarray(start, end + 1));

    const first = await patch(0, 9_999).expect(202);
    expect(first.headers.range).toBe('0-9999');
    expect(first.headers.location).toBe(location);
    expect(first.headers['docker-upload-uuid']).toBe(location.split('/').pop());

    const skipped = await patch(20_000, 29_999);
    expectError(skipped, 416, 'BLOB_UPLOAD_INVALID');
    expect(skipped.headers.range).toBe('0-9999');

    const repeated = await patch(0, 9_999);
    expect(repeated.status).toBe(416);
    expect(repeated.headers.range).toBe('0-9999');

    await patch(10_000, 19_999).expect(202);
    const status = await agent.get(location).expect(204);
    expect(status.headers.range).toBe('0-19999');
    expect(status.headers.location).toBe(location);

    await agent
      .put(`${location}?digest=${sha256(data)}`)
      .set('Content-Type', 'application/octet-stream')
      .set('Content-Range', '20000-29999')
      .send(data.subarray(20_000))
      .expect(201);
    const blob = await agent.get(`/v2/library/app/blobs/${sha256(data)}`).buffer(true).expect(200);
    expect(Buffer.compare(blob.body, data)).toBe(0);
  });

  it('a blob of several MiB comes back whole and by a Range across read boundaries', async () => {
    // Larger than FileSystemStorage's 1 MiB reads, so its read buffers are handed back and reused.
    const data = bytes(5 * 1024 * 1024 + 77, 7);
    const location = await startSession();
    await agent.put(`${location}?digest=${sha256(data)}`).set('Content-Type', 'application/octet-stream').send(data).expect(201);
    const whole = await agent.get(`/v2/library/app/blobs/${sha256(data)}`).buffer(true).expect(200);
    expect(Buffer.compare(whole.body, data)).toBe(0);
    const start = 1024 * 1024 - 5;
    const end = 4 * 1024 * 1024 + 3;
    const part = await agent.get(`/v2/library/app/blobs/${sha256(data)}`).set('Range', `bytes=${start}-${end}`).buffer(true).expect(206);
    expect(Buffer.compare(part.body, data.subarray(start, end + 1))).toBe(0);
  });

  it('a Content-Length that disagrees with Content-Range gets 416 and the session survives', async () => {
    const location = await startSession();
    const res = await agent.patch(location).set('Content-Range', '0-99').set('Content-Type', 'application/octet-stream').send(Buffer.alloc(50));
    expectError(res, 416, 'BLOB_UPLOAD_INVALID');
    expect(res.headers.range).toBe('0-0');
    const malformed = await agent.patch(location).set('Content-Range', 'bytes=abc').send(Buffer.alloc(1));
    expect(malformed.status).toBe(416);
    await agent.get(location).expect(204);
  });

  it('one streamed PATCH with chunked transfer encoding and no Content-Range, as skopeo sends', async () => {
    const server = await listen(makeApp(storage));
    try {
      const data = bytes(3 * 1024 * 1024 + 17, 4);
      const started = await request(`${server.url}/v2/library/app/blobs/uploads/`, { method: 'POST' });
      const location = started.headers.location!;
      const patched = await request(`${server.url}${location}`, {
        method: 'PATCH',
        headers: { 'Content-Type': 'application/octet-stream' },
        body: chunked(data),
      });
      expect(patched.status).toBe(202);
      expect(patched.headers.range).toBe(`0-${data.length - 1}`);
      const put = await request(`${server.url}${patched.headers.location}?digest=${encodeURIComponent(sha256(data))}`, { method: 'PUT' });
      expect(put.status).toBe(201);
      expect(put.headers['docker-content-digest']).toBe(sha256(data));
    } finally {
      await server.close();
    }
  });

  it('GET and HEAD report the session with 204', async () => {
    const location = await startSession();
    await agent.patch(location).set('Content-Type', 'application/octet-stream').send(Buffer.from('abc')).expect(202);
    for (const method of ['get', 'head'] as const) {
      const res = await agent[method](location).expect(204);
      expect(res.headers.range).toBe('0-2');
      expect(res.headers.location).toBe(location);
      expect(res.headers['docker-upload-uuid']).toBe(location.split('/').pop());
    }
  });

  it('an unknown session, or one started in another repository, is BLOB_UPLOAD_UNKNOWN', async () => {
    expectError(await agent.get('/v2/library/app/blobs/uploads/00000000-0000-4000-8000-000000000000'), 404, 'BLOB_UPLOAD_UNKNOWN');
    expectError(await agent.get('/v2/library/app/blobs/uploads/not-a-uuid'), 404, 'BLOB_UPLOAD_UNKNOWN');
    const location = await startSession('library/app');
    const elsewhere = location.replace('library/app', 'library/other');
    expectError(await agent.get(elsewhere), 404, 'BLOB_UPLOAD_UNKNOWN');
    expectError(await agent.patch(elsewhere).send(Buffer.from('x')), 404, 'BLOB_UPLOAD_UNKNOWN');
    expectError(await agent.put(`${elsewhere}?digest=${sha256('')}`), 404, 'BLOB_UPLOAD_UNKNOWN');
    expectError(await agent.delete(elsewhere), 404, 'BLOB_UPLOAD_UNKNOWN');
    await agent.get(location).expect(204);
  });

  it('PUT with a missing, malformed or unsupported digest is DIGEST_INVALID', async () => {
    const location = await startSession();
    expectError(await agent.put(location), 400, 'DIGEST_INVALID');
    expectError(await agent.put(`${location}?digest=sha256:xyz`), 400, 'DIGEST_INVALID');
    expectError(await agent.put(`${location}?digest=sha256:${'A'.repeat(64)}`), 400, 'DIGEST_INVALID');
    const md5 = await agent.put(`${location}?digest=md5:${'0'.repeat(32)}`);
    expectError(md5, 400, 'DIGEST_INVALID');
    expect(md5.body.errors[0].detail).toMatch(/sha256, sha512/);
    await agent.get(location).expect(204);
  });

  it('a digest mismatch publishes nothing and keeps the session', async () => {
    const location = await startSession();
    await agent.patch(location).set('Content-Type', 'application/octet-stream').send(Buffer.from('actual')).expect(202);
    expectError(await agent.put(`${location}?digest=${sha256('expected')}`), 400, 'DIGEST_INVALID');
    await agent.head(`/v2/library/app/blobs/${sha256('expected')}`).expect(404);
    await agent.head(`/v2/library/app/blobs/${sha256('actual')}`).expect(404);
    await agent.put(`${location}?digest=${sha256('actual')}`).expect(201);
  });

  it('verifies sha512 digests', async () => {
    const data = bytes(70_000, 5);
    const location = await startSession();
    await agent.patch(location).set('Content-Type', 'application/octet-stream').send(data).expect(202);
    const res = await agent.put(`${location}?digest=${sha512(data)}`).expect(201);
    expect(res.headers['docker-content-digest']).toBe(sha512(data));
    const blob = await agent.get(`/v2/library/app/blobs/${sha512(data)}`).buffer(true).expect(200);
    expect(Buffer.compare(blob.body, data)).toBe(0);
  });

  it('zero-byte blobs', async () => {
    const location = await startSession();
    await agent.put(`${location}?digest=${sha256('')}`).expect(201);
    const head = await agent.head(`/v2/library/app/blobs/${sha256('')}`).expect(200);
    expect(head.headers['content-length']).toBe('0');
    const get = await agent.get(`/v2/library/app/blobs/${sha256('')}`).buffer(true).expect(200);
    expect(get.body.length).toBe(0);
  });

  it('DELETE cancels the session', async () => {
    const location = await startSession();
    await agent.delete(location).expect(204);
    expectError(await agent.get(location), 404, 'BLOB_UPLOAD_UNKNOWN');
    expect(await storage.listDocuments('uploads/')).toEqual([]);
  });

  it('mounts a blob from another repository, and falls back to a session when it is not there', async () => {
    const data = Buffer.from('shared layer');
    await agent.post(`/v2/team/source/blobs/uploads/?digest=${sha256(data)}`).set('Content-Type', 'application/octet-stream').send(data).expect(201);
    await agent.head(`/v2/team/target/blobs/${sha256(data)}`).expect(404);

    const mounted = await agent.post(`/v2/team/target/blobs/uploads/?mount=${sha256(data)}&from=team/source`).expect(201);
    expect(mounted.headers.location).toBe(`/v2/team/target/blobs/${sha256(data)}`);
    expect(mounted.headers['docker-content-digest']).toBe(sha256(data));
    await agent.head(`/v2/team/target/blobs/${sha256(data)}`).expect(200);

    const missing = await agent.post(`/v2/team/target/blobs/uploads/?mount=${sha256('absent')}&from=team/source`).expect(202);
    expect(missing.headers.location).toMatch(/\/blobs\/uploads\//);
    const wrongSource = await agent.post(`/v2/team/third/blobs/uploads/?mount=${sha256(data)}&from=team/empty`).expect(202);
    expect(wrongSource.headers.location).toMatch(/\/blobs\/uploads\//);

    const anywhere = await agent.post(`/v2/team/fourth/blobs/uploads/?mount=${sha256(data)}`).expect(201);
    expect(anywhere.headers.location).toBe(`/v2/team/fourth/blobs/${sha256(data)}`);
  });

  it('mount without from can be turned off', async () => {
    const strict = supertest(makeApp(storage, { mountFromAnyRepository: false }));
    const data = Buffer.from('private layer');
    await strict.post(`/v2/a/blobs/uploads/?digest=${sha256(data)}`).set('Content-Type', 'application/octet-stream').send(data).expect(201);
    await strict.post(`/v2/b/blobs/uploads/?mount=${sha256(data)}`).expect(202);
    await strict.head(`/v2/b/blobs/${sha256(data)}`).expect(404);
  });

  it('two sessions committing the same digest at once both succeed with one copy', async () => {
    const data = bytes(200_000, 6);
    const locations = await Promise.all([startSession('x/one'), startSession('x/two')]);
    for (const location of locations) {
      await agent.patch(location).set('Content-Type', 'application/octet-stream').send(data).expect(202);
    }
    const results = await Promise.all(locations.map((location) => agent.put(`${location}?digest=${sha256(data)}`)));
    expect(results.map((res) => res.status)).toEqual([201, 201]);
    for (const repository of ['x/one', 'x/two']) {
      const blob = await agent.get(`/v2/${repository}/blobs/${sha256(data)}`).buffer(true).expect(200);
      expect(Buffer.compare(blob.body, data)).toBe(0);
    }
  });

  it('answers other methods with 405, Allow and an OCI error', async () => {
    const res = await agent.put('/v2/library/app/blobs/uploads/');
    expectError(res, 405, 'UNSUPPORTED');
    expect(res.headers.allow).toBe('POST');
    const location = await startSession();
    const onSession = await agent.post(location);
    expectError(onSession, 405, 'UNSUPPORTED');
    expect(onSession.headers.allow).toBe('GET, HEAD, PATCH, PUT, DELETE');
  });

  it('refuses invalid repository names with NAME_INVALID', async () => {
    for (const name of ['Library/App', 'a..b', 'a%2Fb', '-a', 'a/', 'x'.repeat(256)]) {
      expectError(await agent.post(`/v2/${name}/blobs/uploads/`), 400, 'NAME_INVALID');
    }
  });
});
