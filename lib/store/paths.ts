/**
 * Every storage key the registry writes, in one place. A newcomer reads this page to know the
 * whole layout; nothing else builds a key.
 *
 * Documents (small values, `getDocument`/`putDocument`/`listDocuments`):
 *
 * ```text
 * uploads/<id>                                   session record {id, repository, startedAt}
 * catalog/<name>/_repository                     {}: <name> is listed in the catalog
 * manifests/<algorithm>/<hex>                    a manifest's exact bytes, once per digest
 * repositories/<name>/
 *   _blobs/<algorithm>/<hex>                     link {size}: the blob is visible in <name>
 *   _manifests/<algorithm>/<hex>                 revision {mediaType, size, subject?}: the manifest is in <name>
 *   _tags/<tag>                                  {digest, at}: the tag names that manifest, set at time `at`
 *   _digest-tags/<algorithm>/<hex>/<tag>         empty: <tag> names (or once named) that manifest
 *   _referrers/<algorithm>/<hex>/<algorithm>/<hex>  the referrer's descriptor, under its subject
 *   _mirrored-tags/<tag>                         {digest, checkedAt}: a mirror fetched <tag> from its upstream (lib/mirror)
 *   _uploads/<id>                                empty: session <id> is open in <name>, so a POST counts
 *                                                the repository's sessions with one listing
 * gc/lease/<generation>                          {owner, expiresAt}: the one collection running
 * gc/marks/<item>                                {state: condemned | deleting, at}: the collector means to delete <item>
 * gc/pins/<item>                                 {at}: a request relied on <item> while it was condemned
 * quotas/repositories/<name>/                    a repository's own quota (lib/policies/quota.ts)
 *   _usage                                       {bytes, blobs, limit, countedAt}: its usage when last counted
 *   _claims/<id>                                 {digest, size, at}: a blob being linked under the quota now
 * quotas/namespaces/<prefix>/                    the same, for a quota every repository under <prefix>/ shares
 * ```
 *
 * A collector's `<item>` is the document key of a blob link, a manifest revision or a manifest's
 * bytes, or `content/<content key>` for a blob's bytes.
 *
 * Content (immutable bytes, `readContent`/`statContent`/`deleteContent`):
 *
 * ```text
 * <algorithm>/<hex[0..2]>/<hex>                  a blob's bytes, once per digest
 * ```
 *
 * Uploads are keyed by their session id (a UUID) alone.
 *
 * Catalog entries end in `_repository` because one name may extend another (`a/b`, `a/b/c`), and
 * no key may be both a document and a prefix of another document's key.
 */
import type { Digest } from '../digest';

/** Key prefix of every upload session record. */
export const UPLOADS_PREFIX = 'uploads/';

/** Document key of an upload session's record. */
export function uploadRecordKey(id: string): string {
  return `${UPLOADS_PREFIX}${id}`;
}

/**
 * Key prefix of the entries of a repository's open sessions. The session record stays under
 * {@link UPLOADS_PREFIX}, which the purger lists; this index exists so that counting one
 * repository's sessions lists only those.
 */
export function repositorySessionsPrefix(repository: string): string {
  return `${repositoryPrefix(repository)}_uploads/`;
}

/** Document key of a session's entry in its repository's index. */
export function repositorySessionKey(repository: string, id: string): string {
  return repositorySessionsPrefix(repository) + id;
}

/** Key prefix of the catalog's entries. */
export const CATALOG_PREFIX = 'catalog/';

const CATALOG_ENTRY = '/_repository';

/** Document key that lists a repository in the catalog. */
export function catalogKey(repository: string): string {
  return `${CATALOG_PREFIX}${repository}${CATALOG_ENTRY}`;
}

/** The repository a catalog key (with {@link CATALOG_PREFIX} removed) lists, or undefined for another key. */
export function repositoryOfCatalogEntry(key: string): string | undefined {
  return key.endsWith(CATALOG_ENTRY) ? key.slice(0, -CATALOG_ENTRY.length) : undefined;
}

/** Key prefix of the catalog entries of the repositories whose names start with `namespace` (which ends in `/`). */
export function catalogPrefix(namespace: string): string {
  return `${CATALOG_PREFIX}${namespace}`;
}

