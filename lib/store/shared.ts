/** What the store's parts share: the adapter, the event emitter, the limits uploads are held to, the policy hooks and the clock. */
import type { Digest } from '../digest';
import type { RegistryEvents } from '../events';
import type { StorageAdapter } from '../storage/adapter';

/** The limits every blob stored through the registry is held to, whoever stores it. */
export interface StoreLimits {
  /** Largest blob, in bytes: a body that would grow an upload past it fails with 413 `SIZE_INVALID`. */
  maxBlobSize: number;
  /** Most upload sessions open at once in one repository; more get 429 `TOOMANYREQUESTS`. */
  maxUploadsPerRepository: number;
  /** Milliseconds a request body may stall before the request ends with 408. */
  bodyIdleTimeout: number;
  /** Least milliseconds between two `uploadProgress` events of one streaming body. */
  progressInterval: number;
  /**
   * Most running hashes (about a kilobyte each) kept in memory; beyond it the least recently used
   * is dropped, and its session verifies by reading its bytes back once at commit.
   */
  runningHashCache: number;
  /** Most session records (about a kilobyte each) kept in memory; a dropped one is read again from storage. */
  sessionRecordCache: number;
}

/** The defaults of {@link StoreLimits}. */
export const DEFAULT_LIMITS: Readonly<StoreLimits> = {
  maxBlobSize: 16 * 1024 ** 3,
  maxUploadsPerRepository: 1000,
  bodyIdleTimeout: 60_000,
  progressInterval: 500,
  runningHashCache: 4096,
  sessionRecordCache: 8192,
};

/** Room left under a quota, as an upload sees it before its body streams. */
export interface Headroom {
  /** Bytes a new blob may have. */
  bytes: number;
  /** The refusal of a blob of `size` bytes (or more), which does not fit. */
  refuse(size: number): Error;
}

/**
 * Where policies (quotas, immutable tags; see `lib/policies/`) take part in the store's writes.
 * Every hook is optional; without one the store behaves as if the policy allowed everything.
 */
export interface StoreHooks {
  /**
   * The room a new blob in `repository` has (undefined: no limit); read before a body streams,
   * so that it is refused early. `digest` is the blob's, when the request names it.
   */
  headroom?(repository: string, digest?: Digest): Promise<Headroom | undefined>;
  /**
   * Runs `link`, which makes `digest` (`size` bytes) visible in `repository`, if the policies
   * admit it; throws the refusal otherwise, without running it.
   */
  admitBlob?(repository: string, digest: Digest, size: number, link: () => Promise<void>): Promise<void>;
  /** Told after a blob was unlinked from `repository`. */
  blobRemoved?(repository: string): Promise<void>;
  /** Throws unless `tag` in `repository` may go from naming `current` to naming `next` (undefined: no manifest). */
  checkTag?(repository: string, tag: string, current: string | undefined, next: string | undefined): void;
  /** Whether `tag` may be set only once: the store then creates it with a conditional write, so that racing pushes cannot both set it. */
  isWriteOnce?(repository: string, tag: string): boolean;
}

/** The one value each part of the store is built over; no part reaches the adapter through another. */
export interface StoreShared {
  readonly adapter: StorageAdapter;
  readonly events: RegistryEvents;
  readonly limits: Readonly<StoreLimits>;
  readonly hooks: StoreHooks;
  /** Milliseconds since the epoch; tags record when they were set by it. */
  readonly now: () => number;
}
