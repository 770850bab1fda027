/**
 * The example server driven by a real client: skopeo pushes, inspects, lists, pulls, copies and
 * deletes images from OCI layouts generated per run. Every request skopeo sends goes through a
 * recording proxy, so the tests can tell what crossed the wire (uploads, mounts) without relying
 * on the server's logs.
 *
 * skopeo remembers in its blob-info cache (as root: /var/lib/containers/cache) which repository
 * holds which blob, and mounts across repositories only from what it remembers. Every run
 * generates new random blobs, so entries left by other runs never match and the tests repeat.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildExampleServer, startExampleServer, type ExampleServer } from '../support/example-server';
import { request, sha256 } from '../support/http';
import {
  blobPath,
  layoutManifests,
  MEDIA_TYPES,
  sameFileContents,
  writeImageLayout,
  writeMultiPlatformLayout,
  type Descriptor,
  type GeneratedImage,
  type GeneratedIndex,
} from '../support/oci-layout';
import { startRecordingProxy, type ProxiedRequest, type RecordingProxy } from '../support/recording-proxy';
import { prepareSkopeo, type Skopeo } from '../support/skopeo';

const MiB = 1024 * 1024;

describe('skopeo against the example server', () => {
  let work: string;
  let buildDir: string | undefined;
  let server: ExampleServer | undefined;
  let proxy: RecordingProxy | undefined;
  let image: GeneratedImage;
  let multi: GeneratedIndex;
  /** host:port of the registry as skopeo sees it (the recording proxy). */
  let registry: string;
  let skopeo: Skopeo;

  const imageLayout = () => join(work, 'image');
  const multiLayout = () => join(work, 'multi');

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'oci-e2e-'));
    [buildDir, image, multi] = await Promise.all([
      buildExampleServer(),
      // Layers of a few bytes up to one over 64 MiB, with sizes that are not multiples of a chunk.
      writeImageLayout(imageLayout(), { tag: 'v1', fileSizes: [100, MiB, 3 * MiB + 7, 65 * MiB + 12345] }),
      writeMultiPlatformLayout(multiLayout(), {
        tag: 'v1',
        fileSizes: [4000, 300_000],
        platforms: [
          { os: 'linux', architecture: 'amd64' },
          { os: 'linux', architecture: 'arm64' },
        ],
      }),
    ]);
    skopeo = await prepareSkopeo(work, () => `server log:\n${server?.logTail()}`);
    server = await startExampleServer(buildDir, join(work, 'data'));
    proxy = await startRecordingProxy(new URL(server.url));
    registry = proxy.host;
  }, 120_000);

  afterAll(async () => {
    await proxy?.close();
    await server?.stop();
    if (work) await rm(work, { recursive: true, force: true });
    if (buildDir) await rm(buildDir, { recursive: true, force: true });
  });


  /** Runs `action` and resolves to the requests skopeo sent meanwhile. */
  async function recorded(action: () => Promise<unknown>): Promise<ProxiedRequest[]> {
    const start = proxy!.requests.length;
    await action();
    return proxy!.requests.slice(start);
  }

  const blob = (layout: string, descriptor: Descriptor) => readFile(blobPath(layout, descriptor.digest), 'utf8');
  const digests = (descriptors: Descriptor[]) => descriptors.map((descriptor) => descriptor.digest).sort();

  /** Digests committed by upload (PUT or POST `?digest=`, 201) in `repository`. */
  function uploadedDigests(requests: ProxiedRequest[], repository: string): string[] {
    return uploadRequests(requests, repository)
      .filter((req) => req.status === 201 && queryOf(req).has('digest'))
      .map((req) => queryOf(req).get('digest')!)
      .sort();
  }

  /** Body bytes sent to `repository`'s upload endpoints. */
  function uploadedBytes(requests: ProxiedRequest[], repository: string): number {
    return uploadRequests(requests, repository).reduce((sum, req) => sum + req.bodyBytes, 0);
  }

  function uploadRequests(requests: ProxiedRequest[], repository: string): ProxiedRequest[] {
    return requests.filter((req) => req.url.startsWith(`/v2/${repository}/blobs/uploads/`));
  }

  function queryOf(req: ProxiedRequest): URLSearchParams {
    return new URL(req.url, 'http://registry.invalid').searchParams;
  }

  /** Checks that `copy` holds exactly `descriptors`' blobs, each byte for byte as in `original`. */
  async function expectSameBlobs(original: string, copy: string, descriptors: Descriptor[]): Promise<void> {
    const stored = (await readdir(join(copy, 'blobs', 'sha256'))).map((hex) => `sha256:${hex}`).sort();
    expect(stored).toEqual([...new Set(digests(descriptors))]);
    for (const { digest } of descriptors) {
      const same = await sameFileContents(blobPath(original, digest), blobPath(copy, digest));
      expect({ digest, same }).toEqual({ digest, same: true });
    }
  }

  it('pushes an image by tag, every blob through the upload API and every digest preserved', async () => {
    const digestFile = join(work, 'image.digest');
    const push = await recorded(() =>
      skopeo('copy', '--preserve-digests', '--dest-tls-verify=false', '--digestfile', digestFile, `oci:${imageLayout()}:v1`, `docker://${registry}/e2e/app:v1`),
    );
    expect(await readFile(digestFile, 'utf8')).toBe(image.manifest.digest);
    expect(uploadedDigests(push, 'e2e/app')).toEqual(digests([image.config, ...image.layers]));
    expect(uploadedBytes(push, 'e2e/app')).toBe([image.config, ...image.layers].reduce((sum, blob) => sum + blob.size, 0));
    expect(push.filter((req) => req.method === 'PUT' && req.url === '/v2/e2e/app/manifests/v1').map((req) => req.status)).toEqual([201]);

    // A second tag for the same image: every blob is already there, so none is sent again.
    const retag = await recorded(() =>
      skopeo('copy', '--preserve-digests', '--dest-tls-verify=false', `oci:${imageLayout()}:v1`, `docker://${registry}/e2e/app:latest`),
    );
    expect(uploadedBytes(retag, 'e2e/app')).toBe(0);
  }, 90_000);

  it('skopeo inspect reports the digest, platform, layers and tags, and --raw returns the pushed bytes', async () => {
    const inspected = JSON.parse(await skopeo('inspect', '--tls-verify=false', `docker://${registry}/e2e/app:v1`));
    expect(inspected).toMatchObject({
      Name: `${registry}/e2e/app`,
      Digest: image.manifest.digest,
      RepoTags: ['latest', 'v1'],
      Architecture: 'amd64',
      Os: 'linux',
      Layers: image.layers.map((layer) => layer.digest),
    });
    expect(await skopeo('inspect', '--raw', '--tls-verify=false', `docker://${registry}/e2e/app:latest`)).toBe(await blob(imageLayout(), image.manifest));
    expect(await skopeo('inspect', '--config', '--raw', '--tls-verify=false', `docker://${registry}/e2e/app:v1`)).toBe(
      await blob(imageLayout(), image.config),
    );
  }, 30_000);

  it('skopeo list-tags lists the tags in lexical order', async () => {
    const listed = JSON.parse(await skopeo('list-tags', '--tls-verify=false', `docker://${registry}/e2e/app`));
    expect(listed).toEqual({ Repository: `${registry}/e2e/app`, Tags: ['latest', 'v1'] });
  }, 30_000);

  it('pulls the image back into a new layout, every blob and the manifest byte for byte', async () => {
    const pulled = join(work, 'pulled');
    await skopeo('copy', '--preserve-digests', '--src-tls-verify=false', `docker://${registry}/e2e/app:v1`, `oci:${pulled}:v1`);
    expect((await layoutManifests(pulled)).map((entry) => entry.digest)).toEqual([image.manifest.digest]);
    await expectSameBlobs(imageLayout(), pulled, [image.manifest, image.config, ...image.layers]);
  }, 60_000);

  it('copies a multi-platform image index with --all, and pulls it back whole', async () => {
    const digestFile = join(work, 'multi.digest');
    const push = await recorded(() =>
      skopeo('copy', '--all', '--preserve-digests', '--dest-tls-verify=false', '--digestfile', digestFile, `oci:${multiLayout()}:v1`, `docker://${registry}/e2e/multi:v1`),
    );
    expect(await readFile(digestFile, 'utf8')).toBe(multi.index.digest);
    const manifestPuts = push
      .filter((req) => req.method === 'PUT' && req.url.startsWith('/v2/e2e/multi/manifests/'))
      .map((req) => [req.url, req.status]);
    // Platform manifests go by digest (in any order), then the index by tag.
    expect(manifestPuts.slice(0, -1).sort()).toEqual(
      multi.images.map((platformImage) => [`/v2/e2e/multi/manifests/${platformImage.manifest.digest}`, 201]).sort(),
    );
    expect(manifestPuts.at(-1)).toEqual(['/v2/e2e/multi/manifests/v1', 201]);

    const reference = `docker://${registry}/e2e/multi`;
    expect(await skopeo('inspect', '--raw', '--tls-verify=false', `${reference}:v1`)).toBe(await blob(multiLayout(), multi.index));
    for (const platformImage of multi.images) {
      expect(await skopeo('inspect', '--raw', '--tls-verify=false', `${reference}@${platformImage.manifest.digest}`)).toBe(
        await blob(multiLayout(), platformImage.manifest),
      );
    }
    const arm64 = multi.images.find((platformImage) => platformImage.platform.architecture === 'arm64')!;
    const inspected = JSON.parse(await skopeo('--override-arch', 'arm64', 'inspect', '--tls-verify=false', `${reference}:v1`));
    expect(inspected).toMatchObject({ Architecture: 'arm64', Layers: arm64.layers.map((layer) => layer.digest) });

    const pulled = join(work, 'multi-pulled');
    await skopeo('copy', '--all', '--preserve-digests', '--src-tls-verify=false', `${reference}:v1`, `oci:${pulled}:v1`);
    expect(await layoutManifests(pulled)).toEqual([expect.objectContaining({ mediaType: MEDIA_TYPES.imageIndex, digest: multi.index.digest })]);
    await expectSameBlobs(multiLayout(), pulled, [
      multi.index,
      ...multi.images.flatMap((platformImage) => [platformImage.manifest, platformImage.config, ...platformImage.layers]),
    ]);
  }, 60_000);

  it('pushes Docker schema 2 (skopeo converts to a manifest list over v2s2 images) and pulls it back', async () => {
    const dockerList = 'application/vnd.docker.distribution.manifest.list.v2+json';
    const dockerManifest = 'application/vnd.docker.distribution.manifest.v2+json';
    const reference = `docker://${registry}/e2e/docker:v1`;
    await skopeo('copy', '--all', '--format', 'v2s2', '--dest-tls-verify=false', `oci:${multiLayout()}:v1`, reference);

    const listBytes = await skopeo('inspect', '--raw', '--tls-verify=false', reference);
    const list = JSON.parse(listBytes) as { mediaType: string; manifests: (Descriptor & { platform: { architecture: string } })[] };
    expect(list.mediaType).toBe(dockerList);
    expect(list.manifests.map((entry) => [entry.mediaType, entry.platform.architecture])).toEqual([
      [dockerManifest, 'amd64'],
      [dockerManifest, 'arm64'],
    ]);
    // Clients rely on the stored media type coming back as Content-Type.
    const tagged = await request(`${server!.url}/v2/e2e/docker/manifests/v1`, { method: 'GET', headers: { Accept: dockerList } });
    expect([tagged.headers['content-type'], tagged.body.toString('utf8')]).toEqual([dockerList, listBytes]);
    for (const entry of list.manifests) {
      const res = await request(`${server!.url}/v2/e2e/docker/manifests/${entry.digest}`, { method: 'GET', headers: { Accept: dockerManifest } });
      expect([res.status, res.headers['content-type'], sha256(res.body), res.body.length]).toEqual([200, dockerManifest, entry.digest, entry.size]);
    }
    const arm64 = JSON.parse(await skopeo('--override-arch', 'arm64', 'inspect', '--tls-verify=false', reference));
    expect(arm64.Architecture).toBe('arm64');

    // skopeo checks every blob's digest as it pulls; the dir: layout keeps each manifest as it was.
    const pulled = join(work, 'docker-pulled');
    await skopeo('copy', '--all', '--preserve-digests', '--src-tls-verify=false', reference, `dir:${pulled}`);
    expect(await readFile(join(pulled, 'manifest.json'), 'utf8')).toBe(listBytes);
    for (const entry of list.manifests) {
      const manifest = await readFile(join(pulled, `${entry.digest.slice('sha256:'.length)}.manifest.json`));
      expect(sha256(manifest)).toBe(entry.digest);
      const { config, layers } = JSON.parse(manifest.toString('utf8')) as { config: Descriptor; layers: Descriptor[] };
      for (const blobDescriptor of [config, ...layers]) {
        const bytes = await readFile(join(pulled, blobDescriptor.digest.slice('sha256:'.length)));
        expect([sha256(bytes), bytes.length]).toEqual([blobDescriptor.digest, blobDescriptor.size]);
      }
    }
  }, 60_000);

  it('copies to another repository by mounting the layers: no layer byte is sent again', async () => {
    const copy = await recorded(() =>
      skopeo('copy', '--preserve-digests', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${registry}/e2e/app:v1`, `docker://${registry}/e2e/mounted:v1`),
    );
    const mounts = uploadRequests(copy, 'e2e/mounted').filter((req) => req.method === 'POST' && queryOf(req).has('mount'));
    expect(mounts.map((req) => [queryOf(req).get('mount'), queryOf(req).get('from'), req.status]).sort()).toEqual(
      digests(image.layers).map((digest) => [digest, 'e2e/app', 201]),
    );
    // skopeo uploads the small config blob rather than mounting it; no layer goes up, none is read.
    expect(uploadedDigests(copy, 'e2e/mounted').filter((digest) => digest !== image.config.digest)).toEqual([]);
    expect(uploadedBytes(copy, 'e2e/mounted')).toBeLessThanOrEqual(image.config.size);
    expect(copy.filter((req) => req.method === 'GET' && image.layers.some((layer) => req.url.endsWith(layer.digest)))).toEqual([]);

    for (const layer of image.layers) {
      const head = await request(`${server!.url}/v2/e2e/mounted/blobs/${layer.digest}`, { method: 'HEAD' });
      expect([head.status, head.headers['content-length']]).toEqual([200, String(layer.size)]);
    }
    const inspected = JSON.parse(await skopeo('inspect', '--tls-verify=false', `docker://${registry}/e2e/mounted:v1`));
    expect(inspected).toMatchObject({ Digest: image.manifest.digest, Layers: image.layers.map((layer) => layer.digest) });
  }, 60_000);

  it('skopeo delete removes the manifest and every tag on it, and only in that repository', async () => {
    const deletion = await recorded(() => skopeo('delete', '--tls-verify=false', `docker://${registry}/e2e/app:v1`));
    expect(deletion.filter((req) => req.method === 'DELETE').map((req) => [req.url, req.status])).toEqual([
      [`/v2/e2e/app/manifests/${image.manifest.digest}`, 202],
    ]);
    for (const reference of ['v1', 'latest', image.manifest.digest]) {
      const res = await request(`${server!.url}/v2/e2e/app/manifests/${reference}`, { method: 'GET', headers: { Accept: MEDIA_TYPES.imageManifest } });
      expect([reference, res.status, JSON.parse(res.body.toString('utf8')).errors[0].code]).toEqual([reference, 404, 'MANIFEST_UNKNOWN']);
    }
    await expect(skopeo('inspect', '--tls-verify=false', `docker://${registry}/e2e/app:v1`)).rejects.toThrow(/manifest unknown/i);
    const survivor = JSON.parse(await skopeo('inspect', '--tls-verify=false', `docker://${registry}/e2e/mounted:v1`));
    expect(survivor.Digest).toBe(image.manifest.digest);
  }, 30_000);
});
