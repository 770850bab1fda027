// Rules of the OCI distribution spec (main branch) that its conformance suites check: references that name nothing, indexes, tags set by a push by digest, mounts that cannot be done.
import http from 'node:http';
import supertest from 'supertest';
import { MAX_TAGS_PER_PUSH, MemoryStorage, type AccessRequest } from '../lib';
import { listen, makeApp, sha256 } from './support/http';
import { descriptor, makeImage, OCI_INDEX, OCI_MANIFEST, pushBlob, pushImage } from './support/oci';

/** Sends a request and resolves with every value of response header `name`, one per header line. */
function headerLines(url: string, method: string, name: string, headers: Record<string, string> = {}, body?: Buffer): Promise<{ status: number; values: string[] }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      const values: string[] = [];
      for (let i = 0; i < res.rawHeaders.length; i += 2) if (res.rawHeaders[i].toLowerCase() === name.toLowerCase()) values.push(res.rawHeaders[i + 1]);
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, values }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('manifest references that name no manifest', () => {
  const agent = supertest(makeApp(new MemoryStorage()));
  const image = makeImage('references');
  beforeAll(async () => {
    await pushImage(agent, 'conf/app', image, 'v1');
  });

  // The v1.1.1 conformance suite asks for `.INVALID_MANIFEST_NAME`; the rest are neither tags nor digests either.
  const neither = ['.INVALID_MANIFEST_NAME', '-dash', 'x'.repeat(129), 'sha256:short', `sha1:${'0'.repeat(40)}`, `sha256:${'A'.repeat(64)}`];

  it.each(neither)('GET, HEAD and DELETE of %s are 404 MANIFEST_UNKNOWN', async (reference) => {
    const path = `/v2/conf/app/manifests/${encodeURIComponent(reference)}`;
    for (const method of ['get', 'delete'] as const) {
      const res = await agent[method](path).expect(404);
      expect(res.body.errors[0].code).toBe('MANIFEST_UNKNOWN');
    }
    await agent.head(path).expect(404);
    // Nothing was deleted.
    await agent.get('/v2/conf/app/manifests/v1').expect(200);
  });

  it('a PUT to a reference that is neither keeps its 400: TAG_INVALID for a tag, DIGEST_INVALID for a digest', async () => {
    for (const reference of ['.INVALID_MANIFEST_NAME', '-dash', 'x'.repeat(129)]) {
      const res = await agent.put(`/v2/conf/app/manifests/${reference}`).set('Content-Type', OCI_MANIFEST).send(image.manifest.toString()).expect(400);
      expect(res.body.errors[0].code).toBe('TAG_INVALID');
    }
    const res = await agent.put('/v2/conf/app/manifests/sha256:short').set('Content-Type', OCI_MANIFEST).send(image.manifest.toString()).expect(400);
    expect(res.body.errors[0].code).toBe('DIGEST_INVALID');
  });
});

it('an index that names a manifest the repository lacks is refused with 400 MANIFEST_BLOB_UNKNOWN', async () => {
  const agent = supertest(makeApp(new MemoryStorage()));
  const present = makeImage('present');
  const absent = makeImage('absent');
  await pushImage(agent, 'conf/index', present);
  const index = JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [descriptor(OCI_MANIFEST, present.manifest), descriptor(OCI_MANIFEST, absent.manifest)] });
  const res = await agent.put('/v2/conf/index/manifests/multi').set('Content-Type', OCI_INDEX).send(index).expect(400);
  expect(res.body.errors[0].code).toBe('MANIFEST_BLOB_UNKNOWN');
  expect(JSON.stringify(res.body.errors[0].detail)).toContain(absent.digest);
});

