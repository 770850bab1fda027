// What a manifest is, in the terms people look for: image, multi-platform index or artifact; size, created, platforms.

import { getConfig, getManifest, MEDIA } from './api.js';

const CREATED = 'org.opencontainers.image.created';
const IMAGE_CONFIGS = new Set([MEDIA.ociConfig, MEDIA.dockerConfig]);
/** Children of an index fetched at most, to total its size. */
const MAX_CHILDREN = 16;

/** `os/architecture[/variant]` of an OCI platform object. */
export function platformName(platform) {
  if (!platform) return '';
  return [platform.os, platform.architecture, platform.variant].filter(Boolean).join('/');
}

/** Whether an index entry is an attestation (as `docker buildx` adds beside each platform) rather than an image to run. */
export function isAttestation(descriptor) {
  return descriptor.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest' || platformName(descriptor.platform) === 'unknown/unknown';
}

/** `index`, `image` or `artifact`. */
export function kindOf(manifest) {
  if (Array.isArray(manifest.manifests)) return 'index';
  if (manifest.artifactType || !IMAGE_CONFIGS.has(manifest.config?.mediaType)) return 'artifact';
  return 'image';
}

/** The total of a descriptor list's sizes. */
export function totalSize(descriptors) {
  return (descriptors ?? []).reduce((sum, descriptor) => sum + (Number(descriptor.size) || 0), 0);
}

/**
 * A manifest's summary: `{ digest, kind, size, created, platforms, artifactType }`. The size of
 * an image is its config and layers; of an index, the images it lists.
 */
export async function summarize(repository, reference, fetched) {
  const { manifest, digest } = fetched ?? (await getManifest(repository, reference));
  const kind = kindOf(manifest);
  const summary = { digest, kind, size: undefined, created: manifest.annotations?.[CREATED], platforms: [], artifactType: manifest.artifactType };
  if (kind === 'artifact') {
    summary.size = totalSize(manifest.layers) + (Number(manifest.config?.size) || 0);
    summary.artifactType ??= manifest.config?.mediaType;
  } else if (kind === 'image') {
    summary.size = totalSize(manifest.layers) + manifest.config.size;
    const config = await getConfig(repository, manifest.config).catch(() => undefined);
    summary.created ??= config?.created;
    summary.platforms = config ? [platformName(config)] : [];
  } else {
    const images = manifest.manifests.filter((child) => !isAttestation(child));
    summary.platforms = images.map((child) => platformName(child.platform)).filter(Boolean);
    const children = await Promise.all(images.slice(0, MAX_CHILDREN).map((child) => summarize(repository, child.digest).catch(() => undefined)));
    if (images.length <= MAX_CHILDREN && children.every(Boolean)) summary.size = children.reduce((sum, child) => sum + child.size, 0);
    summary.created ??= children.find((child) => child?.created)?.created;
  }
  return summary;
}
