/**
 * Garbage collection under load, across processes: two registry processes over one storage
 * (a FileSystemStorage root, then an S3 prefix), pushers that reuse a base layer the way real
 * clients do (HEAD it, upload only when missing), a deleter, and collections with a grace of one
 * second run in a loop from this, a third process. Afterwards every manifest that was
 * acknowledged and not deleted pulls completely with skopeo, and a last collection leaves exactly
 * the content the surviving manifests name. The loop is bounded by counts, not by time.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { FileSystemStorage, RegistryStore, type CollectionReport, type StorageAdapter } from '../../lib';
import { bytes, request, sha256 } from '../support/http';
import { descriptor, OCI_MANIFEST } from '../support/oci';
import { ensureBucket, s3Settings, s3TestStorage } from '../support/s3';

const runFile = promisify(execFile);
const MiB = 1024 * 1024;
const ROUNDS_PER_PUSHER = 12;
const GRACE_MS = 1000;

interface Instance {
  url: string;
  child: ChildProcess;
  log: () => string;
}

async function startInstance(script: string, env: Record<string, string>): Promise<Instance> {
  const child = spawn(process.execPath, [script], { env: { ...process.env, ...env, PORT: '0' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  for (let waited = 0; !/listening (\d+)/.test(output); waited += 50) {
    if (child.exitCode !== null || waited > 20_000) throw new Error(`an instance did not start:\n${output}`);
    await sleep(50);
  }
  return { url: `http://127.0.0.1:${/listening (\d+)/.exec(output)![1]}`, child, log: () => output.slice(-4000) };
}

async function stop(instance: Instance): Promise<void> {
  if (instance.child.exitCode !== null || instance.child.signalCode !== null) return;
  instance.child.kill('SIGTERM');
  await once(instance.child, 'exit');
}

/** One image a pusher made: its manifest and every blob digest it names. */
interface Pushed {
  repository: string;
  tag: string;
  digest: string;
  blobs: string[];
}

