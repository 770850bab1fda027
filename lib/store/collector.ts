/** Online garbage collection: marks what is kept, condemns the rest, and deletes on a second pass what is still condemned. */
import { hostname } from 'node:os';
import { parseDigest, type Digest } from '../digest';
import { moduleLogger } from '../log';
import { parseManifest } from '../manifest';
import type { BlobLinkRecord, BlobStore } from './blobs';
import { DELETING_DEADLINE_MS, type CollectionMarks } from './marks';
import type { ManifestRecord, ManifestStore } from './manifests';
import {
  blobLinkKey,
  blobLinksPrefix,
  CATALOG_PREFIX,
  contentItem,
  contentKey,
  GC_LEASE_PREFIX,
  manifestKey,
  manifestLinkKey,
  manifestLinksPrefix,
  referrersPrefix,
  repositoryOfCatalogEntry,
  tagsPrefix,
} from './paths';
import type { StoreShared } from './shared';
import type { UploadStore } from './uploads';

/** What one collection keeps and removes; see {@link GarbageCollector.collect}. */
export interface CollectOptions {
  /**
   * Milliseconds a blob link must have gone unreferenced by any kept manifest, counted from when
   * it was last written, before it is removed: a push in progress uploads its blobs before its
   * manifest. Default 1 hour.
   */
  grace?: number;
  /**
   * Untagged manifests whose revision is older than this many milliseconds, and that no kept
   * index or subject keeps, are deleted. Unset (the default) keeps every untagged manifest.
   */
  untagged?: number;
  /** Report what would be removed, and remove nothing. */
  dryRun?: boolean;
  /** Upload sessions started longer ago than this many milliseconds are removed too. Default 7 days. */
  uploadMaxAge?: number;
  /**
   * Tags that retention removed just before (or, in a dry run, would remove): they count as gone,
   * and the manifests they named, with the referrers that follow those, are collected like old
   * untagged ones whatever `untagged` says, unless another tag, index or subject keeps them.
   */
  released?: readonly { repository: string; tag: string; digest: string }[];
}

/** What a collection removed (or, in a dry run, would remove). */
export interface CollectionReport {
  /** Manifest revisions deleted from repositories. */
  manifestsDeleted: number;
  /** Blob links removed from repositories. */
  blobLinksRemoved: number;
  /** Stored blobs (content) deleted because no repository links them any more. */
  contentDeleted: number;
  /** Bytes of content and manifest documents deleted. */
  bytesFreed: number;
  /** Abandoned upload sessions removed (the purger's rule). */
  uploadsPurged: number;
  /** The tags retention removed first (see {@link CollectOptions.released}). */
  tagsRemoved: { repository: string; tag: string; digest: string }[];
  /** Condemned items that a request relied on before the second pass, and that were kept. */
  revived: number;
  durationMs: number;
  dryRun: boolean;
}

/** Another collection holds the lease over this storage. */
export class CollectionRunningError extends Error {
  constructor(detail: string) {
    super(`a garbage collection is already running: ${detail}`);
    this.name = 'CollectionRunningError';
  }
}

const HOUR = 60 * 60 * 1000;
const DEFAULT_UPLOAD_MAX_AGE = 7 * 24 * HOUR;
const LEASE_MS = 60_000;
const PAGE = 1000;
/** Items marked `deleting` at once: few enough that each is deleted well within {@link DELETING_DEADLINE_MS}. */
const DELETE_BATCH = 64;

const log = moduleLogger('gc');

/** A manifest revision the plan would delete, with what decides whether it must stay after all. */
interface ManifestCandidate {
  repository: string;
  digest: Digest;
  /** Revision keys (in the same repository) whose being kept keeps this one: its parents and its subject. */
  keepers: string[];
  /** Link keys of the blobs it references. */
  blobs: string[];
}

