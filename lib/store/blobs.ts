/** Blobs as repositories see them: links to content stored once per digest, mounts, and the catalog. */
import type { Readable } from 'node:stream';
import type { Digest } from '../digest';
import { RegistryError } from '../errors';
import type { ByteRange } from '../range';
import { pageNames, type ListOptions } from '../storage/adapter';
import type { CollectionMarks } from './marks';
import { blobLinkKey, catalogKey, CATALOG_PREFIX, contentItem, contentKey, repositoryOfCatalogEntry } from './paths';
import type { StoreShared } from './shared';

/** A blob as a repository sees it. */
export interface BlobInfo {
  size: number;
}

/** A blob link's document: the blob's size, and when the link was last written (the collector's grace counts from it). */
export interface BlobLinkRecord {
  size: number;
  at?: string;
}

/** How often a link is written again when a collector deleted it just before the writer's touch. */
const LINK_ATTEMPTS = 3;

/**
 * Links between repositories and content, and the catalog of repositories. A blob is visible in a
 * repository only while its link exists and its content does.
 */
export class BlobStore {
  /** Repositories known to be in the catalog; entries are never removed, so this cache cannot go stale. */
  private readonly catalogued = new Set<string>();

  constructor(
    private readonly shared: StoreShared,
    private readonly marks: CollectionMarks,
  ) {}

  /**
   * Makes a blob visible in `repository`, after `prepare` (which publishes its content), if the
   * policies admit it (a quota: 403 `DENIED` otherwise, and neither step runs). The link is
   * written first, then touched (see {@link CollectionMarks}), then checked, so that no
   * collection can remove it or its content once this resolves.
   */
  async link(repository: string, digest: Digest, size: number, prepare?: () => Promise<void>): Promise<void> {
    const write = async () => {
      await prepare?.();
      await this.writeLink(repository, digest, size);
    };
    const { admitBlob } = this.shared.hooks;
    await (admitBlob ? admitBlob(repository, digest, size, write) : write());
  }

  private async writeLink(repository: string, digest: Digest, size: number): Promise<void> {
    const { adapter } = this.shared;
    const key = blobLinkKey(repository, digest);
    for (let attempt = 1; ; attempt++) {
      const record: BlobLinkRecord = { size, at: new Date().toISOString() };
      await adapter.putDocument(key, Buffer.from(JSON.stringify(record)));
      await this.marks.touch([key, contentItem(digest)]);
      if (!(await adapter.statContent(contentKey(digest)))) {
        throw new RegistryError('UNKNOWN', `${digest.value} was garbage collected while it was being linked; push it again`, {
          status: 503,
          headers: { 'Retry-After': '1' },
        });
      }
      if (await adapter.getDocument(key)) break;
      if (attempt === LINK_ATTEMPTS) throw new RegistryError('UNKNOWN', `the link of ${digest.value} kept being collected; try again`, { status: 503, headers: { 'Retry-After': '5' } });
    }
    await this.registerRepository(repository);
  }

  /** Removes a blob from `repository`; false when it was not there. The content itself stays. */
  async unlink(repository: string, digest: Digest): Promise<boolean> {
    const { adapter, events } = this.shared;
    if (!(await adapter.getDocument(blobLinkKey(repository, digest)))) return false;
    await adapter.deleteDocument(blobLinkKey(repository, digest));
    await this.shared.hooks.blobRemoved?.(repository);
    await events.publish('blobDeleted', { repository, digest: digest.value });
    return true;
  }

  /** The blob as `repository` sees it: undefined unless it was pushed or mounted there and its content exists. */
  async info(repository: string, digest: Digest): Promise<BlobInfo | undefined> {
    const { adapter } = this.shared;
    const key = blobLinkKey(repository, digest);
    // Touched first: a client told the blob exists may push a manifest naming it next.
    await this.marks.touch([key]);
    if (!(await adapter.getDocument(key))) return undefined;
    return adapter.statContent(contentKey(digest));
  }

  /** The stored content of a digest, whichever repositories link to it. */
  async content(digest: Digest): Promise<BlobInfo | undefined> {
    return this.shared.adapter.statContent(contentKey(digest));
  }

  /** A URL the adapter offers for fetching a blob directly (see `StorageAdapter.contentUrl`), if any. */
  async url(digest: Digest): Promise<string | undefined> {
    return this.shared.adapter.contentUrl?.(contentKey(digest));
  }

  /** Streams a blob's bytes, whole or a range. */
  async open(digest: Digest, range?: ByteRange): Promise<Readable> {
    return this.shared.adapter.readContent(contentKey(digest), range);
  }

  /**
   * Links an existing blob into `repository` without sending its bytes again: from repository
   * `from` when it holds the blob, or (with `from` undefined and `fromAnywhere`) from any stored
   * content. Resolves to undefined when there is nothing to mount.
   */
  async mount(repository: string, digest: Digest, from: string | undefined, fromAnywhere: boolean): Promise<BlobInfo | undefined> {
    let info: BlobInfo | undefined;
    if (from !== undefined) info = await this.info(from, digest);
    else if (fromAnywhere) info = await this.content(digest);
    if (info) {
      await this.link(repository, digest, info.size);
      await this.shared.events.publish('blobMounted', { repository, digest: digest.value, size: info.size, from });
    }
    return info;
  }

  /** Lists `repository` in the catalog; called whenever something is stored in it. */
  async registerRepository(repository: string): Promise<void> {
    if (this.catalogued.has(repository)) return;
    await this.shared.adapter.putDocument(catalogKey(repository), Buffer.from('{}'), { ifAbsent: true });
    this.catalogued.add(repository);
  }

  /** Whether anything was ever stored in `repository`. */
  async repositoryExists(repository: string): Promise<boolean> {
    return this.catalogued.has(repository) || (await this.shared.adapter.getDocument(catalogKey(repository))) !== undefined;
  }

  /**
   * Repository names in code unit order, after `options.after`, at most `options.limit`. The
   * whole index is read and sorted here because the keys' order is not the names' order (`a/b`
   * is stored as `a/b/_repository`, which sorts after `a/b-c/…`).
   */
  async listRepositories(options: ListOptions = {}): Promise<string[]> {
    const keys = await this.shared.adapter.listDocuments(CATALOG_PREFIX);
    const names = keys.map(repositoryOfCatalogEntry).filter((name): name is string => name !== undefined);
    return pageNames(names.sort(), options);
  }
}
