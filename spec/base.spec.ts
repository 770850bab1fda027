/** The router itself: `/v2/`, unknown paths, chunk size advertised, prefix mounts, body parsers mounted before it. */
import express from 'express';
import supertest from 'supertest';
import { createRegistryRouter, MemoryStorage } from '../lib';
import { bytes, makeApp, sha256 } from './support/http';

describe('router', () => {
  it('GET /v2/ answers 200 {} with the API version header', async () => {
    const agent = supertest(makeApp(new MemoryStorage()));
    for (const path of ['/v2/', '/v2']) {
      const res = await agent.get(path).expect(200);
      expect(res.body).toEqual({});
      expect(res.headers['docker-distribution-api-version']).toBe('registry/2.0');
    }
    await agent.head('/v2/').expect(200);
  });

  it("advertises the adapter's minimum chunk size on a new session", async () => {
    const agent = supertest(makeApp(new MemoryStorage({ minChunkSize: 5 * 1024 * 1024 })));
    const res = await agent.post('/v2/team/app/blobs/uploads/').expect(202);
    expect(res.headers['oci-chunk-min-length']).toBe(String(5 * 1024 * 1024));
  });

  it('leaves paths outside /v2 to the host app', async () => {
    const agent = supertest(makeApp(new MemoryStorage()));
    const res = await agent.get('/host-route').expect(200);
    expect(res.text).toBe('host');
  });

  it('answers unknown /v2 paths with an OCI 404', async () => {
    const res = await supertest(makeApp(new MemoryStorage())).get('/v2/app/unknown/thing').expect(404);
    expect(res.body.errors[0].code).toBeDefined();
  });

  it('returns Locations that include the prefix it is mounted under', async () => {
    const agent = supertest(makeApp(new MemoryStorage(), { prefix: '/r' }));
    await agent.get('/r/v2/').expect(200);
    const started = await agent.post('/r/v2/team/app/blobs/uploads/').expect(202);
    expect(started.headers.location).toMatch(/^\/r\/v2\/team\/app\/blobs\/uploads\//);
    const data = bytes(1000);
    const patched = await agent.patch(started.headers.location).set('Content-Type', 'application/octet-stream').send(data).expect(202);
    expect(patched.headers.location).toBe(started.headers.location);
    const put = await agent.put(`${patched.headers.location}?digest=${sha256(data)}`).expect(201);
    expect(put.headers.location).toBe(`/r/v2/team/app/blobs/${sha256(data)}`);
    await agent.get(put.headers.location).expect(200);
  });

  it("mounted under a prefix, serves clients at the host's /v2/ through the README's rewrite", async () => {
    const app = express();
    app.use((req, _res, next) => {
      if (req.url === '/v2' || req.url.startsWith('/v2/')) req.url = `/registry${req.url}`;
      next();
    });
    app.use('/registry', createRegistryRouter({ storage: new MemoryStorage() }));
    const agent = supertest(app);
    await agent.get('/v2/').expect(200);
    const data = bytes(500, 3);
    const pushed = await agent.post(`/v2/team/app/blobs/uploads/?digest=${sha256(data)}`).set('Content-Type', 'application/octet-stream').send(data).expect(201);
    expect(pushed.headers.location).toBe(`/registry/v2/team/app/blobs/${sha256(data)}`);
    expect((await agent.get(`/v2/team/app/blobs/${sha256(data)}`).expect(200)).body).toEqual(data);
    expect((await agent.get(pushed.headers.location).expect(200)).body).toEqual(data);
  });

  it('works behind express.json() and express.urlencoded(), even for JSON-typed bodies', async () => {
    const agent = supertest(makeApp(new MemoryStorage(), { bodyParsers: true }));
    const data = Buffer.from(JSON.stringify({ looks: 'like json' }));
    const started = await agent.post('/v2/team/app/blobs/uploads/').expect(202);
    await agent.patch(started.headers.location).set('Content-Type', 'application/octet-stream').send(data).expect(202);
    await agent.put(`${started.headers.location}?digest=${sha256(data)}`).expect(201);
    const monolithic = Buffer.from('a=1&b=2');
    await agent
      .post(`/v2/team/app/blobs/uploads/?digest=${sha256(monolithic)}`)
      .set('Content-Type', 'application/octet-stream')
      .send(monolithic)
      .expect(201);
    // A body the host's JSON parser already consumed cannot be stored byte for byte: a clear error, not a wrong blob.
    const jsonTyped = await agent
      .post(`/v2/team/app/blobs/uploads/?digest=${sha256(data)}`)
      .set('Content-Type', 'application/json')
      .send(data.toString());
    expect(jsonTyped.status).toBe(400);
    expect(jsonTyped.body.errors[0].code).toBe('BLOB_UPLOAD_INVALID');
  });
});
