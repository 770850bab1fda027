/** The registry's data model over a storage adapter: uploads, blobs and manifests as peers over one shared base. */
import { Readable } from 'node:stream';
import type { Digest } from '../digest';
import { RegistryEvents } from '../events';
import type { StorageAdapter } from '../storage/adapter';
import { BlobStore } from './blobs';
import { GarbageCollector } from './collector';
import { ManifestStore } from './manifests';
import { CollectionMarks } from './marks';
import { DEFAULT_LIMITS, type StoreHooks, type StoreLimits, type StoreShared } from './shared';
import { UploadStore, type StoredBlob } from './uploads';

export { BlobStore, type BlobInfo } from './blobs';
export { GarbageCollector, CollectionRunningError, type CollectOptions, type CollectionReport } from './collector';
export { ManifestStore, type ManifestRecord, type StoredManifest, type TagRecord } from './manifests';
export { DEFAULT_LIMITS, type Headroom, type StoreHooks, type StoreLimits } from './shared';
export { UploadStore, type AppendOptions, type StoredBlob, type UploadSession } from './uploads';

/**
 * Settings of a {@link RegistryStore}: the limits every stored blob is held to (each defaulting
 * as in {@link DEFAULT_LIMITS}), what a manifest may reference, the policies' hooks, and the clock.
 */
export interface RegistryStoreOptions extends Partial<StoreLimits> {
  /** Accept manifests whose blobs or child manifests are not in the repository. Default false. */
  allowSparseManifests?: boolean;
  /** Where changes are announced; a new emitter by default. */
  events?: RegistryEvents;
  /** How policies take part in the store's writes (see `lib/policies/`); default none. */
  hooks?: StoreHooks;
  /** Milliseconds since the epoch, as tags record when they were set. Default `Date.now`. */
  now?: () => number;
}

/**
 * The registry's data model over a {@link StorageAdapter}. Adapters only move bytes; every rule
 * about sessions, digests, links, tags and visibility lives in one of the store's parts, once:
 * {@link UploadStore} (sessions), {@link BlobStore} (links, mounts, catalog) and
 * {@link ManifestStore} (manifests, tags, referrers) and {@link GarbageCollector}. Each part talks to the adapter itself and
 * to its peers only through their methods.
 */
export class RegistryStore {
  /** Every change the store makes is announced here. */
  readonly events: RegistryEvents;
  /** The limits in force, with defaults filled in. */
  readonly limits: Readonly<StoreLimits>;
  readonly uploads: UploadStore;
  readonly blobs: BlobStore;
  readonly manifests: ManifestStore;
  readonly collector: GarbageCollector;

  constructor(adapter: StorageAdapter, options: RegistryStoreOptions = {}) {
    const { allowSparseManifests = false, events = new RegistryEvents(), hooks = {}, now = Date.now, ...limitOptions } = options;
    const limits = Object.freeze({ ...DEFAULT_LIMITS, ...definedOnly(limitOptions) });
    const shared: StoreShared = { adapter, events, limits, hooks, now };
    this.events = shared.events;
    this.limits = limits;
    const marks = new CollectionMarks(adapter);
    this.blobs = new BlobStore(shared, marks);
    this.uploads = new UploadStore(shared, this.blobs, marks);
    this.manifests = new ManifestStore(shared, this.blobs, marks, allowSparseManifests);
    this.collector = new GarbageCollector(shared, { uploads: this.uploads, blobs: this.blobs, manifests: this.manifests, marks });
  }

  /**
   * Stores `data` as a blob in `repository` in one call, through an upload session held to the
   * store's limits: verified against `digest` when given, else stored under its sha256. A failure
   * leaves nothing behind.
   */
  async putBlob(repository: string, data: Readable | Buffer, digest?: Digest): Promise<StoredBlob> {
    const session = await this.uploads.start(repository, digest?.algorithm);
    try {
      await this.uploads.append(session, 0, Buffer.isBuffer(data) ? Readable.from([data]) : data, { announcedLength: Buffer.isBuffer(data) ? data.length : undefined, digest });
      return await this.uploads.completeAs(session, digest);
    } catch (error) {
      await this.uploads.cancel(session);
      throw error;
    }
  }
}

/** `options` without the keys whose value is undefined, so they do not hide a default. */
function definedOnly<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as Partial<T>;
}
