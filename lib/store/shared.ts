/** What the store's parts share: the adapter, the event emitter, and the limits uploads are held to. */
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

/** The one value each part of the store is built over; no part reaches the adapter through another. */
export interface StoreShared {
  readonly adapter: StorageAdapter;
  readonly events: RegistryEvents;
  readonly limits: Readonly<StoreLimits>;
}
