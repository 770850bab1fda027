/** Manifests, tags and referrers: their records, the order they are written in, and what a push must reference. */
import { firstDistinct, forEachDistinct } from '../concurrency';
import { digestOf, parseDigest, type Digest } from '../digest';
import { RegistryError } from '../errors';
import { parseManifest, referrerDescriptor, type ManifestReference, type ParsedManifest, type ReferrerDescriptor } from '../manifest';
import type { ListOptions } from '../storage/adapter';
import type { BlobStore } from './blobs';
import type { CollectionMarks } from './marks';
import { blobLinkKey, digestTagsPrefix, manifestKey, manifestLinkKey, referrerKey, referrersPrefix, tagKey, tagsPrefix } from './paths';
import type { StoreShared } from './shared';

/** Storage look-ups a manifest PUT runs at once to check what the manifest references. */
export const REFERENCE_CHECKS = 16;

const digestValue = (digest: Digest) => digest.value;

/** A manifest as a repository records it; its bytes are stored once per digest, apart. */
export interface ManifestRecord {
  /** The media type it was pushed as, served back as `Content-Type`. */
  mediaType: string;
  size: number;
  /** The subject's digest, so that deleting the manifest also removes its referrer entry. */
  subject?: string;
  /** When the revision was last written (the collector's `untagged` age counts from it). */
  at?: string;
}

/** A manifest found in a repository. */
export interface StoredManifest extends ManifestRecord {
  digest: Digest;
}

/** How often a revision is written again when a collector deleted it just before the writer's touch. */
const STORE_ATTEMPTS = 3;
/** A tag as stored: the manifest it names and when it was last set. */
export interface TagRecord {
  tag: string;
  /** `algorithm:hex` of the manifest. */
  digest: string;
  /** When the tag was last set (ISO 8601); undefined for a tag stored before tags recorded it. */
  at?: string;
}

/**
 * Manifests, tags and referrers over the registry's storage. Writes go in an order that never
 * leaves a tag or referrer entry pointing at nothing: bytes, then revision link, then referrer
 * entry, then the tag's index entry and the tag; deletes run the other way.
 */
export class ManifestStore {
  constructor(
    private readonly shared: StoreShared,
    private readonly blobs: BlobStore,
    private readonly marks: CollectionMarks,
    /** Whether a manifest may reference blobs and child manifests the repository lacks (a mirror of part of an image). */
    private readonly allowSparse = false,
  ) {}

  /**
   * Validates and stores a manifest pushed to `reference`, moving the tag when it is one (or,
   * for a push by digest, every tag of `tags`). Throws `DIGEST_INVALID` when a digest reference
   * does not match the bytes, `MANIFEST_INVALID` for a malformed manifest,
   * `MANIFEST_BLOB_UNKNOWN` when a blob or child manifest it references is not in the repository,
   * and `DENIED` when a policy keeps one of the tags where it is. With sparse manifests allowed, or
   * `sparse` set for this one (a mirror stores manifests before their blobs), references need not exist.
   */
  async put(
    repository: string,
    reference: ManifestReference,
    body: Buffer,
    contentType: string | undefined,
    tags: readonly string[] = [],
    { sparse = this.allowSparse }: { sparse?: boolean } = {},
  ): Promise<{ digest: Digest; manifest: ParsedManifest }> {
    const algorithm = reference.digest?.algorithm ?? 'sha256';
    const digest = parseDigest(digestOf(body, algorithm));
    if (reference.digest && reference.digest.hex !== digest.hex) {
      throw new RegistryError('DIGEST_INVALID', `the manifest has digest ${digest.value}, not ${reference.digest.value}`);
    }
    const manifest = parseManifest(body, contentType);
    const { adapter, hooks } = this.shared;
    const tagged = reference.tag !== undefined ? [reference.tag] : tags;
    // Checked before anything is written, so a refused push leaves nothing behind.
    const current = new Map<string, string | undefined>();
    for (const tag of tagged) {
      current.set(tag, (await this.tagTarget(repository, tag))?.value);
      hooks.checkTag?.(repository, tag, current.get(tag), digest.value);
    }
    if (!sparse) await this.checkReferences(repository, manifest);
    await this.storeRevision(repository, digest, manifest, body, sparse);
    for (const tag of tagged) {
      await adapter.putDocument(digestTagsPrefix(repository, digest) + tag, Buffer.alloc(0));
      await this.setTag(repository, tag, digest, current.get(tag));
    }
    await this.blobs.registerRepository(repository);
    await this.shared.events.publish('manifestPushed', {
      repository,
      digest: digest.value,
      size: body.length,
      mediaType: manifest.mediaType,
      tag: reference.tag,
      tags: [...tagged],
      artifactType: manifest.artifactType,
      subject: manifest.subject?.value,
    });
    return { digest, manifest };
  }

