/** OCI test data: media types, descriptors, generated images, and pushing them. */
import type supertest from 'supertest';
import { sha256 } from './http';

/** OCI and Docker media types used across the manifest suites. */
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';

/** A descriptor of `data` with `mediaType`. */
export function descriptor(mediaType: string, data: Buffer | string) {
  return { mediaType, digest: sha256(data), size: Buffer.byteLength(data) };
}

/** Pushes `data` as a blob of `repository` in one POST. */
export async function pushBlob(agent: ReturnType<typeof supertest>, repository: string, data: Buffer | string): Promise<string> {
  const digest = sha256(data);
  await agent.post(`/v2/${repository}/blobs/uploads/?digest=${digest}`).set('Content-Type', 'application/octet-stream').send(Buffer.from(data)).expect(201);
  return digest;
}

/** An image in memory: config and layer bytes, and an OCI manifest over them. */
export interface TestImage {
  config: string;
  layers: string[];
  manifest: Buffer;
  digest: string;
}

/** Builds an OCI image manifest (its fields can be extended), without pushing anything. */
export function makeImage(seed: string, extra: Record<string, unknown> = {}, layerCount = 2): TestImage {
  const config = JSON.stringify({ architecture: 'amd64', os: 'linux', seed });
  const layers = Array.from({ length: layerCount }, (_, index) => `layer ${index} of ${seed}`);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: descriptor('application/vnd.oci.image.config.v1+json', config),
      layers: layers.map((layer) => descriptor('application/vnd.oci.image.layer.v1.tar', layer)),
      ...extra,
    }),
  );
  return { config, layers, manifest, digest: sha256(manifest) };
}

// Manifests are sent as strings: superagent would serialize a Buffer as JSON under a `+json` type.

/** Pushes an image's blobs and then its manifest under `reference` (its digest by default). */
export async function pushImage(agent: ReturnType<typeof supertest>, repository: string, image: TestImage, reference = image.digest) {
  for (const blob of [image.config, ...image.layers]) await pushBlob(agent, repository, blob);
  return agent.put(`/v2/${repository}/manifests/${reference}`).set('Content-Type', OCI_MANIFEST).send(image.manifest.toString()).expect(201);
}
