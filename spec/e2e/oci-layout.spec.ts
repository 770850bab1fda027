/** The OCI layout generator that the real-client suites push from. */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  blobPath,
  layoutManifests,
  MEDIA_TYPES,
  REF_NAME_ANNOTATION,
  sameFileContents,
  writeImageLayout,
  writeMultiPlatformLayout,
  type Descriptor,
} from '../support/oci-layout';
import { useTempDir } from '../support/temp-dir';

const runFile = promisify(execFile);

describe('OCI layout generator', () => {
  const work = useTempDir('oci-layout-');

  async function readJson(layout: string, descriptor: Descriptor) {
    return JSON.parse(await readFile(blobPath(layout, descriptor.digest), 'utf8'));
  }

  /** Every blob file is named by the sha256 of its bytes. */
  async function expectContentAddressed(layout: string): Promise<string[]> {
    const names = await readdir(join(layout, 'blobs', 'sha256'));
    for (const name of names) {
      const hex = createHash('sha256').update(await readFile(join(layout, 'blobs', 'sha256', name))).digest('hex');
      expect(hex).toBe(name);
    }
    return names.map((name) => `sha256:${name}`).sort();
  }

  it('writes one image: a tagged manifest, its config and one tar layer with one random file per size', async () => {
    const layout = join(work(), 'image');
    const fileSizes = [0, 100, 512, 1024 * 1024 + 1];
    const image = await writeImageLayout(layout, { tag: 'v1', fileSizes });

    expect(JSON.parse(await readFile(join(layout, 'oci-layout'), 'utf8'))).toEqual({ imageLayoutVersion: '1.0.0' });
    expect(await layoutManifests(layout)).toEqual([
      expect.objectContaining({ mediaType: MEDIA_TYPES.imageManifest, digest: image.manifest.digest, annotations: { [REF_NAME_ANNOTATION]: 'v1' } }),
    ]);
    const manifest = await readJson(layout, image.manifest);
    expect(manifest).toEqual({ schemaVersion: 2, mediaType: MEDIA_TYPES.imageManifest, config: image.config, layers: image.layers });
    const config = await readJson(layout, image.config);
    expect(config).toMatchObject({ os: 'linux', architecture: 'amd64', rootfs: { type: 'layers', diff_ids: image.layers.map((layer) => layer.digest) } });
    expect(await expectContentAddressed(layout)).toEqual([image.manifest, image.config, ...image.layers].map((blob) => blob.digest).sort());

    for (const [index, layer] of image.layers.entries()) {
      const path = blobPath(layout, layer.digest);
      expect((await readFile(path)).length).toBe(layer.size);
      // GNU tar verifies each header's checksum; the archive holds exactly one file of the size asked for.
      const { stdout } = await runFile('tar', ['--list', '--verbose', '--numeric-owner', '--file', path]);
      const entries = stdout.trim().split('\n');
      expect(entries).toHaveLength(1);
      expect(entries[0].split(/\s+/)).toEqual(expect.arrayContaining(['-rw-r--r--', '0/0', String(fileSizes[index]), `layer-${index}.bin`]));
    }
  });

  it('draws new random bytes every time', async () => {
    const first = await writeImageLayout(join(work(), 'first'), { tag: 'v1', fileSizes: [4096] });
    const second = await writeImageLayout(join(work(), 'second'), { tag: 'v1', fileSizes: [4096] });
    expect(second.layers[0].size).toBe(first.layers[0].size);
    expect(second.layers[0].digest).not.toBe(first.layers[0].digest);
  });

  it('writes a multi-platform image: a tagged index over one image per platform', async () => {
    const layout = join(work(), 'multi');
    const platforms = [
      { os: 'linux', architecture: 'amd64' },
      { os: 'linux', architecture: 'arm64' },
    ];
    const generated = await writeMultiPlatformLayout(layout, { tag: 'multi', fileSizes: [10, 2000], platforms });

    expect(await layoutManifests(layout)).toEqual([
      expect.objectContaining({ mediaType: MEDIA_TYPES.imageIndex, digest: generated.index.digest, annotations: { [REF_NAME_ANNOTATION]: 'multi' } }),
    ]);
    const index = await readJson(layout, generated.index);
    expect(index.manifests).toEqual(platforms.map((platform, i) => ({ ...generated.images[i].manifest, platform })));
    for (const image of generated.images) {
      expect(await readJson(layout, image.config)).toMatchObject(image.platform);
      expect((await readJson(layout, image.manifest)).layers).toEqual(image.layers);
    }
    const all = [generated.index, ...generated.images.flatMap((image) => [image.manifest, image.config, ...image.layers])];
    expect(await expectContentAddressed(layout)).toEqual(all.map((blob) => blob.digest).sort());
  });

  it('sameFileContents compares files byte for byte, across read chunks', async () => {
    const data = Buffer.alloc(200_000, 7);
    const changed = Buffer.from(data);
    changed[150_000] = 8;
    const write = async (name: string, bytes: Buffer) => {
      await writeFile(join(work(), name), bytes);
      return join(work(), name);
    };
    const original = await write('original', data);
    expect(await sameFileContents(original, await write('copy', data))).toBe(true);
    expect(await sameFileContents(original, await write('changed', changed))).toBe(false);
    expect(await sameFileContents(original, await write('prefix', data.subarray(0, 100_000)))).toBe(false);
    expect(await sameFileContents(await write('shorter', data.subarray(0, 100_000)), original)).toBe(false);
    expect(await sameFileContents(await write('empty', Buffer.alloc(0)), await write('empty-too', Buffer.alloc(0)))).toBe(true);
  });
});
