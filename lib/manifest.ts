/** Manifests as the spec defines them: media types, references (tag or digest), parsing and validation, referrer descriptors. */
import { parseDigest, type Digest } from './digest';
import { RegistryError } from './errors';
import { validateTag } from './names';

/** OCI image manifest media type (also used for artifacts, with `artifactType`). */
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
/** OCI image index media type; also the type of a referrers response. */
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
/** Docker image manifest, schema 2. */
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
/** Docker manifest list (multi-platform), schema 2. */
export const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';

/** Image manifests reference blobs (config, layers); indexes reference other manifests. */
const MANIFEST_KINDS: Record<string, 'image' | 'index'> = {
  [OCI_MANIFEST]: 'image',
  [DOCKER_MANIFEST]: 'image',
  [OCI_INDEX]: 'index',
  [DOCKER_MANIFEST_LIST]: 'index',
};

// Layers a registry is not expected to hold: clients fetch them from their `urls`.
const FOREIGN_LAYER_TYPES = /^application\/vnd\.(docker\.image\.rootfs\.foreign\.|oci\.image\.layer\.nondistributable\.)/;

/** Most tags one push by digest may set with `tag` query parameters; more get 414 (the spec asks for at least 10). */
export const MAX_TAGS_PER_PUSH = 100;

/** A tag or a digest, as `<reference>` in `/v2/<name>/manifests/<reference>`. */
export type ManifestReference = { tag: string; digest?: undefined } | { digest: Digest; tag?: undefined };

/**
 * Parses a manifest reference: a digest when it has a colon (`DIGEST_INVALID` when malformed),
 * otherwise a tag (`TAG_INVALID` when malformed).
 */
export function parseReference(reference: string): ManifestReference {
  return reference.includes(':') ? { digest: parseDigest(reference) } : { tag: validateTag(reference) };
}

/** A descriptor of the referrers API: what a client needs to pick a referrer without fetching it. */
export interface ReferrerDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

/** What the registry needs to know of a manifest it accepts. */
export interface ParsedManifest {
  mediaType: string;
  /** Blobs that must exist in the repository: config and layers (foreign layers excepted). */
  blobs: Digest[];
  /** Manifests that must exist in the repository: an index's children. */
  children: Digest[];
  /** The manifest this one refers to, if any. */
  subject?: Digest;
  /** The artifact type its referrer descriptor carries: `artifactType`, else an image's config media type. */
  artifactType?: string;
  annotations?: Record<string, string>;
}

/**
 * Validates a manifest body against its `Content-Type` (parameters ignored) and extracts what it
 * references. Throws `MANIFEST_INVALID` for anything that is not a well-formed schema 2 manifest
 * or index of a supported media type.
 */
export function parseManifest(body: Buffer, contentType: string | undefined): ParsedManifest {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    throw invalid('the body is not JSON');
  }
  if (!isObject(json)) throw invalid('the body is not a JSON object');
  if (json.schemaVersion !== 2) throw invalid('schemaVersion must be 2');
  const bodyType = optionalString(json, 'mediaType');
  const headerType = contentType?.split(';')[0].trim().toLowerCase() || undefined;
  if (bodyType !== undefined && headerType !== undefined && bodyType !== headerType) {
    throw invalid(`the body's mediaType ${bodyType} differs from the Content-Type ${headerType}`);
  }
  const mediaType = headerType ?? bodyType;
  if (mediaType === undefined) throw invalid('a Content-Type (or a mediaType in the body) is required');
  const kind = MANIFEST_KINDS[mediaType];
  if (!kind) throw invalid(`unsupported manifest media type ${mediaType.slice(0, 200)}; supported: ${Object.keys(MANIFEST_KINDS).join(', ')}`);

  const parsed: ParsedManifest = { mediaType, blobs: [], children: [] };
  if (kind === 'image') {
    const config = descriptor(json.config, 'config');
    if (!Array.isArray(json.layers)) throw invalid('layers must be an array');
    const layers = json.layers.map((layer, index) => descriptor(layer, `layers[${index}]`));
    parsed.blobs = [config, ...layers.filter((layer) => !FOREIGN_LAYER_TYPES.test(layer.mediaType))].map((entry) => entry.digest);
    parsed.artifactType = optionalString(json, 'artifactType') || config.mediaType;
  } else {
    if (!Array.isArray(json.manifests)) throw invalid('manifests must be an array');
    parsed.children = json.manifests.map((child, index) => descriptor(child, `manifests[${index}]`).digest);
    parsed.artifactType = optionalString(json, 'artifactType') || undefined;
  }
  if (json.subject !== undefined) parsed.subject = descriptor(json.subject, 'subject').digest;
  if (json.annotations !== undefined) parsed.annotations = annotations(json.annotations);
  return parsed;
}

/** The referrers API's descriptor of a stored manifest. */
export function referrerDescriptor(manifest: ParsedManifest, digest: Digest, size: number): ReferrerDescriptor {
  const result: ReferrerDescriptor = { mediaType: manifest.mediaType, digest: digest.value, size };
  if (manifest.artifactType) result.artifactType = manifest.artifactType;
  if (manifest.annotations) result.annotations = manifest.annotations;
  return result;
}

function descriptor(value: unknown, where: string): { mediaType: string; digest: Digest } {
  if (!isObject(value)) throw invalid(`${where} must be a descriptor object`);
  const mediaType = optionalString(value, 'mediaType', where);
  if (!mediaType) throw invalid(`${where}.mediaType is required`);
  if (!Number.isSafeInteger(value.size) || (value.size as number) < 0) throw invalid(`${where}.size must be a non-negative integer`);
  try {
    return { mediaType, digest: parseDigest(value.digest) };
  } catch (error) {
    throw invalid(`${where}.digest: ${error instanceof RegistryError ? String(error.detail) : 'malformed'}`);
  }
}

function annotations(value: unknown): Record<string, string> {
  if (!isObject(value) || Object.values(value).some((entry) => typeof entry !== 'string')) {
    throw invalid('annotations must map strings to strings');
  }
  return value as Record<string, string>;
}

function optionalString(object: Record<string, unknown>, field: string, where?: string): string | undefined {
  const value = object[field];
  if (value !== undefined && typeof value !== 'string') throw invalid(`${where ? `${where}.` : ''}${field} must be a string`);
  return value;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function invalid(detail: string): RegistryError {
  return new RegistryError('MANIFEST_INVALID', detail);
}
