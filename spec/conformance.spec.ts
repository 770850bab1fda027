// Rules of the OCI distribution spec (main branch) that its conformance suites check: references that name nothing, indexes, tags set by a push by digest, mounts that cannot be done, sparse manifests, referrers paging, sha512 sessions.
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import supertest from 'supertest';
import {
  createRegistryRouter,
  DEFAULT_MAX_MANIFEST_SIZE,
  MAX_TAGS_PER_PUSH,
  MemoryStorage,
  parseDigest,
  REFERRERS_PAGE_SIZE,
  type AccessRequest,
  type RegistryOptions,
} from '../lib';
import { startChild } from './support/child-server';
import { listen, makeApp, request, sha256, sha512 } from './support/http';
import { descriptor, makeImage, OCI_INDEX, OCI_MANIFEST, pushBlob, pushImage } from './support/oci';
import { watchedStorage } from './support/watched-storage';

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

  it('the manifestPushed event lists every tag the push set', async () => {
    const registry = createRegistryRouter({ storage: new MemoryStorage(), uploadPurging: false });
    const pushed: string[][] = [];
    registry.events.on('manifestPushed', (event) => pushed.push(event.tags));
    const local = supertest(express().use(registry));
    for (const blob of [image.config, ...image.layers]) await pushBlob(local, 'conf/tags', blob);
    await local.put(`/v2/conf/tags/manifests/${image.digest}?tag=x&tag=y`).set('Content-Type', OCI_MANIFEST).send(image.manifest.toString()).expect(201);
    await local.put('/v2/conf/tags/manifests/z').set('Content-Type', OCI_MANIFEST).send(image.manifest.toString()).expect(201);
    await local.put(`/v2/conf/tags/manifests/${image.digest}`).set('Content-Type', OCI_MANIFEST).send(image.manifest.toString()).expect(201);
    expect(pushed).toEqual([['x', 'y'], ['z'], []]);
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

describe('sparse manifests, opt-in with allowSparseManifests', () => {
  const image = makeImage('sparse');
  const other = makeImage('sparse-other');
  const index = JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [descriptor(OCI_MANIFEST, image.manifest), descriptor(OCI_MANIFEST, other.manifest)] });

  it('are refused by default: 400 MANIFEST_BLOB_UNKNOWN for an image missing a layer and for an index missing a child', async () => {
    const agent = supertest(makeApp(new MemoryStorage()));
    await pushBlob(agent, 'conf/sparse', image.config);
    const res = await agent.put('/v2/conf/sparse/manifests/v1').set('Content-Type', OCI_MANIFEST).send(image.manifest.toString()).expect(400);
    expect(res.body.errors[0].code).toBe('MANIFEST_BLOB_UNKNOWN');
    expect((await agent.put('/v2/conf/sparse/manifests/multi').set('Content-Type', OCI_INDEX).send(index).expect(400)).body.errors[0].code).toBe('MANIFEST_BLOB_UNKNOWN');
  });

  it('with the option, an image whose layers and an index whose children are missing are stored and served; a missing blob is still 404 BLOB_UNKNOWN', async () => {
    const agent = supertest(makeApp(new MemoryStorage(), { allowSparseManifests: true }));
    await pushBlob(agent, 'conf/sparse', image.config);
    await agent.put('/v2/conf/sparse/manifests/v1').set('Content-Type', OCI_MANIFEST).send(image.manifest.toString()).expect(201);
    await agent.put('/v2/conf/sparse/manifests/multi').set('Content-Type', OCI_INDEX).send(index).expect(201);
    for (const reference of ['v1', image.digest]) {
      const res = await agent.get(`/v2/conf/sparse/manifests/${reference}`).buffer(true).parse((res, done) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => done(null, Buffer.concat(chunks)));
      }).expect(200);
      expect(Buffer.compare(res.body as Buffer, image.manifest)).toBe(0);
      await agent.head(`/v2/conf/sparse/manifests/${reference}`).expect(200);
    }
    await agent.head('/v2/conf/sparse/manifests/multi').expect(200);
    await agent.get(`/v2/conf/sparse/blobs/${sha256(image.config)}`).expect(200);
    expect((await agent.get(`/v2/conf/sparse/blobs/${sha256(image.layers[0])}`).expect(404)).body.errors[0].code).toBe('BLOB_UNKNOWN');
    expect((await agent.get(`/v2/conf/sparse/manifests/${other.digest}`).expect(404)).body.errors[0].code).toBe('MANIFEST_UNKNOWN');
  });

  it('the example server turns the option on with ALLOW_SPARSE_MANIFESTS=1', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'oci-sparse-'));
    const server = await startChild(join(__dirname, '..', 'dist', 'examples', 'server.js'), { DATA_DIR: dataDir, ALLOW_SPARSE_MANIFESTS: '1' });
    try {
      const res = await request(`${server.url}/v2/conf/sparse/manifests/v1`, { method: 'PUT', headers: { 'Content-Type': OCI_MANIFEST }, body: image.manifest });
      expect(res.status).toBe(201);
    } finally {
      server.child.kill('SIGKILL');
      await server.exited;
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

describe('referrers paging', () => {
  const EMPTY = '{}';
  const subject = makeImage('paged-subject');

  /** A registry holding `count` referrers of `subject` in conf/paged, stored through the manifest store (not HTTP, for speed). */
  async function registryWithReferrers(count: number, options: Partial<RegistryOptions> = {}, annotation = '') {
    const registry = createRegistryRouter({ storage: new MemoryStorage(), uploadPurging: false, ...options });
    const agent = supertest(express().use(registry));
    await pushBlob(agent, 'conf/paged', EMPTY);
    const digests: string[] = [];
    for (let i = 0; i < count; i++) {
      const body = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          artifactType: i % 2 ? 'application/vnd.example.odd' : 'application/vnd.example.even',
          config: descriptor('application/vnd.oci.empty.v1+json', EMPTY),
          layers: [],
          subject: descriptor(OCI_MANIFEST, subject.manifest),
          annotations: { 'org.example.index': String(i), 'org.example.padding': annotation },
        }),
      );
      const { digest } = await registry.store.manifests.put('conf/paged', { digest: parseDigest(sha256(body)) }, body, OCI_MANIFEST);
      digests.push(digest.value);
    }
    return { agent, digests };
  }

  /** Follows `Link: <…>; rel="next"` from `path` to the last page; resolves with every page's descriptors and body size. */
  async function allPages(agent: ReturnType<typeof supertest>, path: string) {
    const pages: { digests: string[]; artifactTypes: string[]; bytes: number }[] = [];
    for (let next: string | undefined = path; next !== undefined; ) {
      const res = await agent.get(next).expect(200);
      expect(res.headers['content-type']).toBe(OCI_INDEX);
      const body = JSON.parse(res.text) as { manifests: { digest: string; artifactType: string }[] };
      pages.push({ digests: body.manifests.map((entry) => entry.digest), artifactTypes: body.manifests.map((entry) => entry.artifactType), bytes: Buffer.byteLength(res.text) });
      const link = res.headers.link as string | undefined;
      next = link === undefined ? undefined : /^<([^>]+)>; rel="next"$/.exec(link)![1];
    }
    return pages;
  }

  it(`thousands of referrers of one subject come in pages of at most REFERRERS_PAGE_SIZE (${REFERRERS_PAGE_SIZE}) linked by Link rel="next", each referrer exactly once`, async () => {
    const count = 2 * REFERRERS_PAGE_SIZE + 500;
    const { agent, digests } = await registryWithReferrers(count);
    const pages = await allPages(agent, `/v2/conf/paged/referrers/${subject.digest}`);
    expect(pages.map((page) => page.digests.length)).toEqual([REFERRERS_PAGE_SIZE, REFERRERS_PAGE_SIZE, 500]);
    const seen = pages.flatMap((page) => page.digests);
    expect(new Set(seen).size).toBe(count);
    expect([...seen].sort()).toEqual([...digests].sort());
    for (const page of pages) expect(page.bytes).toBeLessThanOrEqual(DEFAULT_MAX_MANIFEST_SIZE);
  });

  it('a page is also cut to stay within maxManifestSize, and a filtered listing pages with its filter kept', async () => {
    const maxManifestSize = 32 * 1024;
    const { agent, digests } = await registryWithReferrers(600, { maxManifestSize }, 'x'.repeat(200));
    const pages = await allPages(agent, `/v2/conf/paged/referrers/${subject.digest}`);
    expect(pages.length).toBeGreaterThan(3);
    for (const page of pages) expect(page.bytes).toBeLessThanOrEqual(maxManifestSize);
    expect(pages.flatMap((page) => page.digests).sort()).toEqual([...digests].sort());
    const odd = await allPages(agent, `/v2/conf/paged/referrers/${subject.digest}?artifactType=application/vnd.example.odd`);
    expect(odd.length).toBeGreaterThan(1);
    expect(odd.flatMap((page) => page.artifactTypes).every((type) => type === 'application/vnd.example.odd')).toBe(true);
    expect(odd.flatMap((page) => page.digests).sort()).toEqual(digests.filter((_, i) => i % 2).sort());
  });

  it('a malformed last is 400 DIGEST_INVALID', async () => {
    const { agent } = await registryWithReferrers(1);
    expect((await agent.get(`/v2/conf/paged/referrers/${subject.digest}?last=nope`).expect(400)).body.errors[0].code).toBe('DIGEST_INVALID');
  });
});

