/**
 * express-oci-registry: an OCI Distribution (container registry) API as an Express router over
 * a storage adapter the host app supplies.
 *
 * @packageDocumentation
 */
export { createRegistryRouter, DEFAULT_MAX_MANIFEST_SIZE, type RegistryOptions, type RegistryRouter } from './router';
export { REFERRERS_PAGE_SIZE } from './paging';
export { OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, MAX_TAGS_PER_PUSH, type ManifestReference, type ParsedManifest, type ReferrerDescriptor } from './manifest';
export {
  RegistryEvents,
  REGISTRY_EVENT_NAMES,
  RECORDED_EVENT_NAMES,
  type RegistryEventMap,
  type RegistryEventName,
  type UploadEvent,
  type UploadProgressEvent,
  type UploadEndedEvent,
  type BlobCommittedEvent,
  type BlobMountedEvent,
  type BlobDeletedEvent,
  type ManifestPushedEvent,
  type ManifestDeletedEvent,
  type TagDeletedEvent,
  type RecordedEventName,
  type EventRecorder,
  type RouteName,
  type RequestStartedEvent,
  type RequestInfo,
  type StorageErrorEvent,
  type PurgeCompletedEvent,
  type NotificationSentEvent,
  type UpstreamObject,
  type UpstreamFetchedEvent,
  type MirrorLookupEvent,
} from './events';
export type { UpstreamOptions } from './mirror/mirror';
export type { UpstreamCredentials } from './mirror/upstream-client';
export type { NotificationEndpoint } from './notifications/notifier';
export type { NotificationFormat } from './notifications/formats';
export {
  basicChallenge,
  bearerChallenge,
  type Action,
  type AccessRequest,
  type Authorize,
  type AuthorizationResult,
  type Challenge,
} from './access';
export { basicAuthorize, basicCredentials, type BasicAuthorizeOptions, type BasicCredentials } from './basic-auth';
export {
  type StorageAdapter,
  type ContentInfo,
  type ListOptions,
  type PutDocumentOptions,
  type RecyclingReadable,
  isRecycling,
  UploadConflictError,
  NotFoundError,
  StorageFullError,
  StorageUnavailableError,
  DEFAULT_RETRY_AFTER,
  asStorageFault,
  assertSafeKey,
  pageNames,
} from './storage/adapter';
export { MemoryStorage, type MemoryStorageOptions } from './storage/memory';
export { FileSystemStorage, type FileSystemStorageOptions } from './storage/fs';
export { RegistryError, ERROR_CODES, toRegistryError, type ErrorCode } from './errors';
export { sendError } from './respond';
export { validateName, validateTag } from './names';
export { parseDigest, SUPPORTED_ALGORITHMS, type Digest, type DigestAlgorithm } from './digest';
export type { ByteRange } from './range';
export {
  RegistryStore,
  GarbageCollector,
  CollectionRunningError,
  type CollectOptions,
  type CollectionReport,
  DEFAULT_LIMITS,
  type RegistryStoreOptions,
  type StoreLimits,
  type UploadStore,
  type UploadSession,
  type AppendOptions,
  type StoredBlob,
  type BlobStore,
  type BlobInfo,
  type ManifestStore,
  type ManifestRecord,
  type StoredManifest,
  type TagRecord,
  type StoreHooks,
  type Headroom,
} from './store';
export { QuotaPolicy, type QuotaOption, type QuotaRule, type QuotaUsage } from './policies/quota';
export { immutableTagHooks, immutableTagPredicate, type ImmutableTagsOption } from './policies/immutable-tags';
export {
  applyRetention,
  validateRetention,
  type RetentionRule,
  type RetentionOptions,
  type RetentionResult,
  type RemovedTag,
} from './policies/retention';
export { globMatcher } from './policies/patterns';
export {
  multerStorage,
  type MulterStorageOptions,
  type MulterFileStream,
  type RegistryFileInfo,
  type RegistryStorageEngine,
} from './multer-storage';
