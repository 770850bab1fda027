/** Storage quotas: which quota a repository counts against, its usage counted from blob links, and admitting new blobs under it. */
import { randomUUID } from 'node:crypto';
import { parseDigest, type Digest } from '../digest';
import { RegistryError } from '../errors';
import { moduleLogger } from '../log';
import type { StorageAdapter } from '../storage/adapter';
import { blobLinkKey, blobLinksPrefix, catalogPrefix, quotaClaimsPrefix, quotaUsageKey, repositoryOfCatalogEntry } from '../store/paths';
import type { Headroom, StoreHooks } from '../store/shared';

/**
 * The quota of one repository: its own, in bytes, or one it shares with every repository whose
 * name starts with `namespace` (which ends in `/`).
 */
export type QuotaRule = number | { namespace: string; bytes: number };

/**
 * The `quota` option: one number (every repository its own quota of that many bytes), a table
 * (keys are repository names, or namespaces ending in `/` whose repositories share the quota; the
 * longest matching key wins), or a function of the repository name.
 *
 * @example
 * ```ts
 * quota: { 'team-a/': 10e9, 'team-b/app': 2e9 }
 * quota: (repository) => (repository.startsWith('ci/') ? 1e9 : undefined)
 * quota: (repository) => ({ namespace: `${repository.split('/')[0]}/`, bytes: 5e9 })
 * ```
 */
export type QuotaOption = number | Record<string, number> | ((repository: string) => QuotaRule | undefined);

/** What a repository's blobs take under its quota; see `RegistryRouter.usage`. */
export interface QuotaUsage {
  /** What is counted: the repository itself, or the namespace (ending in `/`) whose quota it shares. */
  scope: string;
  /** Bytes of the distinct blobs linked into the scope. */
  bytes: number;
  /** How many distinct blobs those are. */
  blobs: number;
  /** The quota in bytes; undefined when the repository has none. */
  limit?: number;
  /** When it was counted (ISO 8601). */
  countedAt: string;
}

/** A claim on a quota by a blob being linked now; others count it as if linked. */
interface Claim {
  digest: string;
  size: number;
  at: string;
}

/** A counted scope: the distinct blobs linked into it, and those others are linking now. */
interface Count {
  linked: Map<string, number>;
  claimed: Map<string, number>;
}

/**
 * A claim older than this is taken to be left by a process that stopped mid-commit, and removed.
 * A commit holds its claim only while its link is written, so a live one never comes near it.
 */
const CLAIM_LEASE = 10 * 60 * 1000;
/** Link sizes remembered (a digest's size never changes), so counting reads only new links. */
const SIZE_CACHE_LIMIT = 100_000;

const log = moduleLogger('quota');

/**
 * Holds repositories to their quotas. Usage is never kept as a running total (two processes
 * adding to one document would lose updates): it is counted from the scope's blob links, with
 * each link's size remembered, and the count is written to the scope's usage document after
 * every change for readers outside the registry.
 *
 * Admitting a blob writes a claim first and counts after, claims included. Of two processes
 * linking at once, at least one therefore sees the other's claim, so together they never go over
 * the quota (when both would fit alone but not together, both may be refused). Within one process
 * admissions to one scope run one at a time, so they never refuse each other.
 */
export class QuotaPolicy {
  private readonly sizes = new Map<string, number>();
  /** The admission running per scope in this process, for running them one at a time. */
  private readonly admissions = new Map<string, Promise<void>>();

  constructor(
    private readonly option: QuotaOption,
    private readonly adapter: StorageAdapter,
    private readonly now: () => number,
  ) {}

  /** The store hooks through which this policy sees uploads, links and unlinks. */
  hooks(): StoreHooks {
    return {
      headroom: (repository, digest) => this.headroom(repository, digest),
      admitBlob: (repository, digest, size, link) => this.admit(repository, digest, size, link),
      blobRemoved: (repository) => this.recount(repository),
    };
  }

  /** The quota `repository` counts against: its scope and limit (undefined: none). */
  ruleFor(repository: string): { scope: string; limit?: number } {
    const { option } = this;
    let rule: QuotaRule | undefined;
    if (typeof option === 'number') rule = option;
    else if (typeof option === 'function') rule = option(repository);
    else {
      const key = Object.keys(option)
        .filter((candidate) => candidate === repository || (candidate.endsWith('/') && repository.startsWith(candidate)))
        .sort((a, b) => b.length - a.length)[0];
      if (key !== undefined) rule = key.endsWith('/') ? { namespace: key, bytes: option[key] } : option[key];
    }
    if (rule === undefined) return { scope: repository };
    if (typeof rule === 'number') return { scope: repository, limit: rule };
    if (!rule.namespace.endsWith('/') || !repository.startsWith(rule.namespace)) {
      throw new Error(`the quota of ${repository} names namespace ${rule.namespace}, which does not end in / or does not contain it`);
    }
    return { scope: rule.namespace, limit: rule.bytes };
  }

  /** `repository`'s quota and what its scope holds now, counted afresh. */
  async usage(repository: string): Promise<QuotaUsage> {
    const { scope, limit } = this.ruleFor(repository);
    const { linked } = await this.count(scope);
    return this.summary(scope, linked, limit);
  }

  /** Counts `repository`'s scope again and writes its usage document; for after anything left it (an unlink, the collector). */
  async recount(repository: string): Promise<void> {
    const { scope, limit } = this.ruleFor(repository);
    if (limit === undefined) return;
    const { linked } = await this.count(scope);
    await this.writeUsage(this.summary(scope, linked, limit));
  }

