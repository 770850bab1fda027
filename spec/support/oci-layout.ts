/**
 * Writes OCI image layouts (https://github.com/opencontainers/image-spec/blob/main/image-layout.md)
 * for tests that drive real clients: random tar layers streamed to disk, a config, an image
 * manifest, and optionally an image index over several platforms. Every call draws new random
 * bytes, so no two layouts share a blob and no client cache can skip work between runs.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';

const randomChunk = promisify(randomBytes);

/** Media types the generated layouts use. */
export const MEDIA_TYPES = {
  imageIndex: 'application/vnd.oci.image.index.v1+json',
  imageManifest: 'application/vnd.oci.image.manifest.v1+json',
  imageConfig: 'application/vnd.oci.image.config.v1+json',
  layerTar: 'application/vnd.oci.image.layer.v1.tar',
} as const;

/** The annotation that names a manifest in a layout's index.json. */
export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';

/** An OCI platform. */
export interface Platform {
  os: string;
  architecture: string;
}

/** An OCI content descriptor. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
}

/** One image written into a layout. */
export interface GeneratedImage {
  /** The image manifest's descriptor (with the platform when it is part of an index). */
  manifest: Descriptor;
  config: Descriptor;
  layers: Descriptor[];
  platform: Platform;
}

/** A multi-platform image written into a layout. */
export interface GeneratedIndex {
  /** The image index's descriptor. */
  index: Descriptor;
  images: GeneratedImage[];
}

const RANDOM_CHUNK = 1024 * 1024;
const TAR_BLOCK = 512;

/** Path of a blob in the layout at `dir`. */
export function blobPath(dir: string, digest: string): string {
  const [algorithm, hex] = digest.split(':');
  return join(dir, 'blobs', algorithm, hex);
}

/** The manifests listed in a layout's index.json. */
export async function layoutManifests(dir: string): Promise<Descriptor[]> {
  return (JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: Descriptor[] }).manifests;
}

/**
 * Writes a layout at `dir` holding one image tagged `tag`, with one random tar layer per entry of
 * `fileSizes` (the size of the one file inside each layer's tar).
 */
export async function writeImageLayout(
  dir: string,
  options: { tag: string; fileSizes: number[]; platform?: Platform; runConfig?: Record<string, unknown> },
): Promise<GeneratedImage> {
  await startLayout(dir);
  const image = await writeImage(dir, options.fileSizes, options.platform ?? { os: 'linux', architecture: 'amd64' }, options.runConfig);
  await writeLayoutIndex(dir, options.tag, image.manifest);
  return image;
}

/**
 * Writes a layout at `dir` holding an image index tagged `tag` over one image per platform, each
 * with its own random layers (one per entry of `fileSizes`).
 */
export async function writeMultiPlatformLayout(
  dir: string,
  options: { tag: string; fileSizes: number[]; platforms: Platform[] },
): Promise<GeneratedIndex> {
  await startLayout(dir);
  const images: GeneratedImage[] = [];
  for (const platform of options.platforms) images.push(await writeImage(dir, options.fileSizes, platform));
  const index = await writeJsonBlob(dir, MEDIA_TYPES.imageIndex, {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.imageIndex,
    manifests: images.map((image) => image.manifest),
  });
  await writeLayoutIndex(dir, options.tag, index);
  return { index, images };
}

async function startLayout(dir: string): Promise<void> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
}

async function writeLayoutIndex(dir: string, tag: string, descriptor: Descriptor): Promise<void> {
  const entry = { ...descriptor, annotations: { [REF_NAME_ANNOTATION]: tag } };
  await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPES.imageIndex, manifests: [entry] }));
}

/**
 * Writes a layout at `dir` holding an artifact tagged `tag`: an empty config and one layer per
 * file, titled with its name, as `oras push` makes it; with `subject`, a referrer of that manifest.
 */
export async function writeArtifactLayout(
  dir: string,
  options: {
    tag: string;
    artifactType: string;
    files: { name: string; mediaType: string; bytes: Buffer }[];
    subject?: Descriptor;
    annotations?: Record<string, string>;
  },
): Promise<Descriptor> {
  await startLayout(dir);
  const config = await writeBytesBlob(dir, EMPTY_CONFIG, Buffer.from('{}'));
  const layers: Descriptor[] = [];
  for (const file of options.files) {
    layers.push({ ...(await writeBytesBlob(dir, file.mediaType, file.bytes)), annotations: { 'org.opencontainers.image.title': file.name } });
  }
  const manifest = await writeJsonBlob(dir, MEDIA_TYPES.imageManifest, {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.imageManifest,
    artifactType: options.artifactType,
    config,
    layers,
    ...(options.subject ? { subject: { mediaType: options.subject.mediaType, digest: options.subject.digest, size: options.subject.size } } : {}),
    ...(options.annotations ? { annotations: options.annotations } : {}),
  });
  await writeLayoutIndex(dir, options.tag, manifest);
  return manifest;
}