describe('uploads whose running hash is sha512 (?digest-algorithm=sha512)', () => {
  const data = Buffer.concat([Buffer.from('sha512 all the way '), Buffer.alloc(70_000, 7)]);

  /** Every upload mode, each ending in a PUT whose commit is watched. */
  const modes: [string, (agent: ReturnType<typeof supertest>) => Promise<string>][] = [
    [
      'monolithic POST then PUT',
      async (agent) => (await agent.post('/v2/conf/sha512/blobs/uploads/?digest-algorithm=sha512').expect(202)).headers.location,
    ],
    [
      'chunked PATCHes',
      async (agent) => {
        const location = (await agent.post('/v2/conf/sha512/blobs/uploads/?digest-algorithm=sha512').expect(202)).headers.location;
        for (let offset = 0; offset < data.length; offset += 30_000) {
          const chunk = data.subarray(offset, offset + 30_000);
          await agent.patch(location).set('Content-Type', 'application/octet-stream').set('Content-Range', `${offset}-${offset + chunk.length - 1}`).send(chunk).expect(202);
        }
        return location;
      },
    ],
    [
      'a streamed PATCH',
      async (agent) => {
        const location = (await agent.post('/v2/conf/sha512/blobs/uploads/?digest-algorithm=sha512').expect(202)).headers.location;
        await agent.patch(location).set('Content-Type', 'application/octet-stream').send(data).expect(202);
        return location;
      },
    ],
  ];

  it.each(modes)('%s: commits under the sha512 digest without reading the bytes back', async (mode, upload) => {
    const { storage, calls } = watchedStorage();
    const agent = supertest(makeApp(storage, { uploadPurging: false }));
    const location = await upload(agent);
    calls.length = 0;
    const put = agent.put(`${location}?digest=${sha512(data)}`).set('Content-Type', 'application/octet-stream');
    const res = await (mode.startsWith('monolithic') ? put.send(data) : put).expect(201);
    expect(res.headers['docker-content-digest']).toBe(sha512(data));
    expect(calls).not.toContain('readUpload');
    const blob = await agent.get(`/v2/conf/sha512/blobs/${sha512(data)}`).buffer(true).parse((stream, done) => {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => done(null, Buffer.concat(chunks)));
    }).expect(200);
    expect(Buffer.compare(blob.body as Buffer, data)).toBe(0);
  });

  it('a single POST with a sha512 digest hashes with sha512 as the bytes arrive', async () => {
    const { storage, calls } = watchedStorage();
    const agent = supertest(makeApp(storage, { uploadPurging: false }));
    await agent.post(`/v2/conf/sha512/blobs/uploads/?digest=${sha512(data)}`).set('Content-Type', 'application/octet-stream').send(data).expect(201);
    expect(calls).not.toContain('readUpload');
  });

  it('a session committed under the other algorithm is verified by reading its bytes back, both ways', async () => {
    const { storage, calls } = watchedStorage();
    const agent = supertest(makeApp(storage, { uploadPurging: false }));
    for (const [query, digest] of [['?digest-algorithm=sha512', sha256(data)], ['', sha512(data)]]) {
      const location = (await agent.post(`/v2/conf/sha512/blobs/uploads/${query}`).expect(202)).headers.location;
      await agent.patch(location).set('Content-Type', 'application/octet-stream').send(data).expect(202);
      calls.length = 0;
      await agent.put(`${location}?digest=${digest}`).expect(201);
      expect(calls).toContain('readUpload');
    }
  });

  it.each(['md5', 'sha384', 'SHA512', ''])('digest-algorithm=%s is refused with 400 before a session opens', async (algorithm) => {
    const { storage, calls } = watchedStorage();
    const agent = supertest(makeApp(storage, { uploadPurging: false }));
    const res = await agent.post(`/v2/conf/sha512/blobs/uploads/?digest-algorithm=${algorithm}`).expect(400);
    expect(res.body.errors[0].code).toBe('DIGEST_INVALID');
    expect(calls).not.toContain('createUpload');
  });
});
