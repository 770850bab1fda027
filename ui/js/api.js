// Every call the page makes to the registry's /v2 API, sent with the browser's own credentials.

const config = JSON.parse(document.getElementById('ui-config').textContent);

/** The page's settings from the server: title, API prefix, read-only, header links. */
export const settings = config;

export const MEDIA = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
};
const ACCEPT_MANIFESTS = [MEDIA.ociManifest, MEDIA.ociIndex, MEDIA.dockerManifest, MEDIA.dockerList].join(', ');

/** Configs larger than this are not fetched for display. */
const MAX_CONFIG_SIZE = 4 * 1024 * 1024;
/** A digest no manifest has, for probing whether deletes are served and allowed. */
const ABSENT_DIGEST = `sha256:${'0'.repeat(64)}`;

/** A failed API call: the registry's OCI error code and message, or the HTTP status. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(code ? `${code}: ${message}` : message);
    this.status = status;
    this.code = code;
  }
}

/** The URL of an API path such as `/v2/_catalog`. */
export function apiUrl(path) {
  return `${config.api}${path}`;
}

/** A repository name in a path: its slashes stay, the rest is escaped. */
function repoPath(repository) {
  return repository.split('/').map(encodeURIComponent).join('/');
}

/** A digest in a path: escaped, so a manifest naming a crafted "digest" cannot reach another path; its colon stays. */
function digestPath(digest) {
  return encodeURIComponent(digest).replace(/%3A/gi, ':');
}

async function failure(response) {
  let body;
  try {
    body = await response.json();
  } catch {
    body = undefined;
  }
  const error = body?.errors?.[0];
  if (error?.code) {
    const detail = typeof error.detail === 'string' && error.detail && error.detail !== error.message ? ` (${error.detail})` : '';
    return new ApiError(response.status, error.code, `${error.message || error.code}${detail}`);
  }
  return new ApiError(response.status, undefined, `HTTP ${response.status} ${response.statusText}`.trim());
}

async function call(path, init = {}) {
  let response;
  try {
    response = await fetch(apiUrl(path), { credentials: 'same-origin', ...init });
  } catch (error) {
    throw new ApiError(0, undefined, `the registry could not be reached (${error.message})`);
  }
  if (!response.ok) throw await failure(response);
  return response;
}

/** The next page's URL from a `Link: <…>; rel="next"` header, or undefined on the last page. */
function nextLink(response) {
  const link = response.headers.get('Link');
  const match = link && /<([^>]*)>\s*;\s*rel="?next"?/.exec(link);
  return match ? new URL(match[1], location.href) : undefined;
}

/** One page of the catalog: up to `n` names after `after`, and whether more follow. */
export async function catalogPage(after, n) {
  const query = new URLSearchParams({ n: String(n) });
  if (after) query.set('last', after);
  const response = await call(`/v2/_catalog?${query}`);
  const body = await response.json();
  const repositories = body.repositories ?? [];
  return { repositories, more: nextLink(response) !== undefined };
}

/** One page of a repository's tags. */
export async function tagsPage(repository, after, n) {
  const query = new URLSearchParams({ n: String(n) });
  if (after) query.set('last', after);
  const response = await call(`/v2/${repoPath(repository)}/tags/list?${query}`);
  const body = await response.json();
  return { tags: body.tags ?? [], more: nextLink(response) !== undefined };
}

/** A manifest by tag or digest: its parsed JSON, digest, media type and size in bytes. */
export async function getManifest(repository, reference) {
  const response = await call(`/v2/${repoPath(repository)}/manifests/${encodeURIComponent(reference)}`, { headers: { Accept: ACCEPT_MANIFESTS } });
  const bytes = await response.arrayBuffer();
  const manifest = JSON.parse(new TextDecoder().decode(bytes));
  return {
    manifest,
    digest: response.headers.get('Docker-Content-Digest'),
    mediaType: manifest.mediaType ?? response.headers.get('Content-Type'),
    size: bytes.byteLength,
  };
}

/** The URL a blob downloads from. */
export function blobUrl(repository, digest) {
  return apiUrl(`/v2/${repoPath(repository)}/blobs/${digestPath(digest)}`);
}

const configs = new Map();
/** An image's config blob, parsed; undefined when it is too large to show. Blobs never change, so each is fetched once. */
export function getConfig(repository, descriptor) {
  if (descriptor.size > MAX_CONFIG_SIZE) return Promise.resolve(undefined);
  const key = `${repository}@${descriptor.digest}`;
  if (!configs.has(key)) {
    const loading = call(`/v2/${repoPath(repository)}/blobs/${digestPath(descriptor.digest)}`).then((response) => response.json());
    loading.catch(() => configs.delete(key));
    configs.set(key, loading);
  }
  return configs.get(key);
}

/** The referrers of a manifest, every page of them. */
export async function getReferrers(repository, digest) {
  const referrers = [];
  let path = `/v2/${repoPath(repository)}/referrers/${digestPath(digest)}`;
  for (let page = 0; path && page < 20; page++) {
    const response = await call(path);
    referrers.push(...((await response.json()).manifests ?? []));
    const next = nextLink(response);
    // The Link target carries the registry's own prefix already.
    path = next ? `${next.pathname.slice(config.api.length)}${next.search}` : undefined;
  }
  return referrers;
}

/** Deletes a tag or a manifest (by digest). */
export async function deleteManifest(repository, reference) {
  await call(`/v2/${repoPath(repository)}/manifests/${encodeURIComponent(reference)}`, { method: 'DELETE' });
}

const deleteProbes = new Map();
/**
 * Whether this user may delete in `repository` and the registry serves deletes: a DELETE of a
 * digest no manifest has answers 404 only when both hold (405 when deletes are off, 401/403 when
 * refused). `X-Requested-With` asks the registry for its 401 without a challenge, so the browser
 * does not pop up a login dialog for this background check.
 */
export function mayDelete(repository) {
  if (config.readOnly) return Promise.resolve(false);
  if (!deleteProbes.has(repository)) {
    const probe = fetch(apiUrl(`/v2/${repoPath(repository)}/manifests/${ABSENT_DIGEST}`), {
      method: 'DELETE',
      credentials: 'same-origin',
      headers: { 'X-Requested-With': 'XMLHttpRequest' },
    }).then(
      (response) => response.status === 404,
      () => false,
    );
    deleteProbes.set(repository, probe);
  }
  return deleteProbes.get(repository);
}