/** Content key of a digest's bytes; stored once, whichever repositories link to it. */
export function contentKey(digest: Digest): string {
  return `${digest.algorithm}/${digest.hex.slice(0, 2)}/${digest.hex}`;
}

/** Document key of a manifest's bytes, shared by every repository that holds it. */
export function manifestKey(digest: Digest): string {
  return `manifests/${digest.algorithm}/${digest.hex}`;
}

/** Key prefix of everything a repository holds (links, manifests, tags, referrers). */
export function repositoryPrefix(repository: string): string {
  return `repositories/${repository}/`;
}

/** Key prefix of a repository's blob links. */
export function blobLinksPrefix(repository: string): string {
  return `${repositoryPrefix(repository)}_blobs/`;
}

/** Document key of the link that makes a blob visible in a repository. */
export function blobLinkKey(repository: string, digest: Digest): string {
  return `${blobLinksPrefix(repository)}${digest.algorithm}/${digest.hex}`;
}

/** Key prefix of a repository's manifest revisions. */
export function manifestLinksPrefix(repository: string): string {
  return `${repositoryPrefix(repository)}_manifests/`;
}

/** Document key of the revision that makes a manifest visible in a repository. */
export function manifestLinkKey(repository: string, digest: Digest): string {
  return `${manifestLinksPrefix(repository)}${digest.algorithm}/${digest.hex}`;
}

/** Key prefix of a repository's tags. */
export function tagsPrefix(repository: string): string {
  return `${repositoryPrefix(repository)}_tags/`;
}

/** Document key of a tag, naming a manifest digest. */
export function tagKey(repository: string, tag: string): string {
  return tagsPrefix(repository) + tag;
}

/**
 * Key prefix of the tags that name (or once named) a digest in a repository, so that deleting a
 * manifest finds its tags without reading every tag. An entry may outlive its tag's move or
 * deletion; a delete checks each candidate tag before removing it.
 */
export function digestTagsPrefix(repository: string, digest: Digest): string {
  return `${repositoryPrefix(repository)}_digest-tags/${digest.algorithm}/${digest.hex}/`;
}

/** Key prefix of the referrer entries of one subject digest in a repository. */
export function referrersPrefix(repository: string, subject: Digest): string {
  return `${repositoryPrefix(repository)}_referrers/${subject.algorithm}/${subject.hex}/`;
}

/** Document key of one referrer's entry under its subject. */
export function referrerKey(repository: string, subject: Digest, digest: Digest): string {
  return `${referrersPrefix(repository, subject)}${digest.algorithm}/${digest.hex}`;
}

/** Key prefix of the collector's lease generations. */
export const GC_LEASE_PREFIX = 'gc/lease/';

/** Key prefix of the collector's marks. */
export const GC_MARKS_PREFIX = 'gc/marks/';

/** Document key of the collector's mark on `item`. */
export function gcMarkKey(item: string): string {
  return GC_MARKS_PREFIX + item;
}

/** Key prefix of the pins requests leave on items. */
export const GC_PINS_PREFIX = 'gc/pins/';

/** Document key of a request's pin on `item`. */
export function gcPinKey(item: string): string {
  return GC_PINS_PREFIX + item;
}

const CONTENT_ITEM_PREFIX = 'content/';

/** The collector's item name for a digest's stored bytes. */
export function contentItem(digest: Digest): string {
  return CONTENT_ITEM_PREFIX + contentKey(digest);
}

/**
 * Key prefix of a quota's documents. `scope` is a repository name, or a namespace ending in `/`;
 * neither `_usage` nor `_claims` can be a name component, so no two scopes' keys collide.
 */
export function quotaPrefix(scope: string): string {
  return scope.endsWith('/') ? `quotas/namespaces/${scope}` : `quotas/repositories/${scope}/`;
}

/** Document key of a quota's usage as last counted. */
export function quotaUsageKey(scope: string): string {
  return `${quotaPrefix(scope)}_usage`;
}

/** Key prefix of the claims of blobs being linked under a quota. */
export function quotaClaimsPrefix(scope: string): string {
  return `${quotaPrefix(scope)}_claims/`;
}

/** Document key of a mirrored tag's record: the digest the upstream tagged, and when it last said so. */
export function mirroredTagKey(repository: string, tag: string): string {
  return `${repositoryPrefix(repository)}_mirrored-tags/${tag}`;
}