  /**
   * Writes the manifest's bytes, its revision in `repository` and its referrer entry, then
   * touches what the revision references (see {@link CollectionMarks}) and checks it all still
   * exists: when a collection removed a blob or child meanwhile, a revision this call created is
   * taken back and the push fails with `MANIFEST_BLOB_UNKNOWN`, before anything is acknowledged.
   */
  private async storeRevision(repository: string, digest: Digest, manifest: ParsedManifest, body: Buffer, sparse: boolean): Promise<void> {
    const { adapter } = this.shared;
    const revisionKey = manifestLinkKey(repository, digest);
    const existed = (await adapter.getDocument(revisionKey)) !== undefined;
    const record: ManifestRecord = { mediaType: manifest.mediaType, size: body.length, subject: manifest.subject?.value };
    const blobKeys = manifest.blobs.map((blob) => blobLinkKey(repository, blob));
    const childKeys = manifest.children.map((child) => manifestLinkKey(repository, child));
    for (let attempt = 1; ; attempt++) {
      await adapter.putDocument(manifestKey(digest), body, { ifAbsent: true });
      await adapter.putDocument(revisionKey, toJson({ ...record, at: new Date().toISOString() }));
      if (manifest.subject) {
        await adapter.putDocument(referrerKey(repository, manifest.subject, digest), toJson(referrerDescriptor(manifest, digest, body.length)));
      }
      await this.marks.touch([manifestKey(digest), revisionKey, ...blobKeys, ...childKeys]);
      // A sparse manifest may lack what it names; one a collection removed meanwhile is no different.
      const missing = sparse ? undefined : await this.firstMissing([...blobKeys, ...childKeys]);
      if (missing !== undefined) {
        if (!existed) {
          if (manifest.subject) await adapter.deleteDocument(referrerKey(repository, manifest.subject, digest));
          await adapter.deleteDocument(revisionKey);
        }
        throw new RegistryError('MANIFEST_BLOB_UNKNOWN', `the manifest references ${missing.split('/').slice(-2).join(':')}, which was removed from ${repository} while it was being pushed`);
      }
      // A collection may have removed the bytes or the revision just before the touch saw its mark.
      if ((await this.firstMissing([manifestKey(digest), revisionKey])) === undefined) return;
      if (attempt === STORE_ATTEMPTS) throw new RegistryError('UNKNOWN', `${digest.value} kept being collected while it was pushed; try again`, { status: 503, headers: { 'Retry-After': '5' } });
    }
  }

  /** The first of `keys` whose document does not exist, looking {@link REFERENCE_CHECKS} up at a time. */
  private async firstMissing(keys: string[]): Promise<string | undefined> {
    return firstDistinct(keys, (key) => key, REFERENCE_CHECKS, async (key) => (await this.shared.adapter.getDocument(key)) === undefined);
  }

  /** The manifest a tag or digest names in `repository`, or undefined. */
  async resolve(repository: string, reference: ManifestReference): Promise<StoredManifest | undefined> {
    const digest = reference.digest ?? (await this.tagTarget(repository, reference.tag));
    if (!digest) return undefined;
    const record = await this.shared.adapter.getDocument(manifestLinkKey(repository, digest));
    return record && { ...(fromJson(record) as ManifestRecord), digest };
  }

  /** A stored manifest's exact bytes. */
  async read(manifest: StoredManifest): Promise<Buffer> {
    const body = await this.shared.adapter.getDocument(manifestKey(manifest.digest));
    if (!body) throw new RegistryError('MANIFEST_UNKNOWN', `the bytes of ${manifest.digest.value} are missing from the store`);
    return body;
  }

  /**
   * Removes a manifest from `repository` with every tag naming it and its referrer entry; false
   * when it was not there. `DENIED` (and nothing removed) when a policy keeps one of its tags.
   */
  async delete(repository: string, digest: Digest): Promise<boolean> {
    const manifest = await this.resolve(repository, { digest });
    if (!manifest) return false;
    const { adapter, hooks } = this.shared;
    const candidates = digestTagsPrefix(repository, digest);
    const entries = await adapter.listDocuments(candidates);
    const tags: string[] = [];
    for (const tag of entries) if ((await this.tagTarget(repository, tag))?.value === digest.value) tags.push(tag);
    for (const tag of tags) hooks.checkTag?.(repository, tag, digest.value, undefined);
    for (const tag of entries) {
      if (tags.includes(tag)) await adapter.deleteDocument(tagKey(repository, tag));
      await adapter.deleteDocument(candidates + tag);
    }
    if (manifest.subject) await adapter.deleteDocument(referrerKey(repository, parseDigest(manifest.subject), digest));
    await adapter.deleteDocument(manifestLinkKey(repository, digest));
    await this.shared.events.publish('manifestDeleted', { repository, digest: digest.value, tags });
    return true;
  }

