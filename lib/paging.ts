/** Paged lists (tags, catalog): reading `n` and `last`, and cutting a page with its `Link` header. */
import { RegistryError } from './errors';
import type { ListOptions } from './storage/adapter';

/** The `n` and `last` query parameters of a paged list (tags, catalog). */
export interface PageRequest {
  /** At most this many names; undefined for all. */
  n?: number;
  /** Only names after this one. */
  last?: string;
}

/**
 * Most descriptors in one page of the referrers API; a page is also cut so that its index stays
 * within `maxManifestSize`. A listing with more has `Link: <…>; rel="next"`.
 */
export const REFERRERS_PAGE_SIZE = 1000;

/**
 * The longest head of `entries` that holds at most `maxCount` entries and whose JSON, as the
 * array of `envelope` (a document with an empty array), takes at most `maxBytes`; never empty
 * when `entries` is not, so that a listing always moves on.
 */
export function fitPage<T>(entries: T[], maxCount: number, envelope: unknown, maxBytes: number): T[] {
  let bytes = Buffer.byteLength(JSON.stringify(envelope));
  let count = 0;
  for (const entry of entries.slice(0, maxCount)) {
    // Each entry after the first also takes a comma.
    bytes += Buffer.byteLength(JSON.stringify(entry)) + (count > 0 ? 1 : 0);
    if (bytes > maxBytes && count > 0) break;
    count++;
  }
  return entries.slice(0, count);
}

/** Reads `n` and `last`; a malformed `n` is a 400 rather than silently ignored. */
export function parsePageRequest(query: URLSearchParams): PageRequest {
  const n = query.get('n');
  const last = query.get('last');
  if (n !== null && !/^\d{1,9}$/.test(n)) {
    throw new RegistryError('UNSUPPORTED', `n must be a non-negative integer, not ${n.slice(0, 40)}`, { status: 400 });
  }
  return { n: n === null ? undefined : Number(n), last: last ?? undefined };
}

/** What to ask the store for: one name more than the page, to learn whether more remain. */
export function pageListOptions(page: PageRequest): ListOptions {
  return { after: page.last, limit: page.n === undefined ? undefined : page.n + 1 };
}

/**
 * Cuts the names listed with {@link pageListOptions} to the page and, when more remain, gives
 * the `Link` header of the next page at `path` (which must already carry the mount prefix).
 */
export function finishPage(names: string[], page: PageRequest, path: string): { names: string[]; headers: Record<string, string> } {
  if (page.n === 0) return { names: [], headers: {} };
  if (page.n === undefined || names.length <= page.n) return { names, headers: {} };
  const shown = names.slice(0, page.n);
  const next = `${path}?n=${page.n}&last=${encodeURIComponent(shown[shown.length - 1])}`;
  return { names: shown, headers: { Link: `<${next}>; rel="next"` } };
}
