/** Blob GET, HEAD, ranges and DELETE. */
import supertest from 'supertest';
import { MemoryStorage } from '../lib';
import { bytes, makeApp, sha256 } from './support/http';

describe('blobs', () => {
  const data = bytes(10_000, 7);
  const digest = sha256(data);
  let agent: ReturnType<typeof supertest>;

  beforeEach(async () => {
    agent = supertest(makeApp(new MemoryStorage()));
    await agent.post(`/v2/team/app/blobs/uploads/?digest=${digest}`).set('Content-Type', 'application/octet-stream').send(data).expect(201);
  });

  it('GET serves the bytes with Content-Length, digest, type, Accept-Ranges and ETag', async () => {
    const res = await agent.get(`/v2/team/app/blobs/${digest}`).buffer(true).expect(200);
    expect(Buffer.compare(res.body, data)).toBe(0);
    expect(res.headers['content-length']).toBe('10000');
    expect(res.headers['docker-content-digest']).toBe(digest);
    expect(res.headers['content-type']).toBe('application/octet-stream');
    expect(res.headers['accept-ranges']).toBe('bytes');
    expect(res.headers.etag).toBe(`"${digest}"`);
  });

  it('HEAD gives the same headers without a body', async () => {
    const res = await agent.head(`/v2/team/app/blobs/${digest}`).expect(200);
    expect(res.headers['content-length']).toBe('10000');
    expect(res.headers['docker-content-digest']).toBe(digest);
  });

  it('accepts a percent-encoded digest in the path', async () => {
    await agent.head(`/v2/team/app/blobs/${encodeURIComponent(digest)}`).expect(200);
  });

  it('serves ranges with 206 and Content-Range', async () => {
    const res = await agent.get(`/v2/team/app/blobs/${digest}`).set('Range', 'bytes=100-199').buffer(true).expect(206);
    expect(res.headers['content-range']).toBe('bytes 100-199/10000');
    expect(Buffer.compare(res.body, data.subarray(100, 200))).toBe(0);
    const open = await agent.get(`/v2/team/app/blobs/${digest}`).set('Range', 'bytes=9990-').buffer(true).expect(206);
    expect(Buffer.compare(open.body, data.subarray(9990))).toBe(0);
    const suffix = await agent.get(`/v2/team/app/blobs/${digest}`).set('Range', 'bytes=-5').buffer(true).expect(206);
    expect(Buffer.compare(suffix.body, data.subarray(9995))).toBe(0);
  });

  it('answers an unsatisfiable range with 416', async () => {
    const res = await agent.get(`/v2/team/app/blobs/${digest}`).set('Range', 'bytes=10000-10010').expect(416);
    expect(res.headers['content-range']).toBe('bytes */10000');
    expect(res.body.errors[0].code).toBe('RANGE_INVALID');
  });

  it('never compresses blob responses', async () => {
    const res = await agent.get(`/v2/team/app/blobs/${digest}`).set('Accept-Encoding', 'gzip, deflate, br').buffer(true).expect(200);
    expect(res.headers['content-encoding']).toBeUndefined();
    expect(res.headers['cache-control']).toMatch(/no-transform/);
  });

  it('a blob stored for another repository is BLOB_UNKNOWN here', async () => {
    const res = await agent.get(`/v2/team/other/blobs/${digest}`).expect(404);
    expect(res.body.errors[0].code).toBe('BLOB_UNKNOWN');
    await agent.head(`/v2/team/app/blobs/${sha256('never pushed')}`).expect(404);
  });

  it('a malformed digest is DIGEST_INVALID, never a 500', async () => {
    for (const bad of ['sha256:short', 'nodigest', 'sha256%3Azz', `sha1:${'0'.repeat(40)}`]) {
      const res = await agent.get(`/v2/team/app/blobs/${bad}`).expect(400);
      expect(res.body.errors[0].code).toBe('DIGEST_INVALID');
    }
  });

  it('DELETE unlinks the blob from the repository only', async () => {
    await agent.post(`/v2/team/mirror/blobs/uploads/?mount=${digest}&from=team/app`).expect(201);
    await agent.delete(`/v2/team/app/blobs/${digest}`).expect(202);
    await agent.head(`/v2/team/app/blobs/${digest}`).expect(404);
    await agent.head(`/v2/team/mirror/blobs/${digest}`).expect(200);
    const again = await agent.delete(`/v2/team/app/blobs/${digest}`).expect(404);
    expect(again.body.errors[0].code).toBe('BLOB_UNKNOWN');
  });

  it('DELETE can be turned off', async () => {
    const storage = new MemoryStorage();
    const readOnly = supertest(makeApp(storage, { deleteEnabled: false }));
    await readOnly.post(`/v2/team/app/blobs/uploads/?digest=${digest}`).set('Content-Type', 'application/octet-stream').send(data).expect(201);
    const res = await readOnly.delete(`/v2/team/app/blobs/${digest}`).expect(405);
    expect(res.body.errors[0].code).toBe('UNSUPPORTED');
    await readOnly.head(`/v2/team/app/blobs/${digest}`).expect(200);
  });
});
