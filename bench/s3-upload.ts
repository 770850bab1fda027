/**
 * `npm run bench:s3`: one large blob pushed through the registry into S3, against a direct
 * PutObject of the same bytes to the same server, in one run. A measurement, not a test.
 *
 *   set -a; eval "$(spec/s3/start-s3.sh)"; set +a
 *   npm run bench:s3                          # 1 GiB, 2 rounds, S3Storage's default part size
 *   npm run bench:s3 -- --size-mib 256 --rounds 3 --part-size-mib 16
 *
 * The registry runs as its own process (`spec/support/s3-instance.js`, S3Storage over the
 * compiled `dist/`); the client pushes like skopeo does: POST, one streamed PATCH of unknown
 * length, PUT `?digest=`. The direct upload is one streamed PutObject with a known length. Both
 * send the same bytes (a 16 MiB random block repeated), generated as they are sent; the digest is
 * computed before timing. Rounds alternate which upload goes first.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { CreateBucketCommand, DeleteObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { S3Storage } from '../lib/storage/s3';

const MiB = 1024 * 1024;
/** The project root, from `bench/` or from its compiled copy in `dist/bench/`. */
const PROJECT = resolve(__dirname, __dirname.includes(`${join('dist', 'bench')}`) ? '../..' : '..');
const BLOCK = randomBytes(16 * MiB);

function flag(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  return index === -1 ? fallback : Number(process.argv[index + 1]);
}

const sizeMiB = flag('size-mib', 1024);
const rounds = flag('rounds', 2);
const size = sizeMiB * MiB;

/** `size` bytes: BLOCK repeated, cut at the end, generated as the reader pulls. */
function payload(): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= size) {
        this.push(null);
        return;
      }
      const piece = BLOCK.subarray(0, Math.min(BLOCK.length, size - sent));
      sent += piece.length;
      this.push(piece);
    },
  });
}

function digestOfPayload(): string {
  const hash = createHash('sha256');
  for (let sent = 0; sent < size; sent += BLOCK.length) hash.update(BLOCK.subarray(0, Math.min(BLOCK.length, size - sent)));
  return `sha256:${hash.digest('hex')}`;
}

function send(url: string, method: string, body?: Readable): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }> {
  return new Promise((resolvePromise, reject) => {
    const req = http.request(url, { method, headers: body ? { 'Content-Type': 'application/octet-stream' } : {} }, (res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => (text += chunk.toString()));
      res.on('end', () => resolvePromise({ status: res.statusCode!, headers: res.headers, text }));
    });
    req.on('error', reject);
    if (body) body.pipe(req);
    else req.end();
  });
}

async function main(): Promise<void> {
  const endpoint = process.env.S3_ENDPOINT;
  if (!endpoint) throw new Error('set S3_ENDPOINT etc. first: set -a; eval "$(spec/s3/start-s3.sh)"; set +a');
  const bucket = process.env.S3_BUCKET ?? 'oci-test';
  const settings = {
    endpoint,
    bucket,
    region: process.env.S3_REGION ?? 'us-east-1',
    credentials: { accessKeyId: process.env.S3_ACCESS_KEY_ID ?? 'test:tester', secretAccessKey: process.env.S3_SECRET_ACCESS_KEY ?? 'testing' },
    forcePathStyle: true,
  };
  // The direct upload goes through the same client configuration the adapter uses.
  const storage = new S3Storage(settings);
  const client = storage.client;
  const partSizeMiB = flag('part-size-mib', storage.minChunkSize / MiB);
  await client.send(new CreateBucketCommand({ Bucket: bucket })).catch(() => undefined);
  const prefix = `bench-${Date.now()}`;
  const digest = digestOfPayload();

  const instance = spawn(process.execPath, [join(PROJECT, 'spec', 'support', 's3-instance.js')], {
    env: { ...process.env, S3_BUCKET: bucket, S3_PREFIX: prefix, S3_PART_SIZE: String(partSizeMiB * MiB), PORT: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  instance.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  while (!/listening (\d+)/.test(output)) {
    if (instance.exitCode !== null) throw new Error('the registry instance exited');
    await sleep(50);
  }
  const registry = `http://127.0.0.1:${/listening (\d+)/.exec(output)![1]}`;

  async function direct(round: number): Promise<number> {
    const key = `${prefix}/direct-${round}`;
    const started = process.hrtime.bigint();
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: payload(), ContentLength: size }));
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    return seconds;
  }

  /** CPU seconds the registry process has used so far (Linux /proc; NaN elsewhere). */
  function registryCpuSeconds(): number {
    try {
      const fields = readFileSync(`/proc/${instance.pid}/stat`, 'utf8').split(') ')[1].split(' ');
      return (Number(fields[11]) + Number(fields[12])) / 100;
    } catch {
      return Number.NaN;
    }
  }

  async function throughRegistry(round: number): Promise<number> {
    const repository = `bench/round${round}`;
    const cpuBefore = registryCpuSeconds();
    const started = process.hrtime.bigint();
    const opened = await send(`${registry}/v2/${repository}/blobs/uploads/`, 'POST');
    const patched = await send(`${registry}${opened.headers.location}`, 'PATCH', payload());
    if (patched.status !== 202) throw new Error(`PATCH answered ${patched.status}: ${patched.text}`);
    const put = await send(`${registry}${patched.headers.location}?digest=${digest}`, 'PUT');
    if (put.status !== 201) throw new Error(`PUT answered ${put.status}: ${put.text}`);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    console.log(`round ${round + 1} registry process CPU ${(registryCpuSeconds() - cpuBefore).toFixed(2)} s`);
    await send(`${registry}/v2/${repository}/blobs/${digest}`, 'DELETE');
    return seconds;
  }

  const results: { direct: number[]; registry: number[] } = { direct: [], registry: [] };
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? (['direct', 'registry'] as const) : (['registry', 'direct'] as const);
    for (const which of order) {
      const seconds = which === 'direct' ? await direct(round) : await throughRegistry(round);
      results[which].push(seconds);
      console.log(`round ${round + 1} ${which.padEnd(8)} ${seconds.toFixed(2)} s  ${(size / MiB / seconds).toFixed(1)} MiB/s`);
    }
  }
  instance.kill('SIGTERM');

  const median = (values: number[]) => {
    const sorted = [...values].sort((a, b) => a - b);
    const middle = Math.floor(sorted.length / 2);
    return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
  };
  const directRate = size / MiB / median(results.direct);
  const registryRate = size / MiB / median(results.registry);
  console.log(`\n${sizeMiB} MiB, ${rounds} rounds, part size ${partSizeMiB} MiB, medians:`);
  console.log(`  direct PutObject        ${directRate.toFixed(1)} MiB/s`);
  console.log(`  through the registry    ${registryRate.toFixed(1)} MiB/s  (POST, streamed PATCH, PUT ?digest=; sha256 verified)`);
  console.log(`  registry / direct       ${((registryRate / directRate) * 100).toFixed(0)} %`);

  // Whatever the registry left under the prefix (content pointers, the blob objects).
  for (;;) {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix}/` }));
    if (!page.Contents?.length) break;
    for (const object of page.Contents) await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: object.Key! }));
  }
  client.destroy();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});