  private async headroom(repository: string, digest: Digest | undefined): Promise<Headroom | undefined> {
    const { scope, limit } = this.ruleFor(repository);
    if (limit === undefined) return undefined;
    const counted = await this.count(scope);
    // A blob the scope already holds costs nothing more.
    if (digest && counted.linked.has(digest.value)) return undefined;
    const used = total(counted);
    return {
      bytes: Math.max(0, limit - used),
      refuse: (size) => quotaExceeded(scope, used, limit, size, 'the upload'),
    };
  }

  private async admit(repository: string, digest: Digest, size: number, link: () => Promise<void>): Promise<void> {
    const { scope, limit } = this.ruleFor(repository);
    if (limit === undefined) {
      await link();
      return;
    }
    await this.oneAtATime(scope, async () => {
      const claimKey = quotaClaimsPrefix(scope) + randomUUID();
      const claim: Claim = { digest: digest.value, size, at: new Date(this.now()).toISOString() };
      await this.adapter.putDocument(claimKey, Buffer.from(JSON.stringify(claim)));
      try {
        const counted = await this.count(scope, claimKey);
        const present = counted.linked.has(digest.value);
        // Another admission of the same blob adds nothing beyond this one, but may yet fail: the room is needed all the same.
        counted.claimed.delete(digest.value);
        const used = total(counted);
        if (!present && used + size > limit) {
          log({ repository })('refused %s (%d bytes) under %s: %d of %d bytes used', digest.value, size, scope, used, limit);
          throw quotaExceeded(scope, used, limit, size, `blob ${digest.value}`);
        }
        await link();
        counted.linked.set(digest.value, size);
        await this.writeUsage(this.summary(scope, counted.linked, limit));
      } finally {
        await this.adapter.deleteDocument(claimKey);
      }
    });
  }

  /** Runs `work` after every admission to `scope` this process started before it. */
  private async oneAtATime(scope: string, work: () => Promise<void>): Promise<void> {
    const previous = this.admissions.get(scope) ?? Promise.resolve();
    const run = previous.then(work);
    const settled = run.catch(() => undefined);
    this.admissions.set(scope, settled);
    try {
      await run;
    } finally {
      if (this.admissions.get(scope) === settled) this.admissions.delete(scope);
    }
  }

  /**
   * The distinct blobs linked into `scope`'s repositories, and those claimed by admissions other
   * than `ownClaim`. Claims are read before links: an admission removes its claim only after its
   * link is written, so whichever it has done when the claims are read, the count sees it.
   */
  private async count(scope: string, ownClaim?: string): Promise<Count> {
    const claims = new Map<string, number>();
    const prefix = quotaClaimsPrefix(scope);
    for (const id of await this.adapter.listDocuments(prefix)) {
      if (prefix + id === ownClaim) continue;
      const document = await this.adapter.getDocument(prefix + id);
      if (!document) continue;
      const claim = JSON.parse(document.toString('utf8')) as Claim;
      if (this.now() - Date.parse(claim.at) <= CLAIM_LEASE) claims.set(claim.digest, claim.size);
      else await this.adapter.deleteDocument(prefix + id);
    }
    const linked = new Map<string, number>();
    for (const repository of await this.repositoriesOf(scope)) {
      for (const key of await this.adapter.listDocuments(blobLinksPrefix(repository))) {
        const digest = key.replace('/', ':');
        if (linked.has(digest)) continue;
        const size = await this.linkSize(repository, digest);
        if (size !== undefined) linked.set(digest, size);
      }
    }
    const claimed = new Map([...claims].filter(([digest]) => !linked.has(digest)));
    return { linked, claimed };
  }

  /** The repositories a scope covers: itself, or every catalogued repository under the namespace. */
  private async repositoriesOf(scope: string): Promise<string[]> {
    if (!scope.endsWith('/')) return [scope];
    const entries = await this.adapter.listDocuments(catalogPrefix(scope));
    return entries.map(repositoryOfCatalogEntry).flatMap((name) => (name === undefined ? [] : [scope + name]));
  }

  /** The size a link records, remembered by digest; undefined when the link is gone. */
  private async linkSize(repository: string, digest: string): Promise<number | undefined> {
    const known = this.sizes.get(digest);
    if (known !== undefined) return known;
    const document = await this.adapter.getDocument(blobLinkKey(repository, parseDigest(digest)));
    if (!document) return undefined;
    const { size } = JSON.parse(document.toString('utf8')) as { size: number };
    if (this.sizes.size >= SIZE_CACHE_LIMIT) this.sizes.clear();
    this.sizes.set(digest, size);
    return size;
  }

  private summary(scope: string, linked: Map<string, number>, limit: number | undefined): QuotaUsage {
    let bytes = 0;
    for (const size of linked.values()) bytes += size;
    return { scope, bytes, blobs: linked.size, limit, countedAt: new Date(this.now()).toISOString() };
  }

  private async writeUsage(usage: QuotaUsage): Promise<void> {
    await this.adapter.putDocument(quotaUsageKey(usage.scope), Buffer.from(JSON.stringify(usage)));
  }
}

/** Bytes linked and claimed in a count. */
function total({ linked, claimed }: Count): number {
  let bytes = 0;
  for (const size of linked.values()) bytes += size;
  for (const size of claimed.values()) bytes += size;
  return bytes;
}

/** The 403 `DENIED` of something that does not fit: its message says how full the quota is, since clients print the message. */
function quotaExceeded(scope: string, usage: number, limit: number, size: number, what: string): RegistryError {
  const message = `quota exceeded: ${scope} holds ${usage} of its ${limit} bytes, and ${what} needs ${size}`;
  return new RegistryError('DENIED', { reason: 'quota', scope, usage, limit, size }, { message });
}