/** Everything one mark found unreferenced, keyed by the collector's item names (see `paths.ts`). */
interface Plan {
  manifests: Map<string, ManifestCandidate>;
  links: Map<string, { repository: string; digest: Digest }>;
  content: Map<string, { digest: Digest; size: number }>;
  /** Manifest byte documents no revision keeps, with the revisions (all candidates) that name them. */
  manifestBytes: Map<string, { size: number; revisions: string[] }>;
}

/**
 * The garbage collector. A collection runs under a lease (one at a time per storage), and in two
 * passes over a fresh mark each: the first condemns everything unreferenced, the second deletes
 * what its own mark still finds unreferenced, unless a request pinned it meanwhile (see
 * {@link CollectionMarks} and the argument in docs/gc.md). Memory grows with the number of distinct
 * live digests, not with content size; every listing is paged.
 */
export class GarbageCollector {
  constructor(
    private readonly shared: StoreShared,
    private readonly peers: { uploads: UploadStore; blobs: BlobStore; manifests: ManifestStore; marks: CollectionMarks },
  ) {}

  /**
   * Runs one collection. Rejects with {@link CollectionRunningError} when another one (in any
   * process sharing the storage) holds the lease. Emits `garbageCollected` with the report.
   */
  async collect(options: CollectOptions = {}): Promise<CollectionReport> {
    const started = Date.now();
    const dryRun = options.dryRun ?? false;
    const lease = await CollectionLease.acquire(this.shared, LEASE_MS);
    try {
      const report: CollectionReport = {
        manifestsDeleted: 0,
        blobLinksRemoved: 0,
        contentDeleted: 0,
        bytesFreed: 0,
        uploadsPurged: 0,
        tagsRemoved: [...(options.released ?? [])],
        revived: 0,
        durationMs: 0,
        dryRun,
      };
      const uploadMaxAge = options.uploadMaxAge ?? DEFAULT_UPLOAD_MAX_AGE;
      // Pins left before this collection began belong to writes that have written their references since (or failed).
      if (!dryRun) await this.peers.marks.clearPinsBefore(started);
      const first = await this.plan(options);
      if (dryRun) {
        report.uploadsPurged = (await this.peers.uploads.staleSessions(uploadMaxAge)).length;
        Object.assign(report, planTotals(first));
      } else {
        report.uploadsPurged = (await this.peers.uploads.purgeStale(uploadMaxAge)).length;
        await this.condemn(first);
        await lease.check();
        const second = await this.plan(options);
        await this.sweep(second, report, lease, options.grace ?? HOUR);
      }
      report.durationMs = Date.now() - started;
      log({})('%s: %o', dryRun ? 'dry run' : 'collected', report);
      this.shared.events.notify('garbageCollected', report);
      return report;
    } finally {
      await lease.release();
    }
  }

  /** Marks every item of `plan` condemned, and clears the marks of items it no longer holds (from an earlier collection). */
  private async condemn(plan: Plan): Promise<void> {
    const { marks } = this.peers;
    const wanted = new Set([...plan.manifests.keys(), ...plan.links.keys(), ...plan.content.keys(), ...plan.manifestBytes.keys()]);
    for (const item of await marks.marked()) if (!wanted.has(item)) await marks.clear(item);
    for (const item of wanted) await marks.condemn(item);
  }