describe('a push by digest that sets tags with `tag` query parameters', () => {
  let server: Awaited<ReturnType<typeof listen>>;
  let agent: ReturnType<typeof supertest>;
  const image = makeImage('tagged');
  beforeAll(async () => {
    const app = makeApp(new MemoryStorage());
    server = await listen(app);
    agent = supertest(app);
    for (const blob of [image.config, ...image.layers]) await pushBlob(agent, 'conf/tags', blob);
  });
  afterAll(() => server.close());

  const put = (query: string) =>
    headerLines(`${server.url}/v2/conf/tags/manifests/${image.digest}${query}`, 'PUT', 'OCI-Tag', { 'Content-Type': OCI_MANIFEST }, image.manifest);

  it(`sets every tag in one request (here ${MAX_TAGS_PER_PUSH}, the documented limit), with an OCI-Tag header line for each`, async () => {
    const tags = Array.from({ length: MAX_TAGS_PER_PUSH }, (_, index) => `v${index}`);
    const res = await put(`?${tags.map((tag) => `tag=${tag}`).join('&')}`);
    expect(res.status).toBe(201);
    expect(res.values).toEqual(tags);
    for (const tag of tags.slice(0, 12)) {
      const pulled = await agent.get(`/v2/conf/tags/manifests/${tag}`).expect(200);
      expect(pulled.headers['docker-content-digest']).toBe(image.digest);
    }
    expect((await agent.get('/v2/conf/tags/tags/list').expect(200)).body.tags).toEqual([...tags].sort());
    // Deleting the manifest removes every tag it set.
    await agent.delete(`/v2/conf/tags/manifests/${image.digest}`).expect(202);
    await agent.get('/v2/conf/tags/manifests/v7').expect(404);
  });

  it('a tag named twice is set and confirmed once; a push without tag parameters sends no OCI-Tag', async () => {
    const res = await put('?tag=a&tag=b&tag=a');
    expect(res.status).toBe(201);
    expect(res.values).toEqual(['a', 'b']);
    expect((await put('')).values).toEqual([]);
  });

  it(`more than ${MAX_TAGS_PER_PUSH} tags is 414, and nothing is stored`, async () => {
    const tags = Array.from({ length: MAX_TAGS_PER_PUSH + 1 }, (_, index) => `many${index}`);
    const res = await put(`?${tags.map((tag) => `tag=${tag}`).join('&')}`);
    expect(res.status).toBe(414);
    await agent.get('/v2/conf/tags/manifests/many0').expect(404);
  });

  it('an invalid tag parameter is 400 TAG_INVALID, and tag parameters on a push by tag are 400; nothing is stored', async () => {
    const invalid = await agent.put(`/v2/conf/tags/manifests/${image.digest}?tag=ok&tag=.bad`).set('Content-Type', OCI_MANIFEST).send(image.manifest.toString()).expect(400);
    expect(invalid.body.errors[0].code).toBe('TAG_INVALID');
    const byTag = await agent.put('/v2/conf/tags/manifests/path-tag?tag=query-tag').set('Content-Type', OCI_MANIFEST).send(image.manifest.toString()).expect(400);
    expect(byTag.body.errors[0].code).toBe('TAG_INVALID');
    for (const tag of ['ok', 'path-tag', 'query-tag']) await agent.get(`/v2/conf/tags/manifests/${tag}`).expect(404);
  });
});

describe('a mount whose `mount` or `from` is malformed opens a session in the target repository', () => {
  const cases: [string, string, string | undefined][] = [
    // containerify with --doCrossMount sends the source as an image reference.
    ['from=<repository>:<tag>', `mount=${sha256('x')}&from=conf/source:latest`, undefined],
    ['a malformed from', `mount=${sha256('x')}&from=Bad..Name`, undefined],
    ['a malformed mount digest', 'mount=sha256:nothex&from=conf/source', 'conf/source'],
    ['a mount digest of an unsupported algorithm', `mount=md5:${'0'.repeat(32)}&from=conf/source`, 'conf/source'],
  ];

  it.each(cases)('%s: 202 with a session that takes the blob; authorize is asked about a well-formed from only', async (_name, query, askedFrom) => {
    const asked: AccessRequest[] = [];
    const agent = supertest(makeApp(new MemoryStorage(), { authorize: (_req, access) => (asked.push(access), true) }));
    const started = await agent.post(`/v2/conf/target/blobs/uploads/?${query}`).expect(202);
    expect(started.headers.location).toMatch(/^\/v2\/conf\/target\/blobs\/uploads\/[0-9a-f-]{36}$/);
    expect(asked).toEqual([{ repository: 'conf/target', actions: ['pull', 'push'] }, ...(askedFrom ? [{ repository: askedFrom, actions: ['pull'] }] : [])]);
    const data = Buffer.from('mounted or not');
    await agent.put(`${started.headers.location}?digest=${sha256(data)}`).set('Content-Type', 'application/octet-stream').send(data).expect(201);
    await agent.get(`/v2/conf/target/blobs/${sha256(data)}`).expect(200);
  });

  it('a well-formed from the caller may not pull from is still refused before anything happens', async () => {
    const agent = supertest(makeApp(new MemoryStorage(), { authorize: (_req, access) => (access.repository === 'conf/secret' ? 'forbidden' : true) }));
    expect((await agent.post(`/v2/conf/target/blobs/uploads/?mount=sha256:nothex&from=conf/secret`).expect(403)).body.errors[0].code).toBe('DENIED');
  });
});
