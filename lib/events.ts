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
  /** Emits `name` to its listeners; a listener that throws is logged, never passed to the caller. */
  notify<K extends RegistryEventName>(name: K, ...args: RegistryEventMap[K]): void {
    try {
      (this as EventEmitter).emit(name, ...args);
    } catch (error) {
      log('a %s listener threw: %O', name, error);
    }
  }
}
