/**
 * The pull-through cache against upstreams on loopback: this project's own router (plain, and
 * behind the Bearer-token example), scripted upstreams for failures, and proxies that record or
 * corrupt what the upstream sends. Every upstream request is counted at a proxy, not in the logs.
 */
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import http, { type IncomingHttpHeaders } from 'node:http';
import express from 'express';
import { Registry } from 'prom-client';
import supertest from 'supertest';
import { createRegistryRouter, MemoryStorage, type RegistryEventMap, type RegistryOptions, type RegistryRouter, type UpstreamOptions } from '../lib';
import { contentKey } from '../lib/store/paths';
import { parseDigest } from '../lib/digest';
import { registryMetrics } from '../lib/metrics';
import { createBearerAuthApp } from '../examples/bearer-auth';
import { userLine } from '../examples/basic-auth';
import { bytes, listen, sha256 } from './support/http';
import { makeImage, OCI_INDEX, OCI_MANIFEST, pushBlob, pushImage } from './support/oci';
import { startRecordingProxy, type RecordingProxy } from './support/recording-proxy';
import { useTempDir } from './support/temp-dir';

const MiB = 1024 * 1024;
type Server = Awaited<ReturnType<typeof listen>>;

interface Pulled {
  status: number;
  headers: IncomingHttpHeaders;
  digest: string;
  length: number;
  aborted: boolean;
}

/** A GET whose body is hashed as it streams; `aborted` when the connection ended before the announced length. */
function pull(url: string, headers: Record<string, string> = {}): Promise<Pulled> {
  return watchedPull(url, headers).result;
}

/** A {@link pull} that also tells how far it got: `reached(n)` resolves once `n` body bytes have arrived. */
function watchedPull(url: string, headers: Record<string, string> = {}): { result: Promise<Pulled>; received: () => number; reached: (bytes: number) => Promise<void> } {
  let length = 0;
  const waiting: { bytes: number; resolve: () => void }[] = [];
  const result = new Promise<Pulled>((resolve, reject) => {
    const req = http.get(url, { headers, agent: false }, (res) => {
      const hash = createHash('sha256');
      const finish = (aborted: boolean) => resolve({ status: res.statusCode!, headers: res.headers, digest: `sha256:${hash.digest('hex')}`, length, aborted });
      res.on('data', (chunk: Buffer) => {
        hash.update(chunk);
        length += chunk.length;
        for (const wait of waiting.filter((entry) => entry.bytes <= length)) wait.resolve();
      });
      res.once('end', () => finish(false));
      res.once('error', () => finish(true));
      res.once('aborted', () => undefined);
    });
    req.on('error', reject);
  });
  const reached = (bytes: number) => (length >= bytes ? Promise.resolve() : new Promise<void>((resolve) => waiting.push({ bytes, resolve })));
  return { result, received: () => length, reached };
}

/** Resolves once the router has announced `count` misses (`mirrorLookup` without `hit`) from now on. */
function misses(router: RegistryRouter, count: number): Promise<void> {
  let seen = 0;
  return new Promise((resolve) => router.events.on('mirrorLookup', ({ hit }) => !hit && ++seen === count && resolve()));
}

/** Collects every event of `names` the router emits. */
function record<K extends keyof RegistryEventMap>(router: RegistryRouter, ...names: K[]): { name: K; payload: RegistryEventMap[K][0] }[] {
  const seen: { name: K; payload: RegistryEventMap[K][0] }[] = [];
  for (const name of names) router.events.on(name, ((payload: RegistryEventMap[K][0]) => seen.push({ name, payload })) as never);
  return seen;
}

/** A promise with its resolver outside, to hold an upstream at a known point. */
function gate(): { opened: Promise<void>; open: () => void } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

interface Mirror {
  router: RegistryRouter;
  storage: MemoryStorage;
  server: Server;
  agent: ReturnType<typeof supertest>;
}

async function startMirror(upstreams: UpstreamOptions[], options: Pick<RegistryOptions, 'mountFromAnyRepository' | 'authorize'> = {}): Promise<Mirror> {
  const storage = new MemoryStorage();
  const router = createRegistryRouter({ storage, upstreams, uploadPurging: false, ...options });
  const app = express();
  app.use(router);
  const server = await listen(app);
  return { router, storage, server, agent: supertest(server.url) };
}

const requestsTo = (proxy: RecordingProxy, method: string, pattern: RegExp) => proxy.requests.filter((req) => req.method === method && pattern.test(req.url));