const EMPTY_CONFIG = 'application/vnd.oci.empty.v1+json';

async function writeImage(dir: string, fileSizes: number[], platform: Platform, runConfig: Record<string, unknown> = {}): Promise<GeneratedImage> {
  const layers: Descriptor[] = [];
  for (const [index, size] of fileSizes.entries()) layers.push(await writeRandomTarLayer(dir, `layer-${index}.bin`, size));
  const config = await writeJsonBlob(dir, MEDIA_TYPES.imageConfig, {
    created: new Date().toISOString(),
    ...platform,
    config: { Cmd: ['/layer-0.bin'], ...runConfig },
    // The layers are uncompressed tars, so each diff id is the layer's own digest.
    rootfs: { type: 'layers', diff_ids: layers.map((layer) => layer.digest) },
    history: layers.map((_, index) => ({ created_by: `random file layer-${index}.bin` })),
  });
  const manifest = await writeJsonBlob(dir, MEDIA_TYPES.imageManifest, {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.imageManifest,
    config,
    layers,
  });
  return { manifest: { ...manifest, platform }, config, layers, platform };
}

async function writeJsonBlob(dir: string, mediaType: string, value: unknown): Promise<Descriptor> {
  return writeBytesBlob(dir, mediaType, Buffer.from(JSON.stringify(value)));
}

async function writeBytesBlob(dir: string, mediaType: string, bytes: Buffer): Promise<Descriptor> {
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  await writeFile(blobPath(dir, digest), bytes);
  return { mediaType, digest, size: bytes.length };
}

/**
 * Streams a tar archive holding one file of `fileSize` random bytes into the layout, hashing it on
 * the way; only one chunk is in memory at a time, whatever the size.
 */
async function writeRandomTarLayer(dir: string, fileName: string, fileSize: number): Promise<Descriptor> {
  const hash = createHash('sha256');
  let size = 0;
  const counted = (part: Buffer): Buffer => {
    hash.update(part);
    size += part.length;
    return part;
  };
  async function* tarArchive(): AsyncGenerator<Buffer> {
    yield counted(tarHeader(fileName, fileSize));
    for (let left = fileSize; left > 0; left -= RANDOM_CHUNK) {
      yield counted(await randomChunk(Math.min(RANDOM_CHUNK, left)));
    }
    // Pad the file to a whole block, then the two zero blocks that end an archive.
    yield counted(Buffer.alloc(((TAR_BLOCK - (fileSize % TAR_BLOCK)) % TAR_BLOCK) + 2 * TAR_BLOCK));
  }
  const partial = join(dir, 'blobs', `.partial-${fileName}-${process.pid}`);
  await pipeline(Readable.from(tarArchive()), createWriteStream(partial));
  const digest = `sha256:${hash.digest('hex')}`;
  await rename(partial, blobPath(dir, digest));
  return { mediaType: MEDIA_TYPES.layerTar, digest, size };
}

/** A ustar header for a regular file owned by root. */
function tarHeader(name: string, size: number): Buffer {
  const header = Buffer.alloc(TAR_BLOCK);
  const field = (offset: number, length: number, value: string) => header.write(value, offset, length, 'ascii');
  const octal = (offset: number, length: number, value: number) => field(offset, length, value.toString(8).padStart(length - 1, '0'));
  field(0, 100, name);
  octal(100, 8, 0o644);
  octal(108, 8, 0);
  octal(116, 8, 0);
  octal(124, 12, size);
  octal(136, 12, 0);
  field(156, 1, '0');
  field(257, 8, 'ustar\u000000');
  // The checksum is computed with its own field read as eight spaces.
  field(148, 8, ' '.repeat(8));
  const checksum = header.reduce((sum, byte) => sum + byte, 0);
  field(148, 8, `${checksum.toString(8).padStart(6, '0')}\u0000 `);
  return header;
}

/** Whether two files hold the same bytes, read as streams side by side. */
export async function sameFileContents(first: string, second: string): Promise<boolean> {
  const left = createReadStream(first)[Symbol.asyncIterator]();
  const right = createReadStream(second)[Symbol.asyncIterator]();
  let pendingLeft: Buffer = Buffer.alloc(0);
  let pendingRight: Buffer = Buffer.alloc(0);
  try {
    for (;;) {
      if (pendingLeft.length === 0) {
        const next = await left.next();
        if (!next.done) pendingLeft = next.value as Buffer;
        else if (pendingRight.length === 0) return (await right.next()).done === true;
        else return false;
      }
      if (pendingRight.length === 0) {
        const next = await right.next();
        if (next.done) return false;
        pendingRight = next.value as Buffer;
      }
      const length = Math.min(pendingLeft.length, pendingRight.length);
      if (!pendingLeft.subarray(0, length).equals(pendingRight.subarray(0, length))) return false;
      pendingLeft = pendingLeft.subarray(length);
      pendingRight = pendingRight.subarray(length);
    }
  } finally {
    await left.return?.();
    await right.return?.();
  }
}
