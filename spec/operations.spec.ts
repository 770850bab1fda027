/**
 * What an operator sees and switches: the per-request access log (`requestCompleted`,
 * `onRequest`), read-only mode, `router.health()`, storage errors as events, and the Prometheus
 * metrics of `express-oci-registry/metrics` read back through a strict text-format parser.
 */
import express from 'express';
import { Registry } from 'prom-client';
import supertest from 'supertest';
import { createRegistryRouter, MemoryStorage, type RegistryRouter, type RequestInfo, type StorageAdapter, type StorageErrorEvent } from '../lib';
import { registryMetrics } from '../lib/metrics';
import type { HttpMethod } from '../lib/context';
import { bytes, sha256 } from './support/http';
import { makeImage, OCI_MANIFEST, pushBlob, pushImage } from './support/oci';
import { parsePrometheusText } from './support/prometheus-text';
import { waitFor } from './support/streaming';

function setUp(options: Partial<Parameters<typeof createRegistryRouter>[0]> = {}) {
  const registry = createRegistryRouter({ storage: new MemoryStorage(), uploadPurging: false, ...options });
  const requests: RequestInfo[] = [];
  registry.events.on('requestCompleted', (info) => requests.push(info));
  const app = express();
  app.use(registry);
  return { registry, app, agent: supertest(app), requests };
}

/** Waits for `count` requests to have been reported (the report follows the response's end). */
const reported = (requests: RequestInfo[], count: number) => waitFor(`${count} requests reported`, async () => requests.length, (n) => n >= count);

describe('the access log: requestCompleted and onRequest', () => {
  it('reports route, repository, status, body bytes each way and time for a push, a pull, a HEAD and a stray path', async () => {
    const onRequest = jest.fn<void, [RequestInfo]>();
    const { agent, requests } = setUp({ onRequest });
    const data = bytes(70_000, 3);
    await pushBlob(agent, 'ops/app', data);
    await agent.get(`/v2/ops/app/blobs/${sha256(data)}`).expect(200);
    await agent.head(`/v2/ops/app/blobs/${sha256(data)}`).expect(200);
    const stray = await agent.get('/v2/ops/app/nothing-here').expect(404);
    await reported(requests, 4);

    const [push, pull, head, unknown] = requests;
    expect(push).toMatchObject({ route: 'upload', method: 'POST', status: 201, repository: 'ops/app', bytesReceived: data.length, bytesSent: 0, aborted: false });
    expect(pull).toMatchObject({ route: 'blob', method: 'GET', status: 200, repository: 'ops/app', bytesReceived: 0, bytesSent: data.length, aborted: false });
    expect(head).toMatchObject({ route: 'blob', method: 'HEAD', status: 200, bytesSent: 0 });
    expect(unknown).toMatchObject({ route: 'unknown', status: 404, repository: undefined, bytesSent: Buffer.byteLength(stray.text) });
    for (const info of requests) expect(info.ms).toBeGreaterThanOrEqual(0);
    expect(onRequest.mock.calls.map(([info]) => info)).toEqual(requests);
  });
});