describe('a mirror of this project\'s own registry', () => {
  let upstreamRouter: RegistryRouter;
  let upstream: Server;
  let upstreamAgent: ReturnType<typeof supertest>;
  let proxy: RecordingProxy;
  let mirror: Mirror;
  /** Held by tests that need every client in before the upstream answers a blob GET. */
  let blobGate: Promise<void> | undefined;

  beforeEach(async () => {
    upstreamRouter = createRegistryRouter({ storage: new MemoryStorage(), uploadPurging: false });
    const app = express();
    app.use((req, _res, next) => {
      if (blobGate && req.method === 'GET' && /\/blobs\/sha256:/.test(req.path)) blobGate.then(() => next(), next);
      else next();
    });
    app.use(upstreamRouter);
    upstream = await listen(app);
    upstreamAgent = supertest(upstream.url);
    proxy = await startRecordingProxy(new URL(upstream.url));
    mirror = await startMirror([{ prefix: 'hub', url: proxy.url, tagTtl: 60_000 }]);
    blobGate = undefined;
  });

  afterEach(async () => {
    await mirror.server.close();
    await proxy.close();
    await upstream.close();
  });

  it('pulls an image by tag and by digest, byte-identical, fetching each manifest and blob once', async () => {
    const image = makeImage('pull-through');
    await pushImage(upstreamAgent, 'library/app', image, 'v1');
    const events = record(mirror.router, 'mirrorLookup', 'upstreamFetched');

    const byTag = await mirror.agent.get('/v2/hub/library/app/manifests/v1').expect(200);
    expect(byTag.headers['docker-content-digest']).toBe(image.digest);
    expect(byTag.headers['content-type']).toBe(OCI_MANIFEST);
    expect(byTag.text).toBe(image.manifest.toString());
    for (const blob of [image.config, ...image.layers]) {
      const got = await pull(`${mirror.server.url}/v2/hub/library/app/blobs/${sha256(blob)}`);
      expect(got).toMatchObject({ status: 200, digest: sha256(blob), length: Buffer.byteLength(blob), aborted: false });
    }
    // Everything again, by digest too: all from storage.
    const upstreamRequests = proxy.requests.length;
    await mirror.agent.get('/v2/hub/library/app/manifests/v1').expect(200);
    await mirror.agent.get(`/v2/hub/library/app/manifests/${image.digest}`).expect(200);
    for (const blob of [image.config, ...image.layers]) expect((await pull(`${mirror.server.url}/v2/hub/library/app/blobs/${sha256(blob)}`)).digest).toBe(sha256(blob));
    expect(proxy.requests.slice(upstreamRequests)).toEqual([]);

    expect(requestsTo(proxy, 'GET', /\/manifests\//).map((req) => req.url)).toEqual(['/v2/library/app/manifests/v1']);
    expect(requestsTo(proxy, 'GET', /\/blobs\//)).toHaveLength(3);
    const fetched = events.filter((event) => event.name === 'upstreamFetched').map((event) => event.payload);
    expect(fetched).toHaveLength(4);
    expect(fetched[0]).toMatchObject({ repository: 'hub/library/app', what: 'manifest', reference: 'v1', digest: image.digest, bytes: image.manifest.length, upstream: proxy.url });
    expect(fetched.every((event) => typeof (event as { ms: number }).ms === 'number')).toBe(true);
    const lookups = events.filter((event) => event.name === 'mirrorLookup').map((event) => (event.payload as { hit: boolean }).hit);
    expect(lookups.filter((hit) => !hit)).toHaveLength(4);
    expect(lookups.filter((hit) => hit)).toHaveLength(5);

    // Cached content is ordinary content.
    expect((await mirror.agent.get('/v2/hub/library/app/tags/list').expect(200)).body).toEqual({ name: 'hub/library/app', tags: ['v1'] });
    expect((await mirror.agent.get('/v2/_catalog').expect(200)).body.repositories).toEqual(['hub/library/app']);
  });

  it('fetches an index, then only the children and blobs clients ask for; referrers of cached manifests are listed', async () => {
    const [amd, arm] = [makeImage('amd64'), makeImage('arm64')];
    await pushImage(upstreamAgent, 'multi', amd);
    await pushImage(upstreamAgent, 'multi', arm);
    const index = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [amd, arm].map((image) => ({ mediaType: OCI_MANIFEST, digest: image.digest, size: image.manifest.length })),
    });
    await upstreamAgent.put('/v2/multi/manifests/latest').set('Content-Type', OCI_INDEX).send(index).expect(201);
    const signature = makeImage('signature', { subject: { mediaType: OCI_MANIFEST, digest: amd.digest, size: amd.manifest.length }, artifactType: 'application/example.sig' });
    await pushImage(upstreamAgent, 'multi', signature);

    const got = await mirror.agent.get('/v2/hub/multi/manifests/latest').expect(200);
    expect(got.text).toBe(index);
    await mirror.agent.get(`/v2/hub/multi/manifests/${amd.digest}`).expect(200);
    await mirror.agent.get(`/v2/hub/multi/manifests/${signature.digest}`).expect(200);
    expect(requestsTo(proxy, 'GET', /\/manifests\//).map((req) => req.url)).toEqual(['/v2/multi/manifests/latest', `/v2/multi/manifests/${amd.digest}`, `/v2/multi/manifests/${signature.digest}`]);
    expect(requestsTo(proxy, 'GET', /\/blobs\//)).toEqual([]);
    const referrers = await mirror.agent.get(`/v2/hub/multi/referrers/${amd.digest}`).expect(200);
    expect(referrers.body.manifests.map((entry: { digest: string }) => entry.digest)).toEqual([signature.digest]);
  });

  it('serves a tag from storage while younger than tagTtl, then asks with one HEAD and fetches only a changed digest', async () => {
    await mirror.server.close();
    mirror = await startMirror([{ prefix: 'hub/', url: proxy.url, tagTtl: 0 }]);
    const [first, second] = [makeImage('first'), makeImage('second')];
    await pushImage(upstreamAgent, 'app', first, 'v1');
    const events = record(mirror.router, 'mirrorLookup');

    expect((await mirror.agent.get('/v2/hub/app/manifests/v1').expect(200)).headers['docker-content-digest']).toBe(first.digest);
    const afterFirst = proxy.requests.length;
    expect((await mirror.agent.head('/v2/hub/app/manifests/v1').expect(200)).headers['docker-content-digest']).toBe(first.digest);
    expect(proxy.requests.slice(afterFirst).map((req) => `${req.method} ${req.url}`)).toEqual(['HEAD /v2/app/manifests/v1']);
    expect(events.at(-1)).toEqual({ name: 'mirrorLookup', payload: { repository: 'hub/app', what: 'manifest', reference: 'v1', revalidated: true, hit: true } });

    await pushImage(upstreamAgent, 'app', second, 'v1');
    const afterMove = proxy.requests.length;
    expect((await mirror.agent.get('/v2/hub/app/manifests/v1').expect(200)).headers['docker-content-digest']).toBe(second.digest);
    expect(proxy.requests.slice(afterMove).map((req) => `${req.method} ${req.url}`)).toEqual(['HEAD /v2/app/manifests/v1', 'GET /v2/app/manifests/v1']);
    // The first manifest stays, by digest, with no upstream request.
    const afterSecond = proxy.requests.length;
    await mirror.agent.get(`/v2/hub/app/manifests/${first.digest}`).expect(200);
    expect(proxy.requests.length).toBe(afterSecond);

    // Deleted upstream: gone from the mirror's tags too.
    await upstreamAgent.delete('/v2/app/manifests/v1').expect(202);
    expect((await mirror.agent.get('/v2/hub/app/manifests/v1').expect(404)).body.errors[0].code).toBe('MANIFEST_UNKNOWN');
    expect((await mirror.agent.get('/v2/hub/app/tags/list').expect(200)).body.tags).toEqual([]);
  });

  it('serves stored tags when the upstream is down, answers what is not stored with a quick 503, and passes on 404s', async () => {
    await mirror.server.close();
    mirror = await startMirror([{ prefix: 'hub/', url: proxy.url, tagTtl: 0 }]);
    const image = makeImage('down');
    await pushImage(upstreamAgent, 'app', image, 'v1');
    const uncached = await pushBlob(upstreamAgent, 'app', 'never pulled');
    await mirror.agent.get('/v2/hub/app/manifests/v1').expect(200);
    await mirror.agent.get(`/v2/hub/app/blobs/${sha256(image.layers[0])}`).expect(200);
    expect((await mirror.agent.get('/v2/hub/app/manifests/nope').expect(404)).body.errors[0].code).toBe('MANIFEST_UNKNOWN');
    expect((await mirror.agent.get(`/v2/hub/app/blobs/${sha256('nope')}`).expect(404)).body.errors[0].code).toBe('BLOB_UNKNOWN');
    const failures = record(mirror.router, 'upstreamFetched');

    await proxy.close();
    await upstream.close();
    const tag = await mirror.agent.get('/v2/hub/app/manifests/v1').expect(200);
    expect(tag.headers['docker-content-digest']).toBe(image.digest);
    await expectBlob(`${mirror.server.url}/v2/hub/app/blobs/${sha256(image.layers[0])}`, image.layers[0]);
    const started = Date.now();
    const missing = await mirror.agent.get(`/v2/hub/app/blobs/${uncached}`).expect(503);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(missing.headers['retry-after']).toBe('10');
    expect(missing.body.errors[0].code).toBe('UNKNOWN');
    expect((await mirror.agent.get('/v2/hub/app/manifests/v2').expect(503)).headers['retry-after']).toBe('10');
    expect(failures.map(({ payload }) => [payload.what, payload.reference, payload.ok, payload.servedCached])).toEqual([
      ['manifest', 'v1', false, true],
      ['blob', uncached, false, false],
      ['manifest', 'v2', false, false],
    ]);
  });

  it('links a blob already stored for another mirrored repository without asking the upstream, unless mounting from anywhere is off', async () => {
    const shared = await pushBlob(upstreamAgent, 'one', 'a layer both repositories hold');
    await pushBlob(upstreamAgent, 'two', 'a layer both repositories hold');
    await expectBlob(`${mirror.server.url}/v2/hub/one/blobs/${shared}`, 'a layer both repositories hold');
    await expectBlob(`${mirror.server.url}/v2/hub/two/blobs/${shared}`, 'a layer both repositories hold');
    expect(requestsTo(proxy, 'GET', /\/blobs\//).map((req) => req.url)).toEqual([`/v2/one/blobs/${shared}`]);

    await mirror.server.close();
    mirror = await startMirror([{ prefix: 'hub', url: proxy.url }], { mountFromAnyRepository: false });
    await expectBlob(`${mirror.server.url}/v2/hub/one/blobs/${shared}`, 'a layer both repositories hold');
    await expectBlob(`${mirror.server.url}/v2/hub/two/blobs/${shared}`, 'a layer both repositories hold');
    expect(requestsTo(proxy, 'GET', /\/blobs\//).map((req) => req.url)).toEqual([`/v2/one/blobs/${shared}`, `/v2/one/blobs/${shared}`, `/v2/two/blobs/${shared}`]);
  });

  it('asks authorize for mirrored repositories as for any other, before the upstream is asked', async () => {
    const image = makeImage('authorized');
    await pushImage(upstreamAgent, 'open', image, 'v1');
    await pushImage(upstreamAgent, 'closed', image, 'v1');
    await mirror.server.close();
    mirror = await startMirror([{ prefix: 'hub', url: proxy.url }], { authorize: (_req, { repository }) => (repository === 'hub/closed' ? 'forbidden' : true) });
    await mirror.agent.get('/v2/hub/open/manifests/v1').expect(200);
    expect((await mirror.agent.get('/v2/hub/closed/manifests/v1').expect(403)).body.errors[0].code).toBe('DENIED');
    expect(proxy.requests.map((req) => req.url)).toEqual(['/v2/open/manifests/v1']);
  });

  it('garbage collection reclaims a cached manifest the upstream no longer tags, and a later pull fetches it again', async () => {
    await mirror.server.close();
    mirror = await startMirror([{ prefix: 'hub', url: proxy.url, tagTtl: 0 }]);
    const [old, current] = [makeImage('collected'), makeImage('kept')];
    await pushImage(upstreamAgent, 'app', old, 'v1');
    await mirror.agent.get('/v2/hub/app/manifests/v1').expect(200);
    for (const blob of [old.config, ...old.layers]) await expectBlob(`${mirror.server.url}/v2/hub/app/blobs/${sha256(blob)}`, blob);
    await pushImage(upstreamAgent, 'app', current, 'v1');
    expect((await mirror.agent.get('/v2/hub/app/manifests/v1').expect(200)).headers['docker-content-digest']).toBe(current.digest);

    const report = await mirror.router.collectGarbage({ untagged: 0, grace: 0 });
    expect(report).toMatchObject({ manifestsDeleted: 1, blobLinksRemoved: 1 + old.layers.length });
    expect(await mirror.storage.statContent(contentKey(parseDigest(sha256(old.layers[0]))))).toBeUndefined();
    // The tagged manifest stays, though its blobs were never fetched (it is stored sparse).
    const before = proxy.requests.length;
    await mirror.agent.head(`/v2/hub/app/manifests/${current.digest}`).expect(200);
    expect(proxy.requests.length).toBe(before);
    // What was collected comes back from the upstream on the next request for it.
    await mirror.agent.get(`/v2/hub/app/manifests/${old.digest}`).expect(200);
    await expectBlob(`${mirror.server.url}/v2/hub/app/blobs/${sha256(old.layers[0])}`, old.layers[0]);
    expect(proxy.requests.slice(before).map((req) => `${req.method} ${req.url}`)).toEqual([
      `GET /v2/app/manifests/${old.digest}`,
      `GET /v2/app/blobs/${sha256(old.layers[0])}`,
    ]);
  });

  it('while the registry is read-only, serves what it holds (tags whatever their age) and fetches nothing', async () => {
    await mirror.server.close();
    mirror = await startMirror([{ prefix: 'hub', url: proxy.url, tagTtl: 0 }]);
    const image = makeImage('read-only');
    await pushImage(upstreamAgent, 'app', image, 'v1');
    await mirror.agent.get('/v2/hub/app/manifests/v1').expect(200);
    mirror.router.setReadOnly(true);
    const before = proxy.requests.length;
    expect((await mirror.agent.get('/v2/hub/app/manifests/v1').expect(200)).headers['docker-content-digest']).toBe(image.digest);
    const refused = await mirror.agent.get(`/v2/hub/app/blobs/${sha256(image.layers[0])}`).expect(503);
    expect([refused.headers['retry-after'], refused.body.errors[0].detail]).toEqual(['10', expect.stringMatching(/read-only/)]);
    await mirror.agent.get(`/v2/hub/app/manifests/${makeImage('other').digest}`).expect(503);
    expect(proxy.requests.length).toBe(before);
    mirror.router.setReadOnly(false);
    await expectBlob(`${mirror.server.url}/v2/hub/app/blobs/${sha256(image.layers[0])}`, image.layers[0]);
  });

  it('feeds the registry metrics: lookups by result, upstream fetches and the bytes received', async () => {
    const metrics = registryMetrics(mirror.router, { registry: new Registry() });
    const data = bytes(100_000, 9);
    const digest = await pushBlob(upstreamAgent, 'app', data);
    await proxy.close();
    await upstream.close();
    await mirror.agent.get(`/v2/hub/app/blobs/${sha256('unreachable')}`).expect(503);
    upstream = await listen(express().use(upstreamRouter));
    proxy = await startRecordingProxy(new URL(upstream.url));
    await mirror.server.close();
    mirror = await startMirror([{ prefix: 'hub', url: proxy.url }]);
    metrics.close();
    const fresh = registryMetrics(mirror.router, { registry: new Registry() });
    for (let pull = 0; pull < 2; pull++) await expectBlob(`${mirror.server.url}/v2/hub/app/blobs/${digest}`, data);
    const text = await fresh.registry.metrics();
    expect(text).toContain('oci_registry_mirror_lookups_total{what="blob",result="miss"} 1');
    expect(text).toContain('oci_registry_mirror_lookups_total{what="blob",result="hit"} 1');
    expect(text).toContain('oci_registry_upstream_fetches_total{what="blob",result="ok"} 1');
    expect(text).toContain('oci_registry_upstream_received_bytes_total{what="blob"} 100000');
    const failed = await metrics.registry.metrics();
    expect(failed).toMatch(/oci_registry_upstream_fetches_total\{what="blob",result="[a-z]+"\} 1/);
    expect(failed).not.toContain('oci_registry_upstream_fetches_total{what="blob",result="ok"}');
    fresh.close();
  });

  it('refuses pushes into a mirrored prefix with 405 UNSUPPORTED, and accepts them with allowPush (never revalidated)', async () => {
    const image = makeImage('local');
    const refused = await mirror.agent.post('/v2/hub/app/blobs/uploads/').expect(405);
    expect(refused.body.errors[0].code).toBe('UNSUPPORTED');
    await mirror.agent.put('/v2/hub/app/manifests/v1').set('Content-Type', OCI_MANIFEST).send(image.manifest.toString()).expect(405);
    await pushImage(mirror.agent, 'local/app', image, 'v1');

    await mirror.server.close();
    mirror = await startMirror([{ prefix: '', url: proxy.url, tagTtl: 0, allowPush: true }]);
    await pushImage(mirror.agent, 'mine', image, 'v1');
    await mirror.agent.get('/v2/mine/manifests/v1').expect(200);
    expect(proxy.requests).toEqual([]);
  });

  it('answers HEAD on an uncached blob with the upstream\'s size, and a Range of an uncached blob from the download', async () => {
    const data = bytes(3 * MiB + 5, 7);
    const digest = await pushBlob(upstreamAgent, 'app', data);
    const head = await mirror.agent.head(`/v2/hub/app/blobs/${digest}`).expect(200);
    expect(head.headers['content-length']).toBe(String(data.length));
    expect(requestsTo(proxy, 'HEAD', /\/blobs\//)).toHaveLength(1);
    expect(await mirror.storage.statContent(contentKey(parseDigest(digest)))).toBeUndefined();

    const range = await pull(`${mirror.server.url}/v2/hub/app/blobs/${digest}`, { Range: 'bytes=1048570-2097160' });
    expect(range).toMatchObject({ status: 206, digest: sha256(data.subarray(1048570, 2097161)), aborted: false });
    expect(range.headers['content-range']).toBe(`bytes 1048570-2097160/${data.length}`);
    // The download went on into storage: the whole blob is there now.
    await waitForStored(mirror, digest);
    const whole = await pull(`${mirror.server.url}/v2/hub/app/blobs/${digest}`);
    expect(whole).toMatchObject({ status: 200, digest, length: data.length });
    expect(requestsTo(proxy, 'GET', /\/blobs\//)).toHaveLength(1);
  });

  it('20 clients pulling one 64 MiB blob at once cause exactly one upstream GET, and all get it whole', async () => {
    const data = randomBytes(64 * MiB);
    const digest = await pushBlob(upstreamAgent, 'big', data);
    const held = gate();
    blobGate = held.opened;
    const misses = record(mirror.router, 'mirrorLookup');
    let joined = 0;
    const allJoined = new Promise<void>((resolve) => mirror.router.events.on('mirrorLookup', ({ hit }) => !hit && ++joined === 20 && resolve()));
    const pulls = Array.from({ length: 20 }, () => pull(`${mirror.server.url}/v2/hub/big/blobs/${digest}`));
    await allJoined;
    held.open();
    const results = await Promise.all(pulls);
    for (const result of results) expect(result).toMatchObject({ status: 200, digest, length: data.length, aborted: false });
    expect(requestsTo(proxy, 'GET', /\/blobs\//).map((req) => req.url)).toEqual([`/v2/big/blobs/${digest}`]);
    expect(misses).toHaveLength(20);
    await waitForStored(mirror, digest);
  }, 60_000);

  it('a client leaving mid-pull does not stop the download the others read', async () => {
    const data = randomBytes(16 * MiB);
    const digest = await pushBlob(upstreamAgent, 'app', data);
    const held = gate();
    blobGate = held.opened;
    let joined = 0;
    const allJoined = new Promise<void>((resolve) => mirror.router.events.on('mirrorLookup', ({ hit }) => !hit && ++joined === 2 && resolve()));
    const leaving = new Promise<number>((resolve) => {
      const req = http.get(`${mirror.server.url}/v2/hub/app/blobs/${digest}`, { agent: false }, (res) => {
        res.once('data', (chunk: Buffer) => {
          req.destroy();
          resolve(chunk.length);
        });
      });
      req.on('error', () => undefined);
    });
    const staying = pull(`${mirror.server.url}/v2/hub/app/blobs/${digest}`);
    await allJoined;
    held.open();
    expect(await leaving).toBeGreaterThan(0);
    expect(await staying).toMatchObject({ status: 200, digest, length: data.length, aborted: false });
    await waitForStored(mirror, digest);
    expect(requestsTo(proxy, 'GET', /\/blobs\//)).toHaveLength(1);
  });

  it('a client that stops reading does not hold up the others: it gets the rest from storage when it reads again', async () => {
    const data = randomBytes(32 * MiB);
    const digest = await pushBlob(upstreamAgent, 'app', data);
    const held = gate();
    blobGate = held.opened;
    const joined = misses(mirror.router, 2);
    const storageReads = jest.spyOn(mirror.storage, 'readContent');
    let resumeSlow!: () => void;
    const slow = new Promise<Pulled>((resolve, reject) => {
      http
        .get(`${mirror.server.url}/v2/hub/app/blobs/${digest}`, { agent: false }, (res) => {
          const hash = createHash('sha256');
          let length = 0;
          res.on('data', (chunk: Buffer) => {
            hash.update(chunk);
            length += chunk.length;
          });
          res.once('data', () => res.pause());
          resumeSlow = () => res.resume();
          res.once('end', () => resolve({ status: res.statusCode!, headers: res.headers, digest: `sha256:${hash.digest('hex')}`, length, aborted: false }));
          res.once('error', reject);
        })
        .on('error', reject);
    });
    const fast = pull(`${mirror.server.url}/v2/hub/app/blobs/${digest}`);
    await joined;
    held.open();
    expect(await fast).toMatchObject({ status: 200, digest, length: data.length, aborted: false });
    resumeSlow();
    expect(await slow).toMatchObject({ status: 200, digest, length: data.length });
    // It stopped reading along once it was too far behind, and the rest came from storage (the
    // fast one too may have, on a busy machine).
    const resumed = storageReads.mock.calls.map(([, range]) => range).filter((range) => range && range.start > 0);
    expect(resumed).toContainEqual({ start: expect.any(Number), end: data.length - 1 });
    expect(requestsTo(proxy, 'GET', /\/blobs\//)).toHaveLength(1);
  });
});

describe('a mirror in front of a corrupting upstream', () => {
  it('stores nothing and aborts the client\'s connection when one byte is flipped', async () => {
    const upstreamRouter = createRegistryRouter({ storage: new MemoryStorage(), uploadPurging: false });
    const upstream = await listen(express().use(upstreamRouter));
    const data = bytes(2 * MiB, 3);
    const digest = await pushBlob(supertest(upstream.url), 'app', data);
    const small = bytes(MiB + 100, 4).subarray(MiB - 10);
    const smallDigest = await pushBlob(supertest(upstream.url), 'app', small);
    // Forwards everything, flipping the byte at one offset of every blob body.
    const corrupting = await listen((req, res) => {
      const forwarded = http.request(`${upstream.url}${req.url}`, { method: req.method, headers: req.headers, agent: false }, (upstreamRes) => {
        res.writeHead(upstreamRes.statusCode!, upstreamRes.headers);
        let offset = 0;
        upstreamRes.on('data', (chunk: Buffer) => {
          const at = 50 - offset;
          if (at >= 0 && at < chunk.length) chunk[at] ^= 0xff;
          offset += chunk.length;
          res.write(chunk);
        });
        upstreamRes.on('end', () => res.end());
      });
      req.pipe(forwarded);
    });
    const mirror = await startMirror([{ prefix: 'hub/', url: corrupting.url }]);
    const failures = record(mirror.router, 'upstreamFetched', 'blobCommitted');
    try {
      const got = await pull(`${mirror.server.url}/v2/hub/app/blobs/${digest}`);
      expect(got.status).toBe(200);
      expect(got.aborted).toBe(true);
      expect(got.length).toBeLessThan(data.length);
      expect(await mirror.storage.statContent(contentKey(parseDigest(digest)))).toBeUndefined();
      expect(await mirror.storage.listDocuments('uploads/')).toEqual([]);
      await mirror.agent.head(`/v2/hub/app/blobs/${digest}`).expect(200);
      expect(await mirror.storage.listDocuments('repositories/hub/app/_blobs/')).toEqual([]);
      expect(failures.map((event) => [event.name, (event.payload as { ok: boolean }).ok])).toEqual([['upstreamFetched', false]]);
      expect((failures[0].payload as { error: string }).error).toMatch(/sha256:[0-9a-f]{64}/);

      // A blob of one chunk: its response has not begun when the mismatch shows, so it is a 502.
      const refused = await mirror.agent.get(`/v2/hub/app/blobs/${smallDigest}`).expect(502);
      expect(refused.body.errors[0].detail).toMatch(/do not match/);
      expect(refused.headers['docker-content-digest']).toBeUndefined();
      expect(await mirror.storage.statContent(contentKey(parseDigest(smallDigest)))).toBeUndefined();
    } finally {
      await mirror.server.close();
      await corrupting.close();
      await upstream.close();
    }
  });
});

describe('a mirror of scripted upstreams', () => {
  let servers: Server[];
  beforeEach(() => (servers = []));
  afterEach(async () => {
    for (const server of servers) await server.close();
  });

  async function scripted(handler: http.RequestListener): Promise<Server> {
    const server = await listen(handler);
    servers.push(server);
    return server;
  }

  it('readers joining a download in progress: within its first MiBs they read along, later ones get the blob from storage once stored', async () => {
    const data = randomBytes(12 * MiB);
    const digest = sha256(data);
    const [first, second] = [gate(), gate()];
    let gets = 0;
    // Sends 1 MiB, then 3 more once `first` opens, then the rest once `second` does.
    const upstream = await scripted((req, res) => {
      if (req.url !== `/v2/app/blobs/${digest}`) return void res.writeHead(404).end();
      gets++;
      res.writeHead(200, { 'Content-Length': data.length, 'Docker-Content-Digest': digest });
      res.write(data.subarray(0, MiB));
      void first.opened.then(() => res.write(data.subarray(MiB, 4 * MiB)));
      void second.opened.then(() => res.end(data.subarray(4 * MiB)));
    });
    const mirror = await startMirror([{ prefix: 'hub', url: upstream.url }]);
    servers.push(mirror.server);
    const storageReads = jest.spyOn(mirror.storage, 'readContent');
    const url = `${mirror.server.url}/v2/hub/app/blobs/${digest}`;
    const leader = watchedPull(url);
    await leader.reached(MiB / 2);
    const early = watchedPull(url);
    await misses(mirror.router, 1);
    first.open();
    await Promise.all([leader.reached(3.5 * MiB), early.reached(3.5 * MiB)]);
    const late = watchedPull(url);
    await misses(mirror.router, 1);
    expect(late.received()).toBe(0);
    second.open();
    for (const reader of [leader, early, late]) expect(await reader.result).toMatchObject({ status: 200, digest, length: data.length, aborted: false });
    expect(gets).toBe(1);
    expect(storageReads.mock.calls.map(([, range]) => range)).toEqual([{ start: 0, end: data.length - 1 }]);
  });

  it('gives up on an upstream that does not answer within timeout: a stored tag is served, the rest is a 503', async () => {
    let stalled = false;
    const app = express();
    // A stalled upstream accepts the connection and never answers.
    app.use((_req, _res, next) => void (stalled || next()));
    app.use(createRegistryRouter({ storage: new MemoryStorage(), uploadPurging: false }));
    const upstream = await scripted(app);
    const image = makeImage('stalled');
    await pushImage(supertest(upstream.url), 'app', image, 'v1');
    const uncached = await pushBlob(supertest(upstream.url), 'app', 'never pulled');
    const mirror = await startMirror([{ prefix: 'hub', url: upstream.url, tagTtl: 0, timeout: 300 }]);
    servers.push(mirror.server);
    await mirror.agent.get('/v2/hub/app/manifests/v1').expect(200);
    stalled = true;
    const failures = record(mirror.router, 'upstreamFetched');
    expect((await mirror.agent.get('/v2/hub/app/manifests/v1').expect(200)).headers['docker-content-digest']).toBe(image.digest);
    const missing = await mirror.agent.get(`/v2/hub/app/blobs/${uncached}`).expect(503);
    expect(missing.body.errors[0].detail).toMatch(/no answer for 300 ms/);
    expect(failures.map(({ payload }) => [payload.what, payload.ok, payload.servedCached])).toEqual([
      ['manifest', false, true],
      ['blob', false, false],
    ]);
  });

  it('passes on 429 TOOMANYREQUESTS with the upstream\'s Retry-After, and a 5xx as 502', async () => {
    const limited = await scripted((_req, res) => res.writeHead(429, { 'Retry-After': '42' }).end());
    const failing = await scripted((_req, res) => res.writeHead(500).end());
    const mirror = await startMirror([
      { prefix: 'limited', url: limited.url },
      { prefix: 'failing', url: failing.url },
    ]);
    servers.push(mirror.server);
    const answer = await mirror.agent.get('/v2/limited/app/manifests/v1').expect(429);
    expect(answer.body.errors[0].code).toBe('TOOMANYREQUESTS');
    expect(answer.headers['retry-after']).toBe('42');
    expect((await mirror.agent.get(`/v2/failing/app/blobs/${sha256('x')}`).expect(502)).headers['retry-after']).toBe('10');
  });

  it('tries the next URL when one is down', async () => {
    const upstream = await scripted(express().use(createRegistryRouter({ storage: new MemoryStorage(), uploadPurging: false })));
    const digest = await pushBlob(supertest(upstream.url), 'app', 'failover');
    const down = await scripted((_req, res) => res.destroy());
    const mirror = await startMirror([{ prefix: 'hub', urls: [down.url, upstream.url] }]);
    servers.push(mirror.server);
    await expectBlob(`${mirror.server.url}/v2/hub/app/blobs/${digest}`, 'failover');
  });

  it('follows the Bearer token flow of the example token server: a token per scope, fetched once with the credentials, reused', async () => {
    const root = tempDir();
    let upstream!: Server;
    const signingKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    /** Token requests the upstream's realm received, with the user they authenticated as. */
    const tokenRequests: string[] = [];
    upstream = await scripted((req, res) => {
      if (req.url?.startsWith('/token')) tokenRequests.push(`${Buffer.from((req.headers.authorization ?? '').slice(6), 'base64').toString().split(':')[0]} ${req.url}`);
      app(req, res);
    });
    const app = createBearerAuthApp({ root, usersText: userLine('mirror', 'mirror secret'), signingKey, publicUrl: upstream.url });
    const token = async (scope: string) => {
      const answer = await supertest(upstream.url).get('/token').query({ scope }).auth('mirror', 'mirror secret').expect(200);
      return answer.body.token as string;
    };
    const image = makeImage('token');
    const pushToken = await token('repository:mirror/app:pull,push');
    const authorized = supertest.agent(upstream.url).set('Authorization', `Bearer ${pushToken}`);
    await pushImage(authorized, 'mirror/app', image, 'v1');
    tokenRequests.length = 0;
    const proxy = await startRecordingProxy(new URL(upstream.url));
    const mirror = await startMirror([{ prefix: 'hub', url: proxy.url, auth: { username: 'mirror', password: 'mirror secret' } }]);
    servers.push(mirror.server);
    try {
      const manifest = await mirror.agent.get('/v2/hub/mirror/app/manifests/v1').expect(200);
      expect(manifest.headers['docker-content-digest']).toBe(image.digest);
      await Promise.all([image.config, ...image.layers].map((blob) => expectBlob(`${mirror.server.url}/v2/hub/mirror/app/blobs/${sha256(blob)}`, blob)));
      expect(tokenRequests).toEqual(['mirror /token?service=example-registry&scope=repository%3Amirror%2Fapp%3Apull']);
      expect(proxy.requests.filter((req) => req.url.startsWith('/v2/') && req.status === 401)).toHaveLength(1);

      const wrong = await startMirror([{ prefix: 'hub', url: proxy.url, auth: { username: 'mirror', password: 'wrong' } }]);
      servers.push(wrong.server);
      const refused = await wrong.agent.get('/v2/hub/mirror/app/manifests/v1').expect(502);
      expect(refused.body.errors[0].detail).toMatch(/token/);
    } finally {
      await proxy.close();
    }
  });

  const tempDir = useTempDir('oci-mirror-');
});

/** GETs a blob and checks that it comes back whole and byte-identical. */
async function expectBlob(url: string, data: Buffer | string): Promise<void> {
  expect(await pull(url)).toMatchObject({ status: 200, digest: sha256(data), length: Buffer.byteLength(data), aborted: false });
}

/** Resolves once the mirror has stored `digest` (the download continues after the responses end). */
async function waitForStored(mirror: Mirror, digest: string): Promise<void> {
  const fetched = new Promise<void>((resolve) => mirror.router.events.on('upstreamFetched', (event) => event.ok && event.digest === digest && resolve()));
  if (await mirror.storage.statContent(contentKey(parseDigest(digest)))) return;
  await fetched;
}
