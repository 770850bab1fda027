/**
 * Webhook notifications: the envelopes (the reference registry's and CloudEvents), and delivery
 * that is never lost: a sink that fails and is down for a while, an endpoint down beside a
 * healthy one, two instances on one storage, and a registry process SIGKILLed with events in
 * its outbox and restarted. Each ends with every event delivered at least once, each id seen,
 * and each repository's events first seen in the order they happened.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import supertest from 'supertest';
import { createRegistryRouter, FileSystemStorage, MemoryStorage, type NotificationEndpoint, type RegistryRouter, type StorageAdapter } from '../lib';
import { CLOUDEVENTS_JSON, DISTRIBUTION_EVENTS } from '../lib/notifications/formats';
import { registryMetrics } from '../lib/metrics';
import { Lease } from '../lib/notifications/lease';
import { S3Storage } from '../lib/storage/s3';
import { Registry } from 'prom-client';
import { startChild, type ChildServer } from './support/child-server';
import { request, sha256 } from './support/http';
import { makeImage, OCI_MANIFEST, pushBlob, pushImage, type TestImage } from './support/oci';
import { parsePrometheusText, type Scrape } from './support/prometheus-text';
import { ensureBucket, s3Settings, s3TestStorage, S3_SKIP_REASON } from './support/s3';
import { waitFor } from './support/streaming';
import { startWebhookSink, type Delivery, type WebhookSink } from './support/webhook-sink';

/** Retries quick enough for a test; the behaviour is the default's. */
const QUICK: Partial<NotificationEndpoint> = { backoff: { initial: 10, max: 200 }, pollInterval: 100, timeout: 2000 };
/** Never polls within a test: everything must be delivered because recording it woke the delivery. */
const WOKEN: Partial<NotificationEndpoint> = { ...QUICK, pollInterval: 600_000 };

interface SentEvent {
  id: string;
  action: string;
  target: { repository: string; digest?: string; tag?: string; mediaType?: string; size?: number; length?: number; fromRepository?: string };
  timestamp: string;
  request?: { id: string; addr: string; host: string; method: string; useragent: string };
  source: { addr: string; instanceID: string };
}

/** The events of every envelope the sink accepted, in arrival order. */
function sentEvents(sink: WebhookSink): SentEvent[] {
  return sink.accepted.flatMap((delivery) => (delivery.body as { events: SentEvent[] }).events);
}

/** What an event says happened, to compare with what the test did. */
const signature = (event: SentEvent) => `${event.action} ${event.target.repository} ${event.target.tag ?? event.target.digest}`;

/**
 * Checks at-least-once delivery of `expected` (signatures, in the order they happened): each
 * was delivered, under one id however often; nothing else was; and per repository the first
 * deliveries come in the order of `expected`.
 */
function expectDeliveredInOrder(sink: WebhookSink, expected: string[]): void {
  const events = sentEvents(sink);
  const idsBySignature = new Map<string, Set<string>>();
  for (const event of events) idsBySignature.set(signature(event), (idsBySignature.get(signature(event)) ?? new Set()).add(event.id));
  expect([...idsBySignature.keys()].sort()).toEqual([...expected].sort());
  for (const [, ids] of idsBySignature) expect(ids.size).toBe(1);
  const firstSeen: string[] = [];
  const seenIds = new Set<string>();
  for (const event of events) {
    if (seenIds.has(event.id)) continue;
    seenIds.add(event.id);
    firstSeen.push(signature(event));
  }
  const repositoryOf = (line: string) => line.split(' ')[1];
  for (const repository of new Set(expected.map(repositoryOf))) {
    expect(firstSeen.filter((line) => repositoryOf(line) === repository)).toEqual(expected.filter((line) => repositoryOf(line) === repository));
  }
}

/** Waits until the sink has accepted every one of `expected` at least once. */
async function deliveredAll(sink: WebhookSink, expected: string[]): Promise<void> {
  await waitFor(`${expected.length} events delivered`, async () => new Set(sentEvents(sink).map(signature)), (seen) => expected.every((line) => seen.has(line)), 1500);
}

function registryApp(storage: StorageAdapter, notifications: NotificationEndpoint[]): { registry: RegistryRouter; agent: ReturnType<typeof supertest> } {
  const registry = createRegistryRouter({ storage, uploadPurging: false, notifications });
  const app = express();
  app.use(registry);
  return { registry, agent: supertest(app) };
}