describe('read-only mode', () => {
  /** A request for every write route × method; the test fails when a route gains a write method missing here. */
  function writes(uploadId: string, digest: string): Record<string, { method: HttpMethod; path: string }[]> {
    return {
      upload: [
        { method: 'POST', path: '/v2/ro/app/blobs/uploads/' },
        { method: 'PATCH', path: `/v2/ro/app/blobs/uploads/${uploadId}` },
        { method: 'PUT', path: `/v2/ro/app/blobs/uploads/${uploadId}?digest=${digest}` },
        { method: 'DELETE', path: `/v2/ro/app/blobs/uploads/${uploadId}` },
      ],
      blob: [{ method: 'DELETE', path: `/v2/ro/app/blobs/${digest}` }],
      manifest: [
        { method: 'PUT', path: '/v2/ro/app/manifests/v2' },
        { method: 'DELETE', path: '/v2/ro/app/manifests/v1' },
      ],
    };
  }

  it('answers every write route × method with 405 UNSUPPORTED while reads go on, and writes again once switched back', async () => {
    const { registry, agent } = setUp();
    const image = makeImage('read-only');
    await pushImage(agent, 'ro/app', image, 'v1');
    const session = await agent.post('/v2/ro/app/blobs/uploads/').expect(202);
    const uploadId = String(session.headers['docker-upload-uuid']);
    const layer = sha256(image.layers[0]);
    const table = writes(uploadId, layer);
    const covered = Object.values(table).flat();

    // Every write method of each route written to is in the table. A route is known by its path up
    // to the last `/` and by the `Allow` of the 405 a method it does not serve gets.
    const routeOf = async (path: string) => {
      const bare = path.split('?')[0];
      return `${bare.slice(0, bare.lastIndexOf('/'))} ${String((await agent.options(bare)).headers.allow)}`;
    };
    const routes = new Map<string, string>();
    for (const entry of covered) routes.set(entry.path, await routeOf(entry.path));
    for (const route of new Set(routes.values())) {
      const writeMethods = route.split(' ').slice(1).join(' ').split(', ').filter((method) => method !== 'GET' && method !== 'HEAD');
      for (const method of writeMethods) {
        expect(`${method} ${route}: ${covered.some((entry) => entry.method === method && routes.get(entry.path) === route) ? 'covered' : 'missing'}`).toBe(`${method} ${route}: covered`);
      }
    }

    registry.setReadOnly(true);
    expect(registry.isReadOnly()).toBe(true);
    for (const { method, path } of covered) {
      const response = await agent[method.toLowerCase() as 'post'](path).set('Content-Type', method === 'PUT' && path.includes('manifests') ? OCI_MANIFEST : 'application/octet-stream').send(method === 'PUT' && path.includes('manifests') ? image.manifest.toString() : 'some bytes');
      expect({ method, path, status: response.status }).toEqual({ method, path, status: 405 });
      expect(response.body.errors[0].code).toBe('UNSUPPORTED');
      expect(response.body.errors[0].detail).toMatch(new RegExp(`read-only.*${method} is refused`));
      expect(response.headers.allow).not.toMatch(/POST|PUT|PATCH|DELETE/);
    }
    // Reads go on, and nothing was changed by the refused writes.
    await agent.get('/v2/ro/app/manifests/v1').expect(200);
    await agent.get(`/v2/ro/app/blobs/${layer}`).expect(200);
    await agent.get('/v2/ro/app/tags/list').expect(200, { name: 'ro/app', tags: ['v1'] });
    await agent.get('/v2/_catalog').expect(200, { repositories: ['ro/app'] });
    await agent.get(`/v2/ro/app/blobs/uploads/${uploadId}`).expect(204);
    await agent.get('/v2/').expect(200);
    await agent.get('/v2/ro/app/manifests/v2').expect(404);

    registry.setReadOnly(false);
    await agent.patch(`/v2/ro/app/blobs/uploads/${uploadId}`).set('Content-Type', 'application/octet-stream').send('tail').expect(202);
    await agent.put(`/v2/ro/app/blobs/uploads/${uploadId}?digest=${sha256('tail')}`).expect(201);
    await agent.put('/v2/ro/app/manifests/v2').set('Content-Type', OCI_MANIFEST).send(image.manifest.toString()).expect(201);
    await agent.delete('/v2/ro/app/manifests/v1').expect(202);
  });

  it('asks a function on every request, so the host switches the mode without a restart', async () => {
    let draining = true;
    const { agent, registry } = setUp({ readOnly: () => draining });
    await agent.post('/v2/ro/fn/blobs/uploads/').expect(405);
    expect(registry.isReadOnly()).toBe(true);
    draining = false;
    await agent.post('/v2/ro/fn/blobs/uploads/').expect(202);
    expect(registry.isReadOnly()).toBe(false);
  });
});

/** MemoryStorage whose document reads fail (or never answer) while `broken` says so. */
function flakyStorage(failure: () => Error | 'hang' | undefined): StorageAdapter {
  const storage = new MemoryStorage();
  const getDocument = storage.getDocument.bind(storage);
  storage.getDocument = (key: string) => {
    const error = failure();
    if (error === 'hang') return new Promise(() => undefined);
    return error ? Promise.reject(error) : getDocument(key);
  };
  return storage;
}

