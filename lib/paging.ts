import { RegistryError } from './errors';
import type { ListOptions } from './storage/adapter';

/** The `n` and `last` query parameters of a paged list (tags, catalog). */
export interface PageRequest {
  /** At most this many names; undefined for all. */
  n?: number;
  /** Only names after this one. */
  last?: string;
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
