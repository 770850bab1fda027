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
   * does not match the bytes, `MANIFEST_INVALID` for a malformed manifest, and
   * `MANIFEST_BLOB_UNKNOWN` when a blob or child manifest it references is not in the repository.
   */
  async put(
    repository: string,
    reference: ManifestReference,
    body: Buffer,
    contentType: string | undefined,
    tags: readonly string[] = [],
  ): Promise<{ digest: Digest; manifest: ParsedManifest }> {
    const algorithm = reference.digest?.algorithm ?? 'sha256';
    const digest = parseDigest(digestOf(body, algorithm));
    if (reference.digest && reference.digest.hex !== digest.hex) {
      throw new RegistryError('DIGEST_INVALID', `the manifest has digest ${digest.value}, not ${reference.digest.value}`);
    }
    const manifest = parseManifest(body, contentType);
    await this.checkReferences(repository, manifest);
    await this.storeRevision(repository, digest, manifest, body);
    const { adapter } = this.shared;
    const tagged = reference.tag !== undefined ? [reference.tag] : tags;
    for (const tag of tagged) {
      await adapter.putDocument(digestTagsPrefix(repository, digest) + tag, Buffer.alloc(0));
      await adapter.putDocument(tagKey(repository, tag), toJson({ digest: digest.value }));
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
  private async storeRevision(repository: string, digest: Digest, manifest: ParsedManifest, body: Buffer): Promise<void> {
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
      const missing = this.allowSparse ? undefined : await this.firstMissing([...blobKeys, ...childKeys]);
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

  /** Removes a manifest from `repository` with every tag naming it and its referrer entry; false when it was not there. */
  async delete(repository: string, digest: Digest): Promise<boolean> {
    const manifest = await this.resolve(repository, { digest });
    if (!manifest) return false;
    const { adapter } = this.shared;
    const candidates = digestTagsPrefix(repository, digest);
    const tags: string[] = [];
    for (const tag of await adapter.listDocuments(candidates)) {
      const target = await this.tagTarget(repository, tag);
      if (target?.value === digest.value) {
        await adapter.deleteDocument(tagKey(repository, tag));
        tags.push(tag);
      }
      await adapter.deleteDocument(candidates + tag);
    }
    if (manifest.subject) await adapter.deleteDocument(referrerKey(repository, parseDigest(manifest.subject), digest));
    await adapter.deleteDocument(manifestLinkKey(repository, digest));
    await this.shared.events.publish('manifestDeleted', { repository, digest: digest.value, tags });
    return true;
  }

  /** Removes a tag, leaving the manifest; false when there was no such tag. */
  async deleteTag(repository: string, tag: string): Promise<boolean> {
    const target = await this.tagTarget(repository, tag);
    if (!target) return false;
    await this.shared.adapter.deleteDocument(tagKey(repository, tag));
    await this.shared.events.publish('tagDeleted', { repository, tag, digest: target.value });
    return true;
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
    if (this.allowSparse) return;
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

  private async tagTarget(repository: string, tag: string): Promise<Digest | undefined> {
    const document = await this.shared.adapter.getDocument(tagKey(repository, tag));
    return document && parseDigest((fromJson(document) as { digest: string }).digest);
  }
}

function toJson(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

function fromJson(document: Buffer): unknown {
  return JSON.parse(document.toString('utf8'));
}