  /**
   * Deletes the items of `plan` (from a mark taken after the condemnation) that are condemned,
   * in an order that never leaves a kept item naming a deleted one: manifests (parents and
   * subjects first), then links, content and manifest bytes. An item a request pinned is kept,
   * and so is everything it keeps.
   */
  private async sweep(plan: Plan, report: CollectionReport, lease: CollectionLease, grace: number): Promise<void> {
    const { marks, manifests, blobs } = this.peers;
    const condemned = new Set(await marks.marked());
    const kept = new Set<string>();
    for (const item of condemned) {
      const inPlan = plan.manifests.has(item) || plan.links.has(item) || plan.content.has(item) || plan.manifestBytes.has(item);
      if (!inPlan) await marks.clear(item);
    }

    const order = deletionOrder(plan.manifests);
    await this.deleteEach(order, condemned, kept, report, lease, async (item) => {
      const candidate = plan.manifests.get(item)!;
      if (candidate.keepers.some((keeper) => kept.has(keeper))) return false;
      await manifests.delete(candidate.repository, candidate.digest);
      report.manifestsDeleted++;
      return true;
    });
    const ordered = new Set(order);
    for (const key of plan.manifests.keys()) if (!ordered.has(key)) kept.add(key);

    const keptLinks = new Set<string>();
    for (const [item, candidate] of plan.manifests) if (kept.has(item)) for (const link of candidate.blobs) keptLinks.add(link);
    await this.deleteEach([...plan.links.keys()], condemned, kept, report, lease, async (item) => {
      const { repository, digest } = plan.links.get(item)!;
      if (keptLinks.has(item) || (await this.linkIsFresh(item, grace))) return false;
      await blobs.unlink(repository, digest);
      report.blobLinksRemoved++;
      return true;
    });

    const keptContent = new Set<string>();
    for (const [item, { digest }] of plan.links) if (kept.has(item)) keptContent.add(contentItem(digest));
    await this.deleteEach([...plan.content.keys()], condemned, kept, report, lease, async (item) => {
      if (keptContent.has(item)) return false;
      const { digest, size } = plan.content.get(item)!;
      await this.shared.adapter.deleteContent(contentKey(digest));
      report.contentDeleted++;
      report.bytesFreed += size;
      return true;
    });

    await this.deleteEach([...plan.manifestBytes.keys()], condemned, kept, report, lease, async (item) => {
      const { size, revisions } = plan.manifestBytes.get(item)!;
      if (revisions.some((revision) => kept.has(revision))) return false;
      await this.shared.adapter.deleteDocument(item);
      report.bytesFreed += size;
      return true;
    });
  }

  /**
   * Deletes each condemned item of `items` with `remove` (which may decline), in batches: marks a
   * batch `deleting`, reads its pins, then removes the unpinned. Pinned, declined, uncondemned and
   * late items are added to `kept`.
   */
  private async deleteEach(
    items: string[],
    condemned: Set<string>,
    kept: Set<string>,
    report: CollectionReport,
    lease: CollectionLease,
    remove: (item: string) => Promise<boolean>,
  ): Promise<void> {
    const { marks } = this.peers;
    for (let start = 0; start < items.length; start += DELETE_BATCH) {
      await lease.check();
      const batch = items.slice(start, start + DELETE_BATCH).filter((item) => {
        if (!condemned.has(item)) kept.add(item);
        return condemned.has(item);
      });
      const states = await Promise.all(batch.map((item) => marks.beginDeleting(item)));
      let done = 0;
      try {
        for (const [index, item] of batch.entries()) {
          const { pinned, markedAt } = states[index];
          const late = Date.now() - markedAt > DELETING_DEADLINE_MS;
          if (pinned) report.revived++;
          const removed = !pinned && !late && (await remove(item));
          if (!removed) kept.add(item);
          await marks.clear(item);
          done++;
        }
      } finally {
        // A failure midway keeps the rest of the batch, so no request waits on a mark nobody will clear.
        for (const item of batch.slice(done)) await marks.clear(item).catch(() => undefined);
      }
    }
  }

  /** Whether the link was written again since the mark found it old (a push or mount of the same blob). */
  private async linkIsFresh(item: string, grace: number): Promise<boolean> {
    const document = await this.shared.adapter.getDocument(item);
    if (!document) return false;
    const { at } = JSON.parse(document.toString('utf8')) as BlobLinkRecord;
    return at !== undefined && Date.now() - Date.parse(at) < grace;
  }

