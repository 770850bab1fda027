// The registry's typed events: every change, request and maintenance run, by name and payload.
import { EventEmitter } from 'node:events';
import { moduleLogger } from './log';
import type { CollectionReport } from './store/collector';

/** Fields every upload session event carries. */
export interface UploadEvent {
  repository: string;
  /** The session id, as in `Docker-Upload-UUID`. */
  uploadId: string;
}

/** Progress of a session's bytes; `bytes` counts everything received so far, not one chunk. */
export interface UploadProgressEvent extends UploadEvent {
  bytes: number;
}

/** A session that ended without a blob: `size` is how many bytes it held and were dropped. */
export interface UploadEndedEvent extends UploadEvent {
  size: number;
}

/** A blob verified and visible in a repository. */
export interface BlobCommittedEvent extends UploadEvent {
  /** `algorithm:hex`. */
  digest: string;
  size: number;
  /** Milliseconds spent checking the bytes against the digest (near zero when a running hash covered them). */
  verifyMs: number;
}

/** A blob linked into a repository from stored content, without its bytes being sent again. */
export interface BlobMountedEvent {
  repository: string;
  digest: string;
  size: number;
  /** The repository named by `from`, or undefined when any stored content was eligible. */
  from?: string;
}

/** A blob unlinked from a repository (its content may stay for other repositories). */
export interface BlobDeletedEvent {
  repository: string;
  digest: string;
}

/** A manifest stored in a repository, by digest and (when pushed by tag) under a tag. */
export interface ManifestPushedEvent {
  repository: string;
  digest: string;
  size: number;
  mediaType: string;
  /** The tag it was pushed to; undefined for a push by digest. */
  tag?: string;
  /** Every tag the push set: the path's tag, or the `tag` query parameters of a push by digest. */
  tags: string[];
  /** The artifact type (`artifactType`, else an image's config media type), when it has one. */
  artifactType?: string;
  /** The digest of the manifest it refers to, for a referrer. */
  subject?: string;
}

/** A manifest removed from a repository, together with the tags that named it. */
export interface ManifestDeletedEvent {
  repository: string;
  digest: string;
  /** The tags deleted with it. */
  tags: string[];
}

/** A tag removed; the manifest it named stays. */
export interface TagDeletedEvent {
  repository: string;
  tag: string;
  /** The manifest the tag named. */
  digest: string;
}

/** The resource a request addressed, a bounded set fit for a metric label; `unknown` for paths no route matches. */
export type RouteName = 'base' | 'catalog' | 'upload' | 'blob' | 'manifest' | 'tags' | 'referrers' | 'unknown';

/** A request the router has matched to a route and starts serving. */
export interface RequestStartedEvent {
  route: RouteName;
  method: string;
}

/** One request the router answered (or that ended early), for access logs and metrics. */
export interface RequestInfo {
  route: RouteName;
  method: string;
  /** The status sent, or the one set when the connection closed first. */
  status: number;
  /** The repository named in the path, for routes that have one. */
  repository?: string;
  /** Body bytes read from the request. */
  bytesReceived: number;
  /** Body bytes handed to the socket (none for HEAD). */
  bytesSent: number;
  /** Milliseconds from the router taking the request to the response ending. */
  ms: number;
  /** True when the connection closed before the whole response was sent. */
  aborted: boolean;
}

/** A storage adapter call that failed unexpectedly (not a missing key or an upload conflict). */
export interface StorageErrorEvent {
  /** The adapter method, e.g. `putDocument`. */
  operation: string;
  /** A bounded classification: an errno code such as `ENOSPC`, `timeout`, or `other`. */
  kind: string;
  error: unknown;
}

/** One run of the stale-upload purger. */
export interface PurgeCompletedEvent {
  /** Sessions removed. */
  expired: number;
  ms: number;
  /** False when the run failed (a storage error); `expired` is then 0 whatever it removed before. */
  ok: boolean;
}

/** One attempt to deliver notifications to an endpoint. */
export interface NotificationSentEvent {
  /** The endpoint's name (see `NotificationEndpoint.name`). */
  endpoint: string;
  /** Events the request carried. */
  events: number;
  /** False when the endpoint refused, failed or did not answer in time; the events are retried. */
  ok: boolean;
  ms: number;
}

/** What a pull-through cache fetched or looked up. */
export type UpstreamObject = 'manifest' | 'blob' | 'tags';

/** A pull-through cache went to its upstream: content fetched and stored, or a failure. */
export interface UpstreamFetchedEvent {
  repository: string;
  what: UpstreamObject;
  /** Bytes received from the upstream. */
  bytes: number;
  /** Milliseconds from the request to the upstream until the content was stored, or the failure. */
  ms: number;
  /** False when the upstream failed, was unreachable, or sent bytes that do not match their digest. */
  ok: boolean;
  /** The upstream's base URL. */
  upstream?: string;
  /** The tag or digest asked for. */
  reference?: string;
  /** The digest stored, when `ok`. */
  digest?: string;
  /** Why it failed, when not `ok`. */
  error?: string;
  /** When not `ok`: whether the client was answered from storage instead (a tag fetched before). */
  servedCached?: boolean;
}

/** A pull-through cache answered a read from what it holds (`hit`) or had to go upstream. */
export interface MirrorLookupEvent {
  repository: string;
  what: UpstreamObject;
  hit: boolean;
  /** The tag or digest asked for. */
  reference?: string;
  /** Set when a stored tag older than its TTL was checked with the upstream (`hit` when it still named the stored digest). */
  revalidated?: boolean;
}

