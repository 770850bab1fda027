/**
 * `npm run bench:gc`: a full garbage collection of a large registry on FileSystemStorage, its
 * time and peak memory, and push latency while it runs against without. Prints figures; it
 * asserts nothing.
 *
 * The registry is built through the store (blobs through upload sessions, manifests through
 * ManifestStore) with `--repositories`, `--manifests` and `--blobs` (default 1,000 / 10,000 /
 * 100,000); every other manifest is then deleted, so half the blobs become garbage. The collection
 * runs as the `gc` command in its own process; one registry server process takes the pushes.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Agent, request } from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { FileSystemStorage, RegistryStore, OCI_MANIFEST } from '../lib';

const { values } = parseArgs({
  options: {
    repositories: { type: 'string', default: '1000' },
    manifests: { type: 'string', default: '10000' },
    blobs: { type: 'string', default: '100000' },
    pushes: { type: 'string', default: '200' },
    keep: { type: 'boolean', default: false },
  },
});
const repositories = Number(values.repositories);
const manifestCount = Number(values.manifests);
const blobCount = Number(values.blobs);
const blobsPerManifest = Math.max(2, Math.floor(blobCount / manifestCount));
const root = mkdtempSync(join(tmpdir(), 'oci-bench-gc-'));
const dist = resolve(__dirname, '..', 'lib');

function sha256(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** Runs `task` over `items` with `concurrency` at a time. */
async function pool<T>(items: T[], concurrency: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < items.length) await task(items[next++]);
  }));
}

async function build(): Promise<{ deleted: number }> {
  const store = new RegistryStore(new FileSystemStorage({ root }));
  const indexes = Array.from({ length: manifestCount }, (_, index) => index);
  let deleted = 0;
  await pool(indexes, 16, async (index) => {
    const repository = `bench/repo-${index % repositories}`;
    const blobs = Array.from({ length: blobsPerManifest }, () => randomBytes(512));
    for (const blob of blobs) await store.putBlob(repository, blob);
    const [config, ...layers] = blobs;
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
      layers: layers.map((layer) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha256(layer), size: layer.length })),
    }));
    const { digest } = await store.manifests.put(repository, { tag: `t${index}` }, manifest, OCI_MANIFEST);
    if (index % 2 === 1) {
      await store.manifests.delete(repository, digest);
      deleted++;
    }
  });
  return { deleted };
}

/** Starts one registry server process over the root; resolves to its port and a stop function. */
async function startServer(): Promise<{ port: number; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, [resolve(__dirname, '..', '..', 'spec', 'support', 'crash-server.js')], {
    env: { ...process.env, DATA_DIR: root },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  while (!/listening (\d+)/.test(output)) await new Promise((resolve) => setTimeout(resolve, 20));
  return {
    port: Number(/listening (\d+)/.exec(output)![1]),
    stop: async () => {
      child.kill('SIGTERM');
      await once(child, 'exit');
    },
  };
}

const agent = new Agent({ keepAlive: true, maxSockets: 4 });

function send(port: number, method: string, path: string, body?: Buffer, type?: string): Promise<number> {
  return new Promise((done, fail) => {
    const headers: Record<string, string | number> = body ? { 'Content-Length': body.length, 'Content-Type': type ?? 'application/octet-stream' } : {};
    const req = request({ host: '127.0.0.1', port, method, path, headers, agent }, (res) => {
      res.resume();
      res.on('end', () => done(res.statusCode!));
    });
    req.on('error', fail);
    req.end(body);
  });
}

/** One small image push (two blobs and a manifest), in ms. */
async function pushOnce(port: number, round: number): Promise<number> {
  const started = process.hrtime.bigint();
  const repository = `bench/repo-${round % repositories}`;
  const blobs = [randomBytes(256), randomBytes(4096)];
  for (const blob of blobs) await send(port, 'POST', `/v2/${repository}/blobs/uploads/?digest=${sha256(blob)}`, blob);
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(blobs[0]), size: blobs[0].length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha256(blobs[1]), size: blobs[1].length }],
  }));
  const status = await send(port, 'PUT', `/v2/${repository}/manifests/push-${round}`, manifest, OCI_MANIFEST);
  if (status !== 201) throw new Error(`push answered ${status}`);
  return Number(process.hrtime.bigint() - started) / 1e6;
}

function percentile(values: number[], fraction: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))];
}

/** Runs the `gc` command over the root; resolves to its report, wall time and peak RSS. */
async function collect(): Promise<{ report: unknown; seconds: number; peakMiB: number }> {
  const started = Date.now();
  const child = spawn(process.execPath, [join(dist, 'cli', 'main.js'), 'gc', '--root', root, '--grace', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  let peakKiB = 0;
  const sampler = setInterval(() => {
    try {
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      peakKiB = Math.max(peakKiB, Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0));
    } catch {
      // The process has exited.
    }
  }, 50);
  const [code] = (await once(child, 'exit')) as [number];
  clearInterval(sampler);
  if (code !== 0) throw new Error(`gc exited with ${code}`);
  return { report: JSON.parse(output), seconds: (Date.now() - started) / 1000, peakMiB: peakKiB / 1024 };
}

async function main(): Promise<void> {
  try {
    console.log(`building ${repositories} repositories, ${manifestCount} manifests, ${manifestCount * blobsPerManifest} blobs in ${root}`);
    const buildStarted = Date.now();
    const { deleted } = await build();
    console.log(`built in ${((Date.now() - buildStarted) / 1000).toFixed(1)} s; ${deleted} manifests deleted, so about half the blobs are garbage`);
    const server = await startServer();
    try {
      const pushes = Number(values.pushes);
      const quiet: number[] = [];
      for (let round = 0; round < pushes; round++) quiet.push(await pushOnce(server.port, round));
      const during: number[] = [];
      let collecting = true;
      const collection = collect().finally(() => (collecting = false));
      for (let round = pushes; collecting; round++) during.push(await pushOnce(server.port, round));
      const { report, seconds, peakMiB } = await collection;
      console.log(`full collection: ${seconds.toFixed(1)} s, peak RSS ${peakMiB.toFixed(1)} MiB; report ${JSON.stringify(report)}`);
      console.log(`push (2 blobs + manifest) without a collection: p50 ${percentile(quiet, 0.5).toFixed(1)} ms, p99 ${percentile(quiet, 0.99).toFixed(1)} ms (${quiet.length} pushes)`);
      console.log(`push while it runs: p50 ${percentile(during, 0.5).toFixed(1)} ms, p99 ${percentile(during, 0.99).toFixed(1)} ms (${during.length} pushes)`);
    } finally {
      await server.stop();
    }
  } finally {
    agent.destroy();
    if (!values.keep) rmSync(root, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error instanceof Error ? error.stack : error);
  process.exitCode = 1;
});
