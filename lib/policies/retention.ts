/** Tag retention: which tags the rules keep, and untagging the rest (the collector then reclaims what they alone held). */
import { moduleLogger } from '../log';
import type { RegistryStore } from '../store';
import type { TagRecord } from '../store/manifests';
import { globMatcher, statelessPattern } from './patterns';

/**
 * One retention rule. A repository is held to the first rule whose `repositories` matches it; a
 * repository no rule matches keeps every tag. A tag is kept when any of the rule's `keep…` says
 * so, and removed otherwise.
 */
export interface RetentionRule {
  /**
   * Repository names the rule covers, as globs: `*` matches within one path segment (see {@link globMatcher}), `**` across
   * segments, `?` one character (`team-a/**`, `*`, `ci/*-cache`).
   */
  repositories: string | string[];
  /** Keep the `keepLast` most recently set tags. */
  keepLast?: number;
  /** Keep tags set less than this many milliseconds ago. */
  keepNewerThan?: number;
  /** Keep tags matching this expression. */
  keepTags?: RegExp;
}

/** Options of {@link applyRetention}. */
export interface RetentionOptions {
  /** List what would be removed, and remove nothing. */
  dryRun?: boolean;
  /** The time the rules are applied at, in milliseconds since the epoch. Default `Date.now()`. */
  now?: number;
  /** Tags that stay whatever the rules say (immutable tags). */
  protect?: (repository: string, tag: string) => boolean;
}

/** A tag {@link applyRetention} removed (or, in a dry run, would remove). */
export interface RemovedTag {
  repository: string;
  tag: string;
  /** The manifest it named, which stays (untagged) until the collector reclaims it. */
  digest: string;
}

/** What {@link applyRetention} did. */
export interface RetentionResult {
  tagsRemoved: RemovedTag[];
}

const log = moduleLogger('retention');

/** Throws unless every rule names repositories and says what it keeps; a rule keeping nothing would untag everything. */
export function validateRetention(rules: RetentionRule[]): void {
  for (const [index, rule] of rules.entries()) {
    if ([rule.repositories].flat().length === 0) throw new TypeError(`retention rule ${index} names no repositories`);
    if (rule.keepLast === undefined && rule.keepNewerThan === undefined && rule.keepTags === undefined) {
      throw new TypeError(`retention rule ${index} keeps nothing: give keepLast, keepNewerThan or keepTags`);
    }
    if (rule.keepLast !== undefined && !(Number.isInteger(rule.keepLast) && rule.keepLast >= 0)) {
      throw new TypeError(`retention rule ${index}: keepLast must be a whole number`);
    }
  }
}

/**
 * Applies `rules` to every repository in the catalog: removes each tag no rule keeps, through
 * `ManifestStore.deleteTag`, so `tagDeleted` fires for each. Only tags go; their manifests and
 * blobs stay for the collector, which reclaims what nothing else holds (a manifest's referrers
 * go with it). A tag set again after the rules read it is left alone.
 */
export async function applyRetention(store: RegistryStore, rules: RetentionRule[], options: RetentionOptions = {}): Promise<RetentionResult> {
  validateRetention(rules);
  const now = options.now ?? Date.now();
  const matchers = rules.map((rule) => ({ rule, matches: globMatcher(rule.repositories) }));
  const tagsRemoved: RemovedTag[] = [];
  for (const repository of await store.blobs.listRepositories()) {
    const rule = matchers.find(({ matches }) => matches(repository))?.rule;
    if (!rule) continue;
    const records = await store.manifests.tagRecords(repository);
    for (const record of expired(records, rule, now)) {
      if (options.protect?.(repository, record.tag)) continue;
      if (options.dryRun || (await store.manifests.deleteTag(repository, record.tag, record))) {
        log({ repository })('%s tag %s (%s, set %s)', options.dryRun ? 'would remove' : 'removed', record.tag, record.digest, record.at ?? 'before tags had times');
        tagsRemoved.push({ repository, tag: record.tag, digest: record.digest });
      }
    }
  }
  return { tagsRemoved };
}

/** The tags `rule` does not keep. Tags without a time count as the oldest; among equal times, the greater tag name is newer. */
function expired(records: TagRecord[], rule: RetentionRule, now: number): TagRecord[] {
  const time = (record: TagRecord) => (record.at === undefined ? Number.NEGATIVE_INFINITY : Date.parse(record.at));
  const newestFirst = [...records].sort((a, b) => time(b) - time(a) || (a.tag < b.tag ? 1 : -1));
  const pattern = rule.keepTags && statelessPattern(rule.keepTags);
  return newestFirst.filter(
    (record, rank) =>
      !(rule.keepLast !== undefined && rank < rule.keepLast) &&
      !(rule.keepNewerThan !== undefined && now - time(record) < rule.keepNewerThan) &&
      !pattern?.test(record.tag),
  );
}