/** Pushes an image as a client would: HEAD each blob, upload only what is missing, then the manifest. */
async function pushImage(base: string, repository: string, tag: string, blobs: Buffer[]): Promise<{ status: number; code?: string; pushed: Pushed }> {
  const [config, ...layers] = blobs;
  for (const blob of blobs) {
    const head = await request(`${base}/v2/${repository}/blobs/${sha256(blob)}`, { method: 'HEAD' });
    if (head.status === 200) continue;
    const res = await request(`${base}/v2/${repository}/blobs/uploads/?digest=${sha256(blob)}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(blob.length) },
      body: blob,
    });
    // A commit racing a collection of the same unreferenced content may be told to retry.
    if (res.status === 503 && res.headers['retry-after'] !== undefined) return { status: 503, code: 'RETRY', pushed: { repository, tag, digest: '', blobs: [] } };
    if (res.status !== 201) throw new Error(`upload answered ${res.status}: ${res.body.toString()}`);
  }
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: descriptor('application/vnd.oci.image.config.v1+json', config),
    layers: layers.map((layer) => descriptor('application/vnd.oci.image.layer.v1.tar', layer)),
  });
  const res = await request(`${base}/v2/${repository}/manifests/${tag}`, { method: 'PUT', headers: { 'Content-Type': OCI_MANIFEST }, body: Buffer.from(manifest) });
  const code = res.status === 201 ? undefined : (JSON.parse(res.body.toString()) as { errors: { code: string }[] }).errors[0].code;
  return { status: res.status, code, pushed: { repository, tag, digest: sha256(manifest), blobs: blobs.map((blob) => sha256(blob)) } };
}

/** Runs the soak over `storage` served by `instances`; resolves to its counts. */
async function soak(storage: StorageAdapter, instances: Instance[], work: string) {
  const store = new RegistryStore(storage);
  const base = bytes(256 * 1024, 7);
  const acknowledged: Pushed[] = [];
  const deleted = new Set<string>();
  let retriedPushes = 0;
  let pushing = 2;
  const reports: CollectionReport[] = [];

  async function pusher(index: number): Promise<void> {
    for (let round = 0; round < ROUNDS_PER_PUSHER; round++) {
      const instance = instances[(index + round) % instances.length];
      const unique = bytes(64 * 1024 + round, 1000 * index + round);
      const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', pusher: index, round }));
      // A push that loses a race with a collection fails cleanly; the client pushes again.
      for (let attempt = 0; ; attempt++) {
        const { status, code, pushed } = await pushImage(instance.url, `soak/p${index}`, `r${round}`, [config, base, unique]);
        if (status === 201) {
          acknowledged.push(pushed);
          break;
        }
        expect(['MANIFEST_BLOB_UNKNOWN', 'RETRY']).toContain(code);
        expect(attempt).toBeLessThan(5);
        retriedPushes++;
      }
    }
    pushing--;
  }

  async function deleter(): Promise<void> {
    // Deletes every third acknowledged manifest, by digest, as it goes.
    for (let next = 0; pushing > 0 || next < acknowledged.length; ) {
      if (next >= acknowledged.length || next % 3 !== 2) {
        if (next < acknowledged.length) next++;
        else await sleep(20);
        continue;
      }
      const { repository, digest } = acknowledged[next++];
      const res = await request(`${instances[next % instances.length].url}/v2/${repository}/manifests/${digest}`, { method: 'DELETE' });
      expect(res.status).toBe(202);
      deleted.add(digest);
    }
  }

  async function collector(): Promise<void> {
    while (pushing > 0) {
      reports.push(await store.collector.collect({ grace: GRACE_MS }));
      await sleep(GRACE_MS / 2);
    }
  }

  await Promise.all([pusher(0), pusher(1), deleter(), collector()]);

  // Everything acknowledged and not deleted pulls whole with skopeo.
  await writeFile(join(work, 'policy.json'), JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  await writeFile(join(work, 'registries.conf'), '');
  const surviving = acknowledged.filter((image) => !deleted.has(image.digest));
  for (const [index, image] of surviving.entries()) {
    const host = new URL(instances[index % instances.length].url).host;
    await runFile(
      'skopeo',
      ['--policy', join(work, 'policy.json'), '--registries-conf', join(work, 'registries.conf'), 'copy', '--src-tls-verify=false', `docker://${host}/${image.repository}@${image.digest}`, `oci:${join(work, `pulled-${index}`)}:x`],
      { maxBuffer: 16 * MiB },
    );
  }

  // With the pushes over, a last collection leaves exactly the content the survivors name.
  const last = await store.collector.collect({ grace: 0 });
  reports.push(last);
  const live = new Set(surviving.flatMap((image) => image.blobs.map((digest) => digest.replace(':', '/'))));
  const content = (await storage.listContent!()).map((key) => key.replace(/\/[0-9a-f]{2}\//, '/'));
  expect(new Set(content)).toEqual(live);
  return {
    pushes: acknowledged.length,
    retriedPushes,
    deletes: deleted.size,
    collections: reports.length,
    verified: surviving.length,
    bytesFreed: reports.reduce((sum, report) => sum + report.bytesFreed, 0),
    revived: reports.reduce((sum, report) => sum + report.revived, 0),
  };
}

describe('garbage collection soak: two registry processes, pushers, a deleter and collections in a loop', () => {
  let work: string;
  const instances: Instance[] = [];

  beforeEach(async () => {
    work = await mkdtemp(join(tmpdir(), 'oci-gc-soak-'));
  });
  afterEach(async () => {
    for (const instance of instances.splice(0)) await stop(instance);
    await rm(work, { recursive: true, force: true });
  });

  it('on one FileSystemStorage root', async () => {
    const root = join(work, 'data');
    const script = resolve(__dirname, '..', 'support', 'crash-server.js');
    instances.push(...(await Promise.all([startInstance(script, { DATA_DIR: root }), startInstance(script, { DATA_DIR: root })])));
    const counts = await soak(new FileSystemStorage({ root }), instances, work);
    console.log(`gc soak on FileSystemStorage: ${JSON.stringify(counts)}`);
    expect(counts.verified).toBeGreaterThan(0);
  }, 240_000);

  const settings = s3Settings();
  (settings ? it : it.skip)('on one S3 prefix (Swift s3api)', async () => {
    await ensureBucket(settings!);
    const { storage, prefix, cleanup } = s3TestStorage(settings!);
    try {
      const env = {
        S3_ENDPOINT: settings!.endpoint!,
        S3_BUCKET: settings!.bucket,
        S3_REGION: settings!.region!,
        S3_ACCESS_KEY_ID: settings!.credentials!.accessKeyId,
        S3_SECRET_ACCESS_KEY: settings!.credentials!.secretAccessKey,
        S3_PREFIX: prefix,
      };
      const script = resolve(__dirname, '..', 'support', 's3-instance.js');
      instances.push(...(await Promise.all([startInstance(script, env), startInstance(script, env)])));
      const counts = await soak(storage, instances, work);
      console.log(`gc soak on S3: ${JSON.stringify(counts)}`);
      expect(counts.verified).toBeGreaterThan(0);
    } finally {
      await cleanup();
    }
  }, 240_000);
});
