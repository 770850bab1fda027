/**
 * Several registry processes over one S3 bucket, with no shared memory: two instances behind a
 * round-robin proxy (the recording proxy with two upstreams) take a skopeo push and pull, a
 * chunked upload whose PATCHes alternate between them, two PATCHes racing on one session, and
 * a session whose instance is killed midway and that the other instance finishes.
 *
 * The instances are `spec/support/s3-instance.js` child processes over the compiled `dist/`
 * (`npm test` builds it first), with 5 MiB parts and a 2 s claim lease so a dead process's
 * claim expires quickly.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { S3Storage } from '../../lib/storage/s3';
import { bytes, chunked, request, sha256 } from '../support/http';
import { blobPath, sameFileContents, writeImageLayout, type GeneratedImage } from '../support/oci-layout';
import { startRecordingProxy, type RecordingProxy } from '../support/recording-proxy';
import { deletePrefix, ensureBucket, s3Settings, S3_SKIP_REASON } from '../support/s3';
import { skopeoIn } from '../support/skopeo';

const INSTANCE = resolve(__dirname, '..', 'support', 's3-instance.js');
const MiB = 1024 * 1024;
const LEASE_MS = 2000;
const settings = s3Settings();

interface Instance {
  url: string;
  child: ChildProcess;
  log: () => string;
}

(settings ? describe : describe.skip)(`several registry instances over one S3 bucket${settings ? '' : ` ${S3_SKIP_REASON}`}`, () => {
  const prefix = `instances-${randomUUID()}`;
  const instances: Instance[] = [];
  let proxy: RecordingProxy;
  let work: string;

  async function startInstance(): Promise<Instance> {
    const child = spawn(process.execPath, [INSTANCE], {
      env: {
        ...process.env,
        S3_ENDPOINT: settings!.endpoint,
        S3_BUCKET: settings!.bucket,
        S3_REGION: settings!.region,
        S3_ACCESS_KEY_ID: settings!.credentials!.accessKeyId,
        S3_SECRET_ACCESS_KEY: settings!.credentials!.secretAccessKey,
        S3_PREFIX: prefix,
        S3_PART_SIZE: String(5 * MiB),
        S3_CLAIM_LEASE_MS: String(LEASE_MS),
        PORT: '0',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const instance: Instance = { url: '', child, log: () => output.slice(-4000) };
    instances.push(instance);
    for (let waited = 0; !/listening (\d+)/.test(output); waited += 50) {
      if (child.exitCode !== null || waited > 20_000) throw new Error(`an instance did not start:\n${output}`);
      await sleep(50);
    }
    instance.url = `http://127.0.0.1:${/listening (\d+)/.exec(output)![1]}`;
    return instance;
  }

  beforeAll(async () => {
    await ensureBucket(settings!);
    work = await mkdtemp(join(tmpdir(), 'oci-s3-instances-'));
    const [first, second] = await Promise.all([startInstance(), startInstance()]);
    proxy = await startRecordingProxy([new URL(first.url), new URL(second.url)]);
  }, 60_000);

  afterAll(async () => {
    await proxy?.close();
    for (const { child } of instances) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
    }
    if (work) await rm(work, { recursive: true, force: true });
    const cleaner = new S3Storage({ ...settings! });
    await deletePrefix(cleaner.client, settings!.bucket, `${prefix}/`);
    cleaner.client.destroy();
  }, 60_000);

  /** Fails with the instances' output, so a server-side error is visible. */
  function explain(what: string): string {
    return `${what}\n${instances.map((instance, index) => `instance ${index}:\n${instance.log()}`).join('\n')}`;
  }

  it('takes a skopeo push and pull through the round-robin proxy', async () => {
    const skopeo = await skopeoIn(work, () => explain('the instances:'));
    const source = join(work, 'image');
    const copy = join(work, 'pulled');
    const image: GeneratedImage = await writeImageLayout(source, { tag: 'v1', fileSizes: [3000, 11 * MiB + 17] });
    const start = proxy.requests.length;
    await skopeo('copy', '--preserve-digests', '--dest-tls-verify=false', `oci:${source}:v1`, `docker://${proxy.host}/multi/app:v1`);
    await skopeo('copy', '--preserve-digests', '--src-tls-verify=false', `docker://${proxy.host}/multi/app:v1`, `oci:${copy}:v1`);
    const served = proxy.requests.slice(start);
    expect(new Set(served.map((req) => req.upstream))).toEqual(new Set([0, 1]));
    const blobs = [image.config, ...image.layers];
    expect((await readdir(join(copy, 'blobs', 'sha256'))).sort()).toEqual(
      [...new Set([...blobs, image.manifest].map((descriptor) => descriptor.digest.split(':')[1]))].sort(),
    );
    for (const { digest } of blobs) expect({ digest, same: await sameFileContents(blobPath(source, digest), blobPath(copy, digest)) }).toEqual({ digest, same: true });
  }, 120_000);

  it('continues a chunked upload whose PATCHes alternate between the instances', async () => {
    const data = bytes(13 * MiB + 5, 21);
    const started = await request(`${proxy.url}/v2/multi/chunks/blobs/uploads/`, { method: 'POST' });
    expect(started.status).toBe(202);
    let location = started.headers.location!;
    const start = proxy.requests.length;
    const cuts = [0, 6 * MiB, 6 * MiB + 1, 11 * MiB, data.length];
    for (let index = 1; index < cuts.length; index++) {
      const patched = await request(`${proxy.url}${location}`, {
        method: 'PATCH',
        headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `${cuts[index - 1]}-${cuts[index] - 1}` },
        body: data.subarray(cuts[index - 1], cuts[index]),
      });
      expect([patched.status, patched.headers.range]).toEqual([202, `0-${cuts[index] - 1}`]);
      location = patched.headers.location!;
    }
    const upstreams = proxy.requests.slice(start).map((req) => req.upstream);
    expect(upstreams.slice(1)).toEqual(upstreams.slice(0, -1).map((upstream) => 1 - upstream));
    const digest = sha256(data);
    expect((await request(`${proxy.url}${location}?digest=${digest}`, { method: 'PUT' })).status).toBe(201);
    for (let attempt = 0; attempt < 2; attempt++) {
      const fetched = await request(`${proxy.url}/v2/multi/chunks/blobs/${digest}`, { method: 'GET', headers: { Range: `bytes=${6 * MiB - 2}-${6 * MiB + 2}` } });
      expect([fetched.status, fetched.body.equals(data.subarray(6 * MiB - 2, 6 * MiB + 3))]).toEqual([206, true]);
    }
  }, 120_000);

  it('lets one of two PATCHes racing on one session from two instances win, without interleaving', async () => {
    const started = await request(`${proxy.url}/v2/multi/race/blobs/uploads/`, { method: 'POST' });
    const location = started.headers.location!;
    const bodies = [bytes(2 * MiB, 31), bytes(2 * MiB, 32)];
    /** A body that trickles in over about a second, so that both requests overlap. */
    const slow = (data: Buffer) =>
      Readable.from(
        (async function* () {
          for (let offset = 0; offset < data.length; offset += 128 * 1024) {
            yield data.subarray(offset, offset + 128 * 1024);
            await sleep(60);
          }
        })(),
      );
    const results = await Promise.all(
      [0, 1].map((index) =>
        request(`${instances[index].url}${location}`, { method: 'PATCH', headers: { 'Content-Type': 'application/octet-stream' }, body: slow(bodies[index]) }),
      ),
    );
    expect(results.map((result) => result.status).sort()).toEqual([202, 416]);
    const winner = bodies[results.findIndex((result) => result.status === 202)];
    const digest = sha256(winner);
    const completed = await request(`${proxy.url}${location}?digest=${digest}`, { method: 'PUT' });
    expect(completed.status).toBe(201);
    const fetched = await request(`${proxy.url}/v2/multi/race/blobs/${digest}`, { method: 'GET' });
    expect(fetched.body.equals(winner)).toBe(true);
  }, 120_000);

  it('finishes on one instance a session whose instance was killed mid-upload', async () => {
    const doomed = await startInstance();
    const data = bytes(12 * MiB + 99, 41);
    const started = await request(`${doomed.url}/v2/multi/killed/blobs/uploads/`, { method: 'POST' });
    const location = started.headers.location!;
    // Stream 7 MiB quickly (one 5 MiB part is stored), then stall until the process is killed.
    const sent = 7 * MiB;
    const stalled = new Readable({ read() {} });
    stalled.push(data.subarray(0, sent));
    const interrupted = request(`${doomed.url}${location}`, { method: 'PATCH', headers: { 'Content-Type': 'application/octet-stream' }, body: stalled }).catch(
      (error: Error) => error,
    );
    const storage = new S3Storage({ ...settings!, prefix });
    const id = location.split('/').pop()!;
    for (let waited = 0; ((await storage.uploadSize(id)) ?? 0) < 5 * MiB; waited += 100) {
      if (waited > 30_000) throw new Error(explain('the first part never reached the store'));
      await sleep(100);
    }
    doomed.child.kill('SIGKILL');
    await once(doomed.child, 'exit');
    // The client saw its connection die (an error, not a response).
    expect(await interrupted).toHaveProperty('message');
    storage.client.destroy();

    const status = await request(`${proxy.url}${location}`, { method: 'GET' });
    expect(status.status).toBe(204);
    const stored = Number(/^0-(\d+)$/.exec(status.headers.range!)![1]) + 1;
    expect(stored).toBeGreaterThanOrEqual(5 * MiB);
    expect(stored).toBeLessThanOrEqual(sent);
    // The dead process's claim blocks the session until its lease runs out.
    let patched;
    for (let attempt = 0; ; attempt++) {
      patched = await request(`${proxy.url}${location}`, {
        method: 'PATCH',
        headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `${stored}-${data.length - 1}` },
        body: chunked(data.subarray(stored)),
      });
      if (patched.status !== 416 || attempt > 20) break;
      await sleep(500);
    }
    expect([patched.status, patched.headers.range]).toEqual([202, `0-${data.length - 1}`]);
    const digest = sha256(data);
    expect((await request(`${proxy.url}${patched.headers.location}?digest=${digest}`, { method: 'PUT' })).status).toBe(201);
    const fetched = await request(`${proxy.url}/v2/multi/killed/blobs/${digest}`, { method: 'GET' });
    expect(fetched.body.equals(data)).toBe(true);
  }, 120_000);
});
