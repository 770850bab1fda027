/**
 * The example server as a pull-through mirror (UPSTREAM_* environment) of the reference
 * registry (Debian's docker-registry, with htpasswd Basic auth), driven by real clients: skopeo
 * copies an image and a multi-platform index into the upstream and pulls them back through the
 * mirror; podman pulls through a registries.conf mirror entry. Then the upstream is stopped.
 * A recording proxy in front of the upstream shows what the mirror asked of it.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describeWithPrograms } from '../support/binaries';
import { buildExampleServer, startExampleServer, type ExampleServer } from '../support/example-server';
import { request } from '../support/http';
import { blobPath, layoutManifests, MEDIA_TYPES, sameFileContents, writeImageLayout, writeMultiPlatformLayout, type Descriptor, type GeneratedImage, type GeneratedIndex } from '../support/oci-layout';
import { startRecordingProxy, type RecordingProxy } from '../support/recording-proxy';
import { startReferenceRegistry, type ReferenceRegistry } from '../support/reference-registry';
import { skopeoIn, type Skopeo } from '../support/skopeo';

const runFile = promisify(execFile);
const MiB = 1024 * 1024;

describeWithPrograms(['docker-registry', 'htpasswd', 'skopeo', 'podman'], 'the example server mirroring the reference registry', () => {
  let work: string;
  let buildDir: string | undefined;
  let upstream: ReferenceRegistry | undefined;
  let proxy: RecordingProxy | undefined;
  let mirror: ExampleServer | undefined;
  let image: GeneratedImage;
  let multi: GeneratedIndex;
  let small: GeneratedImage;
  let unpulled: GeneratedImage;
  /** host:port of the mirror. */
  let mirrorHost: string;
  let skopeo: Skopeo;

  const layout = (name: string) => join(work, name);

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'oci-mirror-e2e-'));
    [buildDir, image, multi, small, unpulled, upstream] = await Promise.all([
      buildExampleServer(),
      writeImageLayout(layout('image'), { tag: 'v1', fileSizes: [100, MiB, 9 * MiB + 7] }),
      writeMultiPlatformLayout(layout('multi'), {
        tag: 'v1',
        fileSizes: [4000, 300_000],
        platforms: [
          { os: 'linux', architecture: 'amd64' },
          { os: 'linux', architecture: 'arm64' },
        ],
      }),
      writeImageLayout(layout('small'), { tag: 'v1', fileSizes: [2000, 50_000] }),
      writeImageLayout(layout('unpulled'), { tag: 'v1', fileSizes: [3000] }),
      mkdtempIn('upstream').then((dir) => startReferenceRegistry(dir)),
    ]);
    skopeo = await skopeoIn(work, () => `mirror log:\n${mirror?.logTail()}\nupstream log:\n${upstream?.logTail()}`);
    const creds = `${upstream.username}:${upstream.password}`;
    const push = (name: string, reference: string, all = false) =>
      skopeo('copy', ...(all ? ['--all'] : []), '--preserve-digests', '--dest-tls-verify=false', '--dest-creds', creds, `oci:${layout(name)}:v1`, `docker://${upstream!.host}/${reference}`);
    await push('image', 'e2e/app:v1');
    await push('multi', 'e2e/multi:v1', true);
    await push('small', 'e2e/small:v1');
    await push('unpulled', 'e2e/unpulled:v1');
    proxy = await startRecordingProxy(new URL(upstream.url));
    mirror = await startExampleServer(buildDir, join(work, 'data'), {
      env: { UPSTREAM_URL: proxy.url, UPSTREAM_PREFIX: 'mirrored/', UPSTREAM_USERNAME: upstream.username, UPSTREAM_PASSWORD: upstream.password },
    });
    mirrorHost = new URL(mirror.url).host;
  }, 180_000);

  afterAll(async () => {
    await mirror?.stop();
    await proxy?.close();
    await upstream?.stop();
    if (work) await rm(work, { recursive: true, force: true });
    if (buildDir) await rm(buildDir, { recursive: true, force: true });
  });

  async function mkdtempIn(name: string): Promise<string> {
    return mkdtemp(join(tmpdir(), `oci-mirror-${name}-`));
  }

  /** Checks that `copy` holds exactly `descriptors`' blobs, each byte for byte as in `original`. */
  async function expectSameBlobs(original: string, copy: string, descriptors: Descriptor[]): Promise<void> {
    for (const { digest } of descriptors) {
      const same = await sameFileContents(blobPath(original, digest), blobPath(copy, digest));
      expect({ digest, same }).toEqual({ digest, same: true });
    }
  }

  const pullImage = (reference: string, into: string) => skopeo('copy', '--preserve-digests', '--src-tls-verify=false', `docker://${mirrorHost}/${reference}`, `oci:${layout(into)}:v1`);
  const blobGets = () => proxy!.requests.filter((req) => req.method === 'GET' && req.url.includes('/blobs/'));

  it('skopeo pulls an image through the mirror, byte-identical, each blob fetched from the upstream once', async () => {
    await pullImage('mirrored/e2e/app:v1', 'pulled');
    expect((await layoutManifests(layout('pulled'))).map((entry) => entry.digest)).toEqual([image.manifest.digest]);
    await expectSameBlobs(layout('image'), layout('pulled'), [image.manifest, image.config, ...image.layers]);
    const fetched = blobGets().length;
    expect(fetched).toBe(1 + image.layers.length);

    await pullImage('mirrored/e2e/app:v1', 'pulled-again');
    await expectSameBlobs(layout('image'), layout('pulled-again'), [image.manifest, image.config, ...image.layers]);
    expect(blobGets()).toHaveLength(fetched);
    // The upstream wanted credentials, and got them.
    expect(proxy!.requests.filter((req) => req.status === 401).length).toBeGreaterThan(0);
    expect(proxy!.requests.filter((req) => req.status === 200).length).toBeGreaterThan(0);
  }, 90_000);

  it('skopeo copies a multi-platform index with --all through the mirror, byte-identical', async () => {
    await skopeo('copy', '--all', '--preserve-digests', '--src-tls-verify=false', `docker://${mirrorHost}/mirrored/e2e/multi:v1`, `oci:${layout('multi-pulled')}:v1`);
    expect(await layoutManifests(layout('multi-pulled'))).toEqual([expect.objectContaining({ mediaType: MEDIA_TYPES.imageIndex, digest: multi.index.digest })]);
    await expectSameBlobs(layout('multi'), layout('multi-pulled'), [multi.index, ...multi.images.flatMap((each) => [each.manifest, each.config, ...each.layers])]);
    const tags = await request(`${mirror!.url}/v2/mirrored/e2e/multi/tags/list`, { method: 'GET' });
    expect(JSON.parse(tags.body.toString('utf8'))).toEqual({ name: 'mirrored/e2e/multi', tags: ['v1'] });
  }, 90_000);

  it('podman pulls through a registries.conf mirror entry (the upstream location itself unreachable)', async () => {
    const podmanDir = await mkdtempIn('podman');
    try {
      const conf = join(podmanDir, 'registries.conf');
      // Port 9 (discard) on loopback refuses connections: the pull can only succeed through the mirror.
      await writeFile(
        conf,
        ['[[registry]]', 'prefix = "upstream.invalid"', 'location = "127.0.0.1:9"', '', '[[registry.mirror]]', `location = "${mirrorHost}/mirrored"`, 'insecure = true', ''].join('\n'),
      );
      const podman = async (...args: string[]) => {
        const global = ['--root', join(podmanDir, 'root'), '--runroot', join(podmanDir, 'run'), '--tmpdir', join(podmanDir, 'tmp'), '--storage-driver', 'vfs', '--events-backend', 'none', '--cgroup-manager', 'cgroupfs'];
        try {
          const { stdout } = await runFile('podman', [...global, ...args], { env: { ...process.env, CONTAINERS_REGISTRIES_CONF: conf, TMPDIR: podmanDir }, maxBuffer: 16 * MiB });
          return stdout;
        } catch (error) {
          const { code, stderr } = error as { code?: unknown; stderr?: string };
          if (code === 'ENOENT') throw new Error('podman is not installed: apt-get install -y podman (as .ci/run does)');
          throw new Error(`podman ${args.join(' ')} failed:\n${stderr || String(error)}\nmirror log:\n${mirror?.logTail()}`);
        }
      };
      await podman('pull', '--signature-policy', join(work, 'policy.json'), 'upstream.invalid/e2e/small:v1');
      const inspected = JSON.parse(await podman('image', 'inspect', 'upstream.invalid/e2e/small:v1')) as { Digest: string; RootFS: { Layers: string[] } }[];
      expect(inspected[0].Digest).toBe(small.manifest.digest);
      expect(proxy!.requests.filter((req) => req.url === `/v2/e2e/small/manifests/v1`).length).toBeGreaterThan(0);
    } finally {
      await rm(podmanDir, { recursive: true, force: true });
    }
  }, 120_000);

  it('with the upstream stopped, cached images still pull and an uncached blob gets a quick 503', async () => {
    await proxy!.close();
    await upstream!.stop();
    await pullImage('mirrored/e2e/app:v1', 'pulled-offline');
    await expectSameBlobs(layout('image'), layout('pulled-offline'), [image.manifest, image.config, ...image.layers]);
    const started = Date.now();
    const missing = await request(`${mirror!.url}/v2/mirrored/e2e/unpulled/blobs/${unpulled.layers[0].digest}`, { method: 'GET' });
    expect(Date.now() - started).toBeLessThan(5000);
    expect([missing.status, missing.headers['retry-after'], JSON.parse(missing.body.toString('utf8')).errors[0].code]).toEqual([503, '10', 'UNKNOWN']);
    const manifest = await request(`${mirror!.url}/v2/mirrored/e2e/unpulled/manifests/v1`, { method: 'GET' });
    expect(manifest.status).toBe(503);
  }, 90_000);
});