describe('router.health() and storage errors', () => {
  it('resolves while storage answers, rejects with its reason when it fails or hangs, and reports each failure as a storageError', async () => {
    let failure: Error | 'hang' | undefined;
    const registry: RegistryRouter = createRegistryRouter({ storage: flakyStorage(() => failure), uploadPurging: false });
    const errors: StorageErrorEvent[] = [];
    registry.events.on('storageError', (event) => errors.push(event));
    await expect(registry.health()).resolves.toBeUndefined();

    failure = Object.assign(new Error('permission denied, open documents/_health/probe'), { code: 'EACCES' });
    await expect(registry.health()).rejects.toThrow('permission denied');
    failure = new Error('the object store is gone');
    await expect(registry.health()).rejects.toThrow('the object store is gone');
    failure = 'hang';
    await expect(registry.health(50)).rejects.toThrow('storage did not answer within 50 ms');
    failure = undefined;
    await expect(registry.health()).resolves.toBeUndefined();
    expect(errors.map(({ operation, kind }) => ({ operation, kind }))).toEqual([
      { operation: 'getDocument', kind: 'EACCES' },
      { operation: 'getDocument', kind: 'other' },
    ]);
    await registry.close();
  });
});

describe('Prometheus metrics', () => {
  async function scrape(app: express.Express) {
    const response = await supertest(app).get('/metrics').expect(200);
    expect(response.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    return parsePrometheusText(response.text);
  }

  function withMetrics(repositoryLabels = false) {
    const setup = setUp();
    const metrics = registryMetrics(setup.registry, { registry: new Registry(), repositoryLabels });
    setup.app.get('/metrics', metrics.handler);
    return { ...setup, metrics };
  }

  it('counts requests, bytes, commits, mounts, manifests and deletes by the right amounts', async () => {
    const { app, agent, requests } = withMetrics();
    const image = makeImage('metrics', {}, 3);
    const blobs = [image.config, ...image.layers];
    const blobBytes = blobs.reduce((sum, blob) => sum + Buffer.byteLength(blob), 0);
    await pushImage(agent, 'm/app', image, 'v1');
    for (const blob of blobs) await agent.get(`/v2/m/app/blobs/${sha256(blob)}`).expect(200);
    await agent.get('/v2/m/app/manifests/v1').expect(200);
    await agent.post(`/v2/m/other/blobs/uploads/?mount=${sha256(image.config)}&from=m/app`).expect(201);
    await agent.delete('/v2/m/app/manifests/v1').expect(202);
    await agent.get('/v2/m/app/manifests/v1').expect(404);
    await reported(requests, blobs.length * 2 + 5);

    const metrics = await scrape(app);
    expect(metrics.types.get('oci_registry_requests_total')).toBe('counter');
    expect(metrics.types.get('oci_registry_request_duration_seconds')).toBe('histogram');
    expect(metrics.value('oci_registry_requests_total', { route: 'upload', method: 'POST', status: '201' })).toBe(blobs.length + 1);
    expect(metrics.value('oci_registry_requests_total', { route: 'blob', method: 'GET', status: '200' })).toBe(blobs.length);
    expect(metrics.value('oci_registry_requests_total', { route: 'manifest', method: 'GET', status: '404' })).toBe(1);
    expect(metrics.value('oci_registry_request_duration_seconds_count', { route: 'blob', method: 'GET' })).toBe(blobs.length);
    expect(metrics.value('oci_registry_received_bytes_total', { route: 'upload' })).toBe(blobBytes);
    expect(metrics.value('oci_registry_received_bytes_total', { route: 'manifest' })).toBe(image.manifest.length);
    expect(metrics.value('oci_registry_sent_bytes_total', { route: 'blob' })).toBe(blobBytes);
    expect(metrics.value('oci_registry_blob_commits_total')).toBe(blobs.length);
    expect(metrics.value('oci_registry_blob_committed_bytes_total')).toBe(blobBytes);
    expect(metrics.value('oci_registry_blob_verify_duration_seconds_count')).toBe(blobs.length);
    expect(metrics.value('oci_registry_upload_sessions_started_total')).toBe(blobs.length);
    expect(metrics.value('oci_registry_upload_sessions_ended_total', { outcome: 'committed' })).toBe(blobs.length);
    expect(metrics.value('oci_registry_blob_mounts_total')).toBe(1);
    expect(metrics.value('oci_registry_manifests_pushed_total')).toBe(1);
    expect(metrics.value('oci_registry_deletes_total', { what: 'tag' })).toBe(1);
    expect(metrics.value('oci_registry_deletes_total', { what: 'manifest' })).toBe(0);
    expect(metrics.value('oci_registry_requests_in_flight')).toBe(0);
    // No repository names unless asked for.
    expect(metrics.samples.some((sample) => 'repository' in sample.labels)).toBe(false);
  });

  it('labels by repository only when the host opts in', async () => {
    const { app, agent, requests } = withMetrics(true);
    await pushBlob(agent, 'one/app', 'one');
    await pushBlob(agent, 'two/app', 'second');
    await reported(requests, 2);
    const metrics = await scrape(app);
    expect(metrics.value('oci_registry_received_bytes_total', { route: 'upload', repository: 'one/app' })).toBe(3);
    expect(metrics.value('oci_registry_received_bytes_total', { route: 'upload', repository: 'two/app' })).toBe(6);
    expect(metrics.value('oci_registry_blob_commits_total', { repository: 'two/app' })).toBe(1);
  });

  it('counts garbage collections and what they freed, from the collector’s own report', async () => {
    const { app, agent, registry } = withMetrics();
    const image = makeImage('collected');
    await pushImage(agent, 'gc/app', image);
    await agent.delete(`/v2/gc/app/manifests/${image.digest}`).expect(202);
    const dry = await registry.collectGarbage({ grace: 0, dryRun: true });
    const report = await registry.collectGarbage({ grace: 0 });
    expect(report.contentDeleted).toBe(3);
    expect(report.bytesFreed).toBeGreaterThan(0);
    expect(dry.bytesFreed).toBe(report.bytesFreed);

    const scraped = await scrape(app);
    expect(scraped.value('oci_registry_gc_runs_total', { mode: 'run' })).toBe(1);
    expect(scraped.value('oci_registry_gc_runs_total', { mode: 'dry_run' })).toBe(1);
    expect(scraped.value('oci_registry_gc_freed_bytes_total')).toBe(report.bytesFreed);
    expect(scraped.value('oci_registry_gc_removed_blobs_total')).toBe(3);
    expect(scraped.value('oci_registry_gc_deleted_manifests_total')).toBe(report.manifestsDeleted);
  });

  it('counts purger runs, storage errors, and the mirror events the pull-through cache emits', async () => {
    let failure: Error | undefined;
    const registry = createRegistryRouter({ storage: flakyStorage(() => failure), uploadPurging: false });
    const metrics = registryMetrics(registry, { registry: new Registry() });
    const app = express();
    app.get('/metrics', metrics.handler);
    await registry.purgeStaleUploads();
    failure = Object.assign(new Error('no space'), { code: 'ENOSPC' });
    await expect(registry.health()).rejects.toThrow('no space');
    registry.events.notify('upstreamFetched', { repository: 'm/mirror', what: 'blob', bytes: 1234, ms: 40, ok: true });
    registry.events.notify('mirrorLookup', { repository: 'm/mirror', what: 'blob', hit: false });
    registry.events.notify('mirrorLookup', { repository: 'm/mirror', what: 'manifest', hit: true });

    const scraped = await scrape(app);
    expect(scraped.value('oci_registry_purger_runs_total', { result: 'ok' })).toBe(1);
    expect(scraped.value('oci_registry_storage_errors_total', { operation: 'getDocument', kind: 'ENOSPC' })).toBe(1);
    expect(scraped.value('oci_registry_upstream_fetches_total', { what: 'blob', result: 'ok' })).toBe(1);
    expect(scraped.value('oci_registry_upstream_received_bytes_total', { what: 'blob' })).toBe(1234);
    expect(scraped.value('oci_registry_mirror_lookups_total', { result: 'miss' })).toBe(1);
    expect(scraped.value('oci_registry_mirror_lookups_total', { result: 'hit' })).toBe(1);

    metrics.close();
    registry.events.notify('mirrorLookup', { repository: 'm/mirror', what: 'blob', hit: true });
    expect((await scrape(app)).value('oci_registry_mirror_lookups_total', { result: 'hit' })).toBe(1);
  });

  it('the strict parser refuses what the format does not allow', () => {
    const valid = '# HELP a_total A.\n# TYPE a_total counter\na_total{x="1"} 3\n';
    expect(parsePrometheusText(valid).value('a_total')).toBe(3);
    for (const broken of [
      valid.trimEnd(),
      valid.replace('# TYPE a_total counter\n', ''),
      valid.replace('{x="1"}', '{x=1}'),
      valid.replace(' 3', ' three'),
      `${valid}a_total{x="1"} 4\n`,
      '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_count 1\nh_sum 0\n',
    ]) {
      expect(() => parsePrometheusText(broken)).toThrow();
    }
  });
});
