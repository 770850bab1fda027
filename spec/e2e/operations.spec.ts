/**
 * The example server as an operator runs it (the compiled dist/examples/server.js): a skopeo
 * push and pull move the Prometheus counters by exactly the bytes and counts they moved, the
 * scrape parses as the text format, /healthz and /readyz answer, and READ_ONLY=1 and SIGUSR2
 * switch read-only mode on a running process.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startExampleServer, type ExampleServer } from '../support/example-server';
import { request } from '../support/http';
import { writeImageLayout, type GeneratedImage } from '../support/oci-layout';
import { parsePrometheusText, type Scrape } from '../support/prometheus-text';
import { waitFor } from '../support/streaming';

const runFile = promisify(execFile);
const DIST = join(__dirname, '..', '..', 'dist');
const MiB = 1024 * 1024;

describe('the example server for operators', () => {
  let work: string;
  const servers: ExampleServer[] = [];
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'oci-ops-'));
    await writeFile(join(work, 'policy.json'), JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
    await writeFile(join(work, 'registries.conf'), '');
  });
  afterAll(async () => {
    await Promise.all(servers.map((server) => server.stop()));
    await rm(work, { recursive: true, force: true });
  });
  const start = async (name: string, env: Record<string, string> = {}) => {
    const server = await startExampleServer(DIST, join(work, name), { env });
    servers.push(server);
    return server;
  };

  async function skopeo(...args: string[]): Promise<void> {
    const global = ['--policy', join(work, 'policy.json'), '--registries-conf', join(work, 'registries.conf')];
    try {
      await runFile('skopeo', [...global, ...args], { maxBuffer: 16 * MiB });
    } catch (error) {
      const { code, stderr } = error as { code?: unknown; stderr?: string };
      if (code === 'ENOENT') throw new Error('skopeo is not installed: apt-get install -y skopeo (as .ci/run does)');
      throw new Error(`skopeo ${args.join(' ')} failed:\n${stderr || String(error)}`);
    }
  }

  async function scrape(server: ExampleServer): Promise<Scrape> {
    const response = await request(`${server.url}/metrics`, { method: 'GET' });
    expect(response.status).toBe(200);
    expect(response.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    return parsePrometheusText(response.body.toString('utf8'));
  }

  /** How much each sample moved between two scrapes. */
  const delta = (before: Scrape, after: Scrape) => (name: string, labels: Record<string, string> = {}) => after.value(name, labels) - before.value(name, labels);

  it('a skopeo push and pull move the counters by exactly the blob sizes and counts', async () => {
    const server = await start('metrics');
    const layout = join(work, 'image');
    const image: GeneratedImage = await writeImageLayout(layout, { tag: 'v1', fileSizes: [1000, 2 * MiB + 3] });
    const blobs = [image.config, ...image.layers];
    const blobBytes = blobs.reduce((sum, blob) => sum + blob.size, 0);
    const host = new URL(server.url).host;

    const beforePush = await scrape(server);
    await skopeo('copy', '--preserve-digests', '--dest-tls-verify=false', `oci:${layout}:v1`, `docker://${host}/ops/app:v1`);
    const afterPush = await scrape(server);
    const pushed = delta(beforePush, afterPush);
    expect(pushed('oci_registry_received_bytes_total', { route: 'upload' })).toBe(blobBytes);
    expect(pushed('oci_registry_received_bytes_total', { route: 'manifest' })).toBe(image.manifest.size);
    expect(pushed('oci_registry_blob_commits_total')).toBe(blobs.length);
    expect(pushed('oci_registry_blob_committed_bytes_total')).toBe(blobBytes);
    expect(pushed('oci_registry_upload_sessions_ended_total', { outcome: 'committed' })).toBe(blobs.length);
    expect(pushed('oci_registry_manifests_pushed_total')).toBe(1);
    expect(pushed('oci_registry_requests_total', { route: 'manifest', method: 'PUT', status: '201' })).toBe(1);
    expect(pushed('oci_registry_sent_bytes_total', { route: 'blob' })).toBe(0);

    await skopeo('copy', '--src-tls-verify=false', `docker://${host}/ops/app:v1`, `oci:${join(work, 'pulled')}:v1`);
    const pulled = delta(afterPush, await scrape(server));
    expect(pulled('oci_registry_sent_bytes_total', { route: 'blob' })).toBe(blobBytes);
    expect(pulled('oci_registry_requests_total', { route: 'blob', method: 'GET', status: '200' })).toBe(blobs.length);
    const manifestGets = pulled('oci_registry_requests_total', { route: 'manifest', method: 'GET', status: '200' });
    expect(manifestGets).toBeGreaterThanOrEqual(1);
    expect(pulled('oci_registry_sent_bytes_total', { route: 'manifest' })).toBe(manifestGets * image.manifest.size);
    expect(pulled('oci_registry_received_bytes_total')).toBe(0);
    expect(pulled('oci_registry_blob_commits_total')).toBe(0);
    expect(pulled('oci_registry_request_duration_seconds_count', { route: 'blob', method: 'GET' })).toBe(blobs.length);
  }, 120_000);

  it('serves /healthz and /readyz, starts read-only with READ_ONLY=1 and switches on SIGUSR2', async () => {
    const server = await start('read-only', { READ_ONLY: '1' });
    expect((await request(`${server.url}/healthz`, { method: 'GET' })).status).toBe(200);
    const ready = async () => JSON.parse((await request(`${server.url}/readyz`, { method: 'GET' })).body.toString('utf8')) as { status: string; readOnly: boolean };
    expect(await ready()).toEqual({ status: 'ready', readOnly: true });

    const startUpload = () => request(`${server.url}/v2/ops/ro/blobs/uploads/`, { method: 'POST' });
    const refused = await startUpload();
    expect(refused.status).toBe(405);
    expect(JSON.parse(refused.body.toString('utf8')).errors[0]).toMatchObject({ code: 'UNSUPPORTED', detail: expect.stringContaining('read-only') });
    expect((await request(`${server.url}/v2/`, { method: 'GET' })).status).toBe(200);

    server.signal('SIGUSR2');
    await waitFor('read-only mode to switch off', ready, (state) => !state.readOnly);
    expect((await startUpload()).status).toBe(202);
    server.signal('SIGUSR2');
    await waitFor('read-only mode to switch on again', ready, (state) => state.readOnly);
    expect((await startUpload()).status).toBe(405);
  });
});