  /** One mark: walks every repository and the content, and returns what nothing kept references. */
  private async plan(options: CollectOptions): Promise<Plan> {
    const plan: Plan = { manifests: new Map(), links: new Map(), content: new Map(), manifestBytes: new Map() };
    const liveContent = new Set<string>();
    const liveManifestBytes = new Set<string>();
    const candidateBytes = new Map<string, string[]>();
    for await (const key of this.pages(CATALOG_PREFIX)) {
      const repository = repositoryOfCatalogEntry(key);
      if (repository === undefined) continue;
      await this.markRepository(repository, options, plan, liveContent, liveManifestBytes, candidateBytes);
    }
    if (this.shared.adapter.listContent) {
      for await (const key of this.contentPages()) {
        const digest = digestOfContentKey(key);
        if (!digest || liveContent.has(digest.value)) continue;
        const size = (await this.shared.adapter.statContent(key))?.size ?? 0;
        plan.content.set(contentItem(digest), { digest, size });
      }
    }
    for await (const key of this.pages('manifests/')) {
      const digest = digestOfPath(key);
      if (!digest || liveManifestBytes.has(digest.value)) continue;
      const item = manifestKey(digest);
      const size = (await this.shared.adapter.getDocument(item))?.length ?? 0;
      plan.manifestBytes.set(item, { size, revisions: candidateBytes.get(digest.value) ?? [] });
    }
    return plan;
  }

  /** Marks one repository: which manifests are kept, and which of its links no kept manifest references. */
  private async markRepository(
    repository: string,
    options: CollectOptions,
    plan: Plan,
    liveContent: Set<string>,
    liveManifestBytes: Set<string>,
    candidateBytes: Map<string, string[]>,
  ): Promise<void> {
    const { adapter } = this.shared;
    const now = Date.now();
    const grace = options.grace ?? HOUR;
    const revisions = new Map<string, ManifestRecord>();
    for await (const key of this.pages(manifestLinksPrefix(repository))) {
      const digest = digestOfPath(key);
      const document = digest && (await adapter.getDocument(manifestLinkKey(repository, digest)));
      if (digest && document) revisions.set(digest.value, JSON.parse(document.toString('utf8')) as ManifestRecord);
    }
    const released = (options.released ?? []).filter((removed) => removed.repository === repository);
    const roots = new Set<string>();
    for await (const tag of this.pages(tagsPrefix(repository))) {
      const document = await adapter.getDocument(tagsPrefix(repository) + tag);
      const digest = document && (JSON.parse(document.toString('utf8')) as { digest: string }).digest;
      if (digest && !released.some((removed) => removed.tag === tag && removed.digest === digest)) roots.add(digest);
    }
    const releasedRevisions = followingSubjects(revisions, new Set(released.map((removed) => removed.digest)));
    for (const [digest, record] of revisions) {
      const age = record.at === undefined ? Number.POSITIVE_INFINITY : now - Date.parse(record.at);
      if (!releasedRevisions.has(digest) && (options.untagged === undefined || !(age > options.untagged))) roots.add(digest);
    }

    // What each revision references; one that cannot be read keeps the whole repository as it is.
    const references = new Map<string, { blobs: Digest[]; children: Digest[]; referrers: string[] }>();
    for (const [digest, record] of revisions) {
      const parsed = parseDigest(digest);
      const body = await adapter.getDocument(manifestKey(parsed));
      let manifest;
      try {
        manifest = body && parseManifest(body, record.mediaType);
      } catch {
        manifest = undefined;
      }
      if (!manifest) {
        log({ repository })('manifest %s cannot be read; nothing in the repository is collected', digest);
        for await (const key of this.pages(blobLinksPrefix(repository))) {
          const digest = digestOfPath(key);
          if (digest) liveContent.add(digest.value);
        }
        for (const kept of revisions.keys()) liveManifestBytes.add(kept);
        return;
      }
      const referrers: string[] = [];
      for await (const key of this.pages(referrersPrefix(repository, parsed))) {
        const referrer = digestOfPath(key);
        if (referrer && revisions.has(referrer.value)) referrers.push(referrer.value);
      }
      references.set(digest, { blobs: manifest.blobs, children: manifest.children.filter((child) => revisions.has(child.value)), referrers });
    }

    const kept = new Set<string>();
    const queue = [...roots].filter((digest) => revisions.has(digest));
    for (let digest = queue.pop(); digest !== undefined; digest = queue.pop()) {
      if (kept.has(digest)) continue;
      kept.add(digest);
      const { children, referrers } = references.get(digest)!;
      queue.push(...children.map((child) => child.value), ...referrers);
    }

    const keptBlobs = new Set<string>();
    const keepers = new Map<string, string[]>();
    for (const [digest, { blobs, children, referrers }] of references) {
      if (kept.has(digest)) {
        for (const blob of blobs) keptBlobs.add(blob.value);
        liveManifestBytes.add(digest);
        continue;
      }
      const own = manifestLinkKey(repository, parseDigest(digest));
      for (const dependent of [...children.map((child) => child.value), ...referrers]) {
        const list = keepers.get(dependent) ?? [];
        list.push(own);
        keepers.set(dependent, list);
      }
    }
    for (const [digest, { blobs }] of references) {
      if (kept.has(digest)) continue;
      const parsed = parseDigest(digest);
      const item = manifestLinkKey(repository, parsed);
      plan.manifests.set(item, { repository, digest: parsed, keepers: keepers.get(digest) ?? [], blobs: blobs.map((blob) => blobLinkKey(repository, blob)) });
      const named = candidateBytes.get(digest) ?? [];
      named.push(item);
      candidateBytes.set(digest, named);
    }

    for await (const key of this.pages(blobLinksPrefix(repository))) {
      const digest = digestOfPath(key);
      if (!digest) continue;
      let live = keptBlobs.has(digest.value);
      if (!live) {
        const document = await adapter.getDocument(blobLinkKey(repository, digest));
        const at = document && (JSON.parse(document.toString('utf8')) as BlobLinkRecord).at;
        live = document === undefined || (at !== undefined && now - Date.parse(at) < grace);
      }
      if (live) liveContent.add(digest.value);
      else plan.links.set(blobLinkKey(repository, digest), { repository, digest });
    }
  }