/** Pushes `image` tagged `tag` and resolves to the signature of its notification. */
async function push(agent: ReturnType<typeof supertest>, repository: string, image: TestImage, tag: string): Promise<string> {
  await pushImage(agent, repository, image, tag);
  return `push ${repository} ${tag}`;
}

const CRASH_SERVER = join(__dirname, 'support', 'crash-server.js');
const children: ChildServer[] = [];

/** The crash server (a plain registry over FileSystemStorage here) as a child process over `dataDir`. */
async function startCrashServer(dataDir: string, env: Record<string, string>): Promise<ChildServer> {
  const server = await startChild(CRASH_SERVER, { DATA_DIR: dataDir, ...env });
  children.push(server);
  return server;
}

describe('notifications', () => {
  const sinks: WebhookSink[] = [];
  const routers: RegistryRouter[] = [];
  const newSink = async () => {
    const sink = await startWebhookSink();
    sinks.push(sink);
    return sink;
  };
  const dirs: string[] = [];
  // Routers first: their deliveries still use the sinks and the folders.
  afterEach(async () => {
    for (const server of children.splice(0)) server.child.kill('SIGKILL');
    await Promise.all(routers.splice(0).map((router) => router.close()));
    await Promise.all(sinks.splice(0).map((sink) => sink.close()));
    await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
  });
  const open = (storage: StorageAdapter, notifications: NotificationEndpoint[]) => {
    const opened = registryApp(storage, notifications);
    routers.push(opened.registry);
    return opened;
  };

  it('sends the reference registry envelope: push, mount, tag and manifest deletes, and blob commits only when asked', async () => {
    const sink = await newSink();
    const commits = await newSink();
    const { agent } = open(new MemoryStorage(), [
      { url: sink.url, headers: { Authorization: 'Bearer hook-secret' }, ...WOKEN },
      { url: commits.url, events: ['blobCommitted'], ...WOKEN },
    ]);
    const image = makeImage('envelope');
    await pushImage(agent, 'hooks/app', image, 'v1');
    await agent.post(`/v2/hooks/copy/blobs/uploads/?mount=${sha256(image.config)}&from=hooks/app`).expect(201);
    await agent.delete('/v2/hooks/app/manifests/v1').set('X-Request-Id', 'req-42').expect(202);
    await agent.delete(`/v2/hooks/app/manifests/${image.digest}`).expect(202);
    const expected = ['push hooks/app v1', `mount hooks/copy ${sha256(image.config)}`, 'delete hooks/app v1', `delete hooks/app ${image.digest}`];
    await deliveredAll(sink, expected);
    const blobs = [image.config, ...image.layers].map((blob) => `push hooks/app ${sha256(blob)}`);
    await deliveredAll(commits, blobs);

    expectDeliveredInOrder(sink, expected);
    expectDeliveredInOrder(commits, blobs);
    expect(sink.accepted.every((delivery: Delivery) => delivery.contentType === DISTRIBUTION_EVENTS)).toBe(true);
    expect(sink.accepted[0].headers.authorization).toBe('Bearer hook-secret');
    const [pushed, mounted, untagged] = sentEvents(sink);
    expect(untagged.request).toMatchObject({ id: 'req-42', method: 'DELETE' });
    expect(pushed).toMatchObject({
      action: 'push',
      target: { mediaType: OCI_MANIFEST, digest: image.digest, size: image.manifest.length, length: image.manifest.length, repository: 'hooks/app', tag: 'v1' },
    });
    expect(Date.parse(pushed.timestamp)).not.toBeNaN();
    expect(pushed.request).toEqual({ id: expect.any(String), addr: expect.stringMatching(/127\.0\.0\.1/), host: expect.any(String), method: 'PUT', useragent: expect.any(String) });
    expect(pushed.source.instanceID).toEqual(expect.any(String));
    expect(mounted.target).toMatchObject({ fromRepository: 'hooks/app', size: Buffer.byteLength(image.config) });
    expect(sentEvents(commits)[0].target).toMatchObject({ mediaType: 'application/octet-stream', size: Buffer.byteLength(image.config) });
  });

  it('sends CloudEvents 1.0 in structured mode, one event per request', async () => {
    const sink = await newSink();
    const { agent } = open(new MemoryStorage(), [{ url: sink.url, format: 'cloudevents', source: '/registries/test', ...WOKEN }]);
    const image = makeImage('cloudevents');
    await pushImage(agent, 'ce/app', image, 'v1');
    await agent.delete('/v2/ce/app/manifests/v1').expect(202);
    await waitFor('two CloudEvents', async () => sink.accepted.length, (count) => count >= 2);
    expect(sink.accepted.map((delivery) => delivery.contentType)).toEqual([CLOUDEVENTS_JSON, CLOUDEVENTS_JSON]);
    const [pushed, deleted] = sink.accepted.map((delivery) => delivery.body as Record<string, unknown>);
    expect(pushed).toEqual({
      specversion: '1.0',
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      source: '/registries/test',
      type: 'express-oci-registry.manifestPushed',
      subject: 'ce/app',
      time: expect.any(String),
      datacontenttype: 'application/json',
      data: expect.objectContaining({ repository: 'ce/app', digest: image.digest, tag: 'v1', mediaType: OCI_MANIFEST }),
    });
    expect(deleted).toMatchObject({ type: 'express-oci-registry.tagDeleted', data: { tag: 'v1', digest: image.digest } });
  });

  it('a sink that fails its first deliveries and is then down for a while gets every event, in order per repository', async () => {
    const sink = await newSink();
    const healthy = await newSink();
    const { agent, registry } = open(new MemoryStorage(), [
      { url: sink.url, name: 'flaky', maxBatch: 2, ...QUICK },
      { url: healthy.url, ...QUICK },
    ]);
    const metrics = registryMetrics(registry, { registry: new Registry() });
    sink.failNext(3);
    const expected: string[] = [];
    for (let i = 0; i < 3; i++) {
      for (const repository of ['order/a', 'order/b', 'order/c']) expected.push(await push(agent, repository, makeImage(`${repository} ${i}`), `v${i}`));
    }
    await waitFor('the failing sink to have refused 3 deliveries', async () => sink.attempts, (count) => count >= 3);
    sink.setMode('down');
    for (const repository of ['order/a', 'order/c']) {
      await agent.delete(`/v2/${repository}/manifests/v0`).expect(202);
      expected.push(`delete ${repository} v0`);
    }
    // The endpoint that is down does not hold the other back.
    await deliveredAll(healthy, expected);
    expectDeliveredInOrder(healthy, expected);
    const whileDown = sink.attempts;
    await waitFor('retries while the sink is down', async () => sink.attempts, (count) => count > whileDown + 2);
    sink.setMode('up');
    await deliveredAll(sink, expected);
    expectDeliveredInOrder(sink, expected);
    // The registry counts a delivery once it has read the answer, just after the sink recorded it.
    const scrape = async () => parsePrometheusText(await metrics.registry.metrics());
    const okCount = (scraped: Scrape) => scraped.value('oci_registry_notification_requests_total', { endpoint: 'flaky', result: 'ok' });
    const scraped = await waitFor('the last answer to be counted', scrape, (result) => okCount(result) === sink.accepted.length);
    expect(scraped.value('oci_registry_notification_requests_total', { endpoint: 'flaky', result: 'failed' })).toBeGreaterThanOrEqual(3 + 2);
    expect(scraped.value('oci_registry_notification_requests_total', { endpoint: 'flaky', result: 'ok' })).toBe(sink.accepted.length);
    expect(scraped.value('oci_registry_notification_events_delivered_total', { endpoint: 'flaky' })).toBe(sentEvents(sink).length);
  });

  describe('over FileSystemStorage', () => {
    let dir: string;
    beforeEach(async () => {
      dir = await mkdtemp(join(tmpdir(), 'oci-notify-'));
      dirs.push(dir);
    });
    const dataDir = () => dir;
    const outboxEntries = async () => {
      const root = join(dataDir(), 'documents', 'notifications');
      const endpoints = await readdir(root).catch(() => [] as string[]);
      let count = 0;
      for (const endpoint of endpoints) count += (await readdir(join(root, endpoint, 'outbox')).catch(() => [] as string[])).length;
      return count;
    };

    it('two instances on one storage share one outbox: every event delivered, in order per repository, and the outbox drains', async () => {
      const sink = await newSink();
      const endpoint = { url: sink.url, ...QUICK, leaseDuration: 2000 };
      const first = open(new FileSystemStorage({ root: dataDir() }), [endpoint]);
      const second = open(new FileSystemStorage({ root: dataDir() }), [endpoint]);
      sink.failNext(2);
      const expected: string[] = [];
      for (let i = 0; i < 4; i++) {
        for (const repository of ['pair/a', 'pair/b']) {
          // Each repository's pushes alternate between the instances.
          const agent = (i + repository.length) % 2 === 0 ? first.agent : second.agent;
          expected.push(await push(agent, repository, makeImage(`${repository} ${i}`), `v${i}`));
        }
      }
      await second.agent.delete('/v2/pair/a/manifests/v0').expect(202);
      expected.push('delete pair/a v0');
      await deliveredAll(sink, expected);
      expectDeliveredInOrder(sink, expected);
      // Both instances recorded events into the one outbox.
      expect(new Set(sentEvents(sink).map((event) => event.source.instanceID)).size).toBe(2);
      await waitFor('the outbox to drain', outboxEntries, (count) => count === 0);
    });

    it('the registry SIGKILLed with events in its outbox, then restarted: every event delivered once the sink is back, in order', async () => {
      const sink = await newSink();
      sink.setMode('down');
      const env = { NOTIFY_URL: sink.url, NOTIFY_LEASE_MS: '1000' };
      const first = await startCrashServer(dataDir(), env);
      const expected: string[] = [];
      for (let i = 0; i < 3; i++) {
        for (const repository of ['crash/a', 'crash/b']) {
          const image = makeImage(`${repository} ${i}`);
          await pushOverHttp(first.url, repository, image, `v${i}`);
          expected.push(`push ${repository} v${i}`);
        }
      }
      // Every event acknowledged is in the outbox before the kill.
      expect(await outboxEntries()).toBe(expected.length);
      first.child.kill('SIGKILL');
      expect(await first.exited).toBe('SIGKILL');
      expect(sink.accepted).toHaveLength(0);

      sink.setMode('up');
      const second = await startCrashServer(dataDir(), env);
      await deliveredAll(sink, expected);
      expectDeliveredInOrder(sink, expected);
      await waitFor('the outbox to drain', outboxEntries, (count) => count === 0);
      second.child.kill('SIGKILL');
      await second.exited;
    });
  });

  const s3 = s3Settings();
  (s3 ? it : it.skip)(`two instances on one S3 prefix share one outbox and its lease${s3 ? '' : ` ${S3_SKIP_REASON}`}`, async () => {
    await ensureBucket(s3!);
    const { storage, prefix, cleanup } = s3TestStorage(s3!);
    const other = new S3Storage({ ...s3!, prefix, claimLeaseMs: 3000 });
    try {
      const sink = await newSink();
      const endpoint = { url: sink.url, ...QUICK, pollInterval: 300, leaseDuration: 3000 };
      const agents = [open(storage, [endpoint]).agent, open(other, [endpoint]).agent];
      sink.failNext(1);
      // Mounts are the cheapest changes on S3: one blob pushed, then linked into each repository from either instance.
      const blobs = ['one', 'two', 'three'].map((word) => `${prefix} ${word}`);
      for (const blob of blobs) await pushBlob(agents[0], 's3/src', blob);
      const expected: string[] = [];
      for (const [index, blob] of blobs.entries()) {
        for (const repository of ['s3/a', 's3/b']) {
          await agents[(index + repository.length) % 2].post(`/v2/${repository}/blobs/uploads/?mount=${sha256(blob)}&from=s3/src`).expect(201);
          expected.push(`mount ${repository} ${sha256(blob)}`);
        }
      }
      await deliveredAll(sink, expected);
      expectDeliveredInOrder(sink, expected);
      expect(new Set(sentEvents(sink).map((event) => event.source.instanceID)).size).toBe(2);
      await Promise.all(routers.splice(0).map((router) => router.close()));
    } finally {
      other.client.destroy();
      await cleanup();
    }
  }, 60_000);

  it('a change whose event cannot be recorded is not acknowledged: the request fails, and the retry is delivered', async () => {
    const sink = await newSink();
    const storage = new MemoryStorage();
    const putDocument = storage.putDocument.bind(storage);
    let outboxDown = true;
    storage.putDocument = (key, value, options) =>
      outboxDown && key.startsWith('notifications/') && key.includes('/outbox/') ? Promise.reject(new Error('outbox unavailable')) : putDocument(key, value, options);
    const { agent } = open(storage, [{ url: sink.url, ...QUICK }]);
    const image = makeImage('unrecorded');
    for (const blob of [image.config, ...image.layers]) await pushBlob(agent, 'lost/app', blob);
    await agent.put('/v2/lost/app/manifests/v1').set('Content-Type', OCI_MANIFEST).send(image.manifest.toString()).expect(500);
    outboxDown = false;
    await agent.put('/v2/lost/app/manifests/v1').set('Content-Type', OCI_MANIFEST).send(image.manifest.toString()).expect(201);
    await deliveredAll(sink, ['push lost/app v1']);
    expectDeliveredInOrder(sink, ['push lost/app v1']);
  });

  it('refuses, when the router is created, an endpoint that is not http(s) or asks for an event notifications do not carry', () => {
    const storage = new MemoryStorage();
    expect(() => createRegistryRouter({ storage, notifications: [{ url: 'ftp://127.0.0.1/x' }] })).toThrow('http or https');
    expect(() => createRegistryRouter({ storage, notifications: [{ url: 'http://127.0.0.1/x', events: ['uploadStarted' as never] }] })).toThrow(
      'notifications cannot carry uploadStarted',
    );
  });

  it('close() ends a delivery in flight and stops retrying; the entry stays for the next start', async () => {
    const sink = await newSink();
    sink.setMode('hang');
    const storage = new MemoryStorage();
    const { registry, agent } = registryApp(storage, [{ url: sink.url, ...QUICK, timeout: 60_000 }]);
    await pushBlob(agent, 'close/app', 'x');
    await agent.delete(`/v2/close/app/blobs/${sha256('x')}`).expect(202);
    await waitFor('the delivery to be in flight', async () => sink.attempts, (count) => count === 1);
    await registry.close();
    sink.setMode('up');
    const reopened = open(storage, [{ url: sink.url, ...QUICK }]);
    expect(reopened.registry).toBeDefined();
    await deliveredAll(sink, [`delete close/app ${sha256('x')}`]);
  });
});

