/**
 * Quotas and immutable tags as skopeo meets them, against the example server started with
 * QUOTA_BYTES and IMMUTABLE_TAGS. A recording proxy in front shows what crossed the wire: a layer
 * whose size the client announces is refused before its bytes are sent, one streamed without a
 * size (skopeo compresses it on the way) is stopped mid-stream, and neither counts.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildExampleServer, startExampleServer, type ExampleServer } from '../support/example-server';
import { request } from '../support/http';
import { writeImageLayout, type GeneratedImage } from '../support/oci-layout';
import { startRecordingProxy, type ProxiedRequest, type RecordingProxy } from '../support/recording-proxy';
import { skopeoOutcomesIn, type SkopeoOutcome } from '../support/skopeo';

const MiB = 1024 * 1024;
const QUOTA = 12 * MiB;

describe('skopeo against the example server with a quota and immutable tags', () => {
  let work: string;
  let buildDir: string | undefined;
  let server: ExampleServer | undefined;
  let proxy: RecordingProxy | undefined;
  let fits: GeneratedImage;
  let big: GeneratedImage;
  let other: GeneratedImage;
  let skopeo: SkopeoOutcome;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'oci-e2e-policies-'));
    [buildDir, fits, big, other] = await Promise.all([
      buildExampleServer(),
      writeImageLayout(join(work, 'fits'), { tag: 'v1', fileSizes: [100, MiB, 2 * MiB + 5] }),
      // Its big layer alone is over the quota.
      writeImageLayout(join(work, 'big'), { tag: 'v1', fileSizes: [300, 40 * MiB] }),
      writeImageLayout(join(work, 'other'), { tag: 'v1', fileSizes: [200] }),
    ]);
    skopeo = await skopeoOutcomesIn(work);
    server = await startExampleServer(buildDir, join(work, 'data'), { env: { QUOTA_BYTES: String(QUOTA), IMMUTABLE_TAGS: '^v\\d+$' } });
    proxy = await startRecordingProxy(new URL(server.url));
  }, 120_000);

  afterAll(async () => {
    await proxy?.close();
    await server?.stop();
    if (work) await rm(work, { recursive: true, force: true });
    if (buildDir) await rm(buildDir, { recursive: true, force: true });
  });

  const copy = (layout: string, destination: string, ...flags: string[]) =>
    skopeo('copy', ...flags, '--dest-tls-verify=false', `oci:${join(work, layout)}:v1`, `docker://${proxy!.host}/${destination}`);

  async function recorded<T>(action: () => Promise<T>): Promise<[T, ProxiedRequest[]]> {
    const start = proxy!.requests.length;
    const result = await action();
    return [result, proxy!.requests.slice(start)];
  }

  async function usage(repository: string): Promise<{ bytes: number; blobs: number; limit: number }> {
    return JSON.parse((await request(`${server!.url}/api/usage?repository=${repository}`, { method: 'GET' })).body.toString('utf8'));
  }

  /** The most bytes an upload session may hold by its Range header (which reads `0-0` for none and for one); 0 when the client cancelled it. */
  async function storedAtMost(url: string): Promise<number> {
    const status = await request(`${server!.url}${url.split('?')[0]}`, { method: 'GET' });
    return status.status === 204 ? Number(String(status.headers.range).split('-')[1]) + 1 : 0;
  }

  /**
   * Copies the big image to `repository` and checks that skopeo fails with the quota's message
   * and that only PATCHes were refused; resolves to the requests it sent.
   */
  async function refusedPush(repository: string, ...flags: string[]): Promise<ProxiedRequest[]> {
    const [result, requests] = await recorded(() => copy('big', `${repository}:v1`, ...flags));
    expect(result.code).not.toBe(0);
    expect(result.output).toContain(`quota exceeded: ${repository} holds `);
    expect(result.output).toContain(` of its ${QUOTA} bytes`);
    const refused = requests.filter((req) => req.status === 403);
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.every((req) => req.method === 'PATCH')).toBe(true);
    return requests;
  }

  const blobBytes = (image: GeneratedImage) => [image.config, ...image.layers].reduce((sum, blob) => sum + blob.size, 0);

  it('takes a push that fits, and counts its blobs', async () => {
    const [result] = await recorded(() => copy('fits', 'e2e/app:v1', '--preserve-digests'));
    expect(result).toMatchObject({ code: 0 });
    expect(await usage('e2e/app')).toMatchObject({ bytes: blobBytes(fits), blobs: 4, limit: QUOTA });
  }, 60_000);

  it('refuses a push over the quota at the big layer, before its bytes are sent, when the client announces sizes', async () => {
    const before = (await usage('e2e/app')).bytes;
    const requests = await refusedPush('e2e/app', '--preserve-digests');
    const layer = big.layers[1];
    for (const req of requests.filter((refused) => refused.status === 403)) {
      // Refused from its Content-Length: the session took no byte, and the client stopped sending.
      expect(await storedAtMost(req.url)).toBeLessThanOrEqual(1);
      expect(req.bodyBytes).toBeLessThan(layer.size);
    }
    expect(requests.some((req) => req.method === 'PUT' && req.url.includes('/manifests/'))).toBe(false);
    // The small blobs skopeo sent alongside may have gone in before it gave up; the big layer did not.
    expect((await usage('e2e/app')).bytes - before).toBeLessThanOrEqual(big.layers[0].size + big.config.size);
    expect((await request(`${server!.url}/v2/e2e/app/blobs/${layer.digest}`, { method: 'HEAD' })).status).toBe(404);
  }, 60_000);

  it('stops a layer streamed without a size once it would go over, and keeps none of it', async () => {
    const before = await usage('e2e/streamed');
    // Without --preserve-digests skopeo gzips each layer as it sends it, so no size is announced.
    const requests = await refusedPush('e2e/streamed');
    for (const req of requests.filter((refused) => refused.status === 403)) {
      expect(req.bodyBytes).toBeGreaterThan(0);
      expect(req.bodyBytes).toBeLessThan(big.layers[1].size);
      expect(await storedAtMost(req.url)).toBeLessThanOrEqual(QUOTA);
    }
    const after = await usage('e2e/streamed');
    expect(after.bytes).toBeLessThan(MiB);
    expect(after.bytes - before.bytes).toBeLessThan(MiB);
  }, 60_000);

  it('refuses a push that would move an immutable tag with a message saying so; the same image goes again', async () => {
    const moved = await copy('other', 'e2e/app:v1', '--preserve-digests');
    expect(moved.code).not.toBe(0);
    expect(moved.output).toContain(`tag v1 in e2e/app is immutable: it names ${fits.manifest.digest} and cannot be moved to ${other.manifest.digest}`);
    expect(await copy('fits', 'e2e/app:v1', '--preserve-digests')).toMatchObject({ code: 0 });
    const inspected = await skopeo('inspect', '--raw', '--tls-verify=false', `docker://${proxy!.host}/e2e/app:v1`);
    expect(JSON.parse(inspected.output).layers.map((layer: { digest: string }) => layer.digest)).toEqual(fits.layers.map((layer) => layer.digest));
    // A tag the expression does not match moves freely.
    expect(await copy('other', 'e2e/app:latest', '--preserve-digests')).toMatchObject({ code: 0 });
  }, 60_000);
});