  /** Every document key under `prefix` (prefix removed), one page at a time. */
  private async *pages(prefix: string): AsyncGenerator<string> {
    let after: string | undefined;
    for (;;) {
      const page = await this.shared.adapter.listDocuments(prefix, { after, limit: PAGE });
      yield* page;
      if (page.length < PAGE) return;
      after = page[page.length - 1];
    }
  }

  /** Every content key, one page at a time. */
  private async *contentPages(): AsyncGenerator<string> {
    let after: string | undefined;
    for (;;) {
      const page = await this.shared.adapter.listContent!({ after, limit: PAGE });
      yield* page;
      if (page.length < PAGE) return;
      after = page[page.length - 1];
    }
  }
}

/** `digests` with every revision whose subject is among them, transitively (the signature of a signature). */
function followingSubjects(revisions: Map<string, ManifestRecord>, digests: Set<string>): Set<string> {
  const all = new Set(digests);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [digest, record] of revisions) {
      if (record.subject !== undefined && all.has(record.subject) && !all.has(digest)) {
        all.add(digest);
        grew = true;
      }
    }
  }
  return all;
}

/**
 * The manifest candidates in an order where every one comes after the candidates that keep it
 * (its parents and subjects), so a late keep never strands a deleted dependant. Candidates in a
 * cycle (which digests cannot form, but a store can hold anything) are left out, and so kept.
 */
function deletionOrder(candidates: Map<string, ManifestCandidate>): string[] {
  const waiting = new Map<string, number>();
  const dependants = new Map<string, string[]>();
  for (const [item, { keepers }] of candidates) {
    const inPlan = keepers.filter((keeper) => candidates.has(keeper));
    waiting.set(item, inPlan.length);
    for (const keeper of inPlan) dependants.set(keeper, [...(dependants.get(keeper) ?? []), item]);
  }
  const order = [...waiting].filter(([, count]) => count === 0).map(([item]) => item);
  for (let index = 0; index < order.length; index++) {
    for (const dependant of dependants.get(order[index]) ?? []) {
      const left = waiting.get(dependant)! - 1;
      waiting.set(dependant, left);
      if (left === 0) order.push(dependant);
    }
  }
  return order;
}