describe('the outbox lease', () => {
  afterEach(() => jest.restoreAllMocks());

  it('is held by one instance at a time, renewed by its holder, taken over once expired by exactly one contender, and free at once when released', async () => {
    const storage = new MemoryStorage();
    const lease = (owner: string) => new Lease(storage, 'notifications/test/lease/', owner, 1000);
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map(lease);
    let now = 1_000_000;
    jest.spyOn(Date, 'now').mockImplementation(() => now);

    expect(await a.hold()).toBe(true);
    expect(await b.hold()).toBe(false);
    expect(b.heldElsewhereUntil).toBe(now + 1000);
    now += 600;
    expect(await a.hold()).toBe(true);
    now += 900;
    // Renewed at 600 ms, so still a's at 1500 ms.
    expect(await b.hold()).toBe(false);
    now += 2000;
    const contenders = await Promise.all([b.hold(), c.hold(), d.hold()]);
    expect(contenders.filter(Boolean)).toHaveLength(1);
    expect(await a.hold()).toBe(false);
    const holder = [b, c, d][contenders.indexOf(true)];
    // Older claims are removed by the one that took over.
    expect(await storage.listDocuments('notifications/test/lease/')).toEqual(['000000000002']);
    await holder.release();
    expect(await a.hold()).toBe(true);
  });
});

/** Pushes an image's blobs and manifest over plain HTTP (to a child process). */
async function pushOverHttp(url: string, repository: string, image: TestImage, tag: string): Promise<void> {
  for (const blob of [image.config, ...image.layers]) {
    const pushed = await request(`${url}/v2/${repository}/blobs/uploads/?digest=${sha256(blob)}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/octet-stream' },
      body: Buffer.from(blob),
    });
    expect(pushed.status).toBe(201);
  }
  const manifest = await request(`${url}/v2/${repository}/manifests/${tag}`, { method: 'PUT', headers: { 'Content-Type': OCI_MANIFEST }, body: image.manifest });
  expect(manifest.status).toBe(201);
}