/**
 * Every event the registry emits, by name, with its listener's arguments. Listeners run
 * synchronously after the change is stored; one that throws is logged under
 * `express-oci-registry:events` and does not affect the request.
 */
export interface RegistryEventMap {
  /** A session was opened (POST …/blobs/uploads/, or a multer bridge upload). */
  uploadStarted: [UploadEvent];
  /** Bytes arrived in a session; at most once per `progressInterval` while a body streams. */
  uploadProgress: [UploadProgressEvent];
  /** A session's bytes were verified against their digest and published as a blob. */
  blobCommitted: [BlobCommittedEvent];
  /** A mount linked an existing blob into a repository. */
  blobMounted: [BlobMountedEvent];
  /** A session was cancelled (DELETE on it, a failed monolithic upload, a dropped multer file). */
  uploadCancelled: [UploadEndedEvent];
  /** A stale session was purged. */
  uploadExpired: [UploadEndedEvent];
  /** A blob was deleted from a repository. */
  blobDeleted: [BlobDeletedEvent];
  /** A manifest was stored (pushed by tag or by digest). */
  manifestPushed: [ManifestPushedEvent];
  /** A manifest was deleted by digest, with its tags. */
  manifestDeleted: [ManifestDeletedEvent];
  /** A tag was deleted. */
  tagDeleted: [TagDeletedEvent];
  /** A garbage collection finished (or, in a dry run, reported what it would remove). */
  garbageCollected: [CollectionReport];
  /** A request under `/v2` arrived (with `requestCompleted` it gives the requests in flight). */
  requestStarted: [RequestStartedEvent];
  /** A request under `/v2` ended: the access log line. */
  requestCompleted: [RequestInfo];
  /** A storage adapter call failed unexpectedly. */
  storageError: [StorageErrorEvent];
  /** The stale-upload purger finished a run. */
  purgeCompleted: [PurgeCompletedEvent];
  /** A notification request to an endpoint ended, acknowledged or not. */
  notificationSent: [NotificationSentEvent];
  /** A pull-through cache fetched from its upstream. */
  upstreamFetched: [UpstreamFetchedEvent];
  /** A pull-through cache looked up what it holds. */
  mirrorLookup: [MirrorLookupEvent];
}

/** The name of a registry event. */
export type RegistryEventName = keyof RegistryEventMap;

// A record rather than an array, so that the compiler checks that every event is listed.
const EVENT_NAME_SET: Record<RegistryEventName, true> = {
  uploadStarted: true,
  uploadProgress: true,
  blobCommitted: true,
  blobMounted: true,
  uploadCancelled: true,
  uploadExpired: true,
  blobDeleted: true,
  manifestPushed: true,
  manifestDeleted: true,
  tagDeleted: true,
  garbageCollected: true,
  requestStarted: true,
  requestCompleted: true,
  storageError: true,
  purgeCompleted: true,
  notificationSent: true,
  upstreamFetched: true,
  mirrorLookup: true,
};

/** Every event name, e.g. to forward or log them all. */
export const REGISTRY_EVENT_NAMES = Object.freeze(Object.keys(EVENT_NAME_SET) as RegistryEventName[]);

const log = moduleLogger('events')({});

/**
 * The registry's typed event emitter, `router.events`:
 *
 * ```ts
 * const registry = createRegistryRouter({ storage });
 * registry.events.on('blobCommitted', ({ repository, digest, size }) => console.log(repository, digest, size));
 * ```
 */
export class RegistryEvents extends EventEmitter<RegistryEventMap> {
  private readonly recorders = new Set<EventRecorder>();

  /** Emits `name` to its listeners; a listener that throws is logged, never passed to the caller. */
  notify<K extends RegistryEventName>(name: K, ...args: RegistryEventMap[K]): void {
    try {
      (this as EventEmitter).emit(name, ...args);
    } catch (error) {
      log('a %s listener threw: %O', name, error);
    }
  }

  /**
   * Emits a change that must not be lost, and resolves once every recorder (the notification
   * outbox) has stored it. The store awaits it before the change is acknowledged, so a failing
   * recorder fails the request and the client's retry records the change again.
   */
  async publish<K extends RecordedEventName>(name: K, payload: RegistryEventMap[K][0]): Promise<void> {
    this.notify(name, ...([payload] as RegistryEventMap[K]));
    await Promise.all([...this.recorders].map((record) => record(name, payload)));
  }

  /** Adds a recorder that {@link publish} awaits; returns the function that removes it. */
  addRecorder(recorder: EventRecorder): () => void {
    this.recorders.add(recorder);
    return () => this.recorders.delete(recorder);
  }
}

/** The changes {@link RegistryEvents.publish} records: what notifications can carry. */
export const RECORDED_EVENT_NAMES = Object.freeze(['manifestPushed', 'manifestDeleted', 'tagDeleted', 'blobCommitted', 'blobMounted', 'blobDeleted'] as const);

/** The name of a change {@link RegistryEvents.publish} records. */
export type RecordedEventName = (typeof RECORDED_EVENT_NAMES)[number];

/** Stores a published change durably; see {@link RegistryEvents.addRecorder}. */
export type EventRecorder = <K extends RecordedEventName>(name: K, payload: RegistryEventMap[K][0]) => Promise<void>;