/** What a dry run reports: everything the plan would remove. */
function planTotals(plan: Plan): Pick<CollectionReport, 'manifestsDeleted' | 'blobLinksRemoved' | 'contentDeleted' | 'bytesFreed'> {
  let bytesFreed = 0;
  for (const { size } of plan.content.values()) bytesFreed += size;
  for (const { size } of plan.manifestBytes.values()) bytesFreed += size;
  return { manifestsDeleted: plan.manifests.size, blobLinksRemoved: plan.links.size, contentDeleted: plan.content.size, bytesFreed };
}

/** The digest named by a key ending in `<algorithm>/<hex>`, or undefined. */
function digestOfPath(key: string): Digest | undefined {
  const parts = key.split('/');
  if (parts.length !== 2) return undefined;
  try {
    return parseDigest(`${parts[0]}:${parts[1]}`);
  } catch {
    return undefined;
  }
}

/** The digest of a content key (`<algorithm>/<hex[0..2]>/<hex>`), or undefined. */
function digestOfContentKey(key: string): Digest | undefined {
  const parts = key.split('/');
  return parts.length === 3 ? digestOfPath(`${parts[0]}/${parts[2]}`) : undefined;
}

/**
 * The lease that lets one collection run at a time over a storage: generations under
 * `gc/lease/`, the highest one live. A holder renews its own; a newcomer takes over an expired
 * one by creating the next generation, which only one creator can do.
 */
class CollectionLease {
  private readonly timer: NodeJS.Timeout;

  private constructor(
    private readonly shared: StoreShared,
    private readonly key: string,
    private readonly owner: string,
    private readonly ttl: number,
  ) {
    this.timer = setInterval(() => void this.renew().catch((error: unknown) => log({})('renewing the lease failed: %O', error)), ttl / 3);
    this.timer.unref();
  }

  static async acquire(shared: StoreShared, ttl: number): Promise<CollectionLease> {
    const { adapter } = shared;
    const generations = await adapter.listDocuments(GC_LEASE_PREFIX);
    const newest = generations[generations.length - 1];
    if (newest !== undefined) {
      const document = await adapter.getDocument(GC_LEASE_PREFIX + newest);
      const holder = document && (JSON.parse(document.toString('utf8')) as { owner: string; expiresAt: number });
      if (holder && holder.expiresAt > Date.now()) throw new CollectionRunningError(`held by ${holder.owner}`);
    }
    const next = String((newest === undefined ? 0 : Number(newest)) + 1).padStart(12, '0');
    const owner = `${hostname()} ${process.pid}`;
    const key = GC_LEASE_PREFIX + next;
    if (!(await adapter.putDocument(key, leaseDocument(owner, ttl), { ifAbsent: true }))) throw new CollectionRunningError('another collection started just now');
    for (const old of generations) await adapter.deleteDocument(GC_LEASE_PREFIX + old);
    return new CollectionLease(shared, key, owner, ttl);
  }

  /** Throws unless this lease is still the newest generation: a collection that lost it must stop. */
  async check(): Promise<void> {
    const generations = await this.shared.adapter.listDocuments(GC_LEASE_PREFIX);
    if (GC_LEASE_PREFIX + generations[generations.length - 1] !== this.key) throw new CollectionRunningError('this collection lost its lease');
  }

  async release(): Promise<void> {
    clearInterval(this.timer);
    await this.shared.adapter.deleteDocument(this.key);
  }

  private async renew(): Promise<void> {
    await this.shared.adapter.putDocument(this.key, leaseDocument(this.owner, this.ttl));
  }
}

function leaseDocument(owner: string, ttl: number): Buffer {
  return Buffer.from(JSON.stringify({ owner, expiresAt: Date.now() + ttl }));
}