  /**
   * Removes a tag, leaving the manifest; false when there was no such tag, or (with `onlyIf`)
   * when it was set again since that record was read. `DENIED` when a policy keeps the tag.
   */
  async deleteTag(repository: string, tag: string, onlyIf?: TagRecord): Promise<boolean> {
    const record = await this.readTag(repository, tag);
    if (!record) return false;
    if (onlyIf && (onlyIf.digest !== record.digest || onlyIf.at !== record.at)) return false;
    this.shared.hooks.checkTag?.(repository, tag, record.digest, undefined);
    await this.shared.adapter.deleteDocument(tagKey(repository, tag));
    await this.shared.events.publish('tagDeleted', { repository, tag, digest: record.digest });
    return true;
  }

  /** Every tag of `repository` with the manifest it names and when it was set, in tag order. */
  async tagRecords(repository: string): Promise<TagRecord[]> {
    const records: TagRecord[] = [];
    for (const tag of await this.shared.adapter.listDocuments(tagsPrefix(repository))) {
      const record = await this.readTag(repository, tag);
      if (record) records.push(record);
    }
    return records;
  }

  /** Tags of `repository` in code unit order, paged; `NAME_UNKNOWN` for a repository that was never pushed to. */
  async listTags(repository: string, options: ListOptions): Promise<string[]> {
    if (!(await this.blobs.repositoryExists(repository))) {
      throw new RegistryError('NAME_UNKNOWN', `repository ${repository} is not known to this registry`);
    }
    return this.shared.adapter.listDocuments(tagsPrefix(repository), options);
  }

  /**
   * Descriptors of the manifests in `repository` whose subject is `subject`, optionally of one
   * artifact type, in the order of their digests: those after `page.after`, at most `page.limit`.
   */
  async referrers(repository: string, subject: Digest, artifactType?: string, page: { after?: Digest; limit?: number } = {}): Promise<ReferrerDescriptor[]> {
    const { adapter } = this.shared;
    const prefix = referrersPrefix(repository, subject);
    const after = page.after && referrerKey(repository, subject, page.after).slice(prefix.length);
    const limit = page.limit ?? Number.POSITIVE_INFINITY;
    const descriptors: ReferrerDescriptor[] = [];
    // Filtered before the limit, so a page holds `limit` matches whenever that many exist.
    for (const key of await adapter.listDocuments(prefix, { after })) {
      if (descriptors.length >= limit) break;
      const entry = await adapter.getDocument(prefix + key);
      const descriptor = entry && (fromJson(entry) as ReferrerDescriptor);
      if (descriptor && (artifactType === undefined || descriptor.artifactType === artifactType)) descriptors.push(descriptor);
    }
    return descriptors;
  }

  /**
   * Checks that every blob and child manifest the manifest references is in the repository: each
   * distinct digest once, {@link REFERENCE_CHECKS} at a time, so a manifest listing one layer
   * thousands of times costs one look-up and a large index waits on few round trips.
   */
  private async checkReferences(repository: string, manifest: ParsedManifest): Promise<void> {
    await forEachDistinct(manifest.blobs, digestValue, REFERENCE_CHECKS, async (blob) => {
      if (!(await this.blobs.info(repository, blob))) {
        throw new RegistryError('MANIFEST_BLOB_UNKNOWN', `the manifest references ${blob.value}, which is not in ${repository}`);
      }
    });
    await forEachDistinct(manifest.children, digestValue, REFERENCE_CHECKS, async (child) => {
      if (!(await this.shared.adapter.getDocument(manifestLinkKey(repository, child)))) {
        throw new RegistryError('MANIFEST_BLOB_UNKNOWN', `the index references manifest ${child.value}, which is not in ${repository}`);
      }
    });
  }

  /**
   * Points `tag` at `digest`, recording when. A write-once tag that named nothing when the push
   * was checked is created only if it still names nothing; when another push set it meanwhile,
   * that push's manifest is checked against this one as if it had been there all along.
   */
  private async setTag(repository: string, tag: string, digest: Digest, current: string | undefined): Promise<void> {
    const { adapter, hooks, now } = this.shared;
    const document = toJson({ digest: digest.value, at: new Date(now()).toISOString() });
    if (!hooks.isWriteOnce?.(repository, tag)) {
      await adapter.putDocument(tagKey(repository, tag), document);
      return;
    }
    if (current !== undefined) return;
    if (await adapter.putDocument(tagKey(repository, tag), document, { ifAbsent: true })) return;
    hooks.checkTag?.(repository, tag, (await this.tagTarget(repository, tag))?.value, digest.value);
  }

  private async readTag(repository: string, tag: string): Promise<TagRecord | undefined> {
    const document = await this.shared.adapter.getDocument(tagKey(repository, tag));
    if (!document) return undefined;
    const { digest, at } = fromJson(document) as { digest: string; at?: string };
    return { tag, digest, at };
  }

  private async tagTarget(repository: string, tag: string): Promise<Digest | undefined> {
    const record = await this.readTag(repository, tag);
    return record && parseDigest(record.digest);
  }
}

function toJson(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

function fromJson(document: Buffer): unknown {
  return JSON.parse(document.toString('utf8'));
}
