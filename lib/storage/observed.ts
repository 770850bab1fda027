// Reports the unexpected failures of a storage adapter's calls as `storageError` events.
import type { RegistryEvents } from '../events';
import { NotFoundError, UploadConflictError, type StorageAdapter } from './adapter';

/**
 * The adapter with every call that rejects unexpectedly reported on `events` (and still
 * rejected). A missing key and an upload conflict are answers, not failures, and go unreported.
 */
export function observeStorage(adapter: StorageAdapter, events: RegistryEvents): StorageAdapter {
  return new Proxy(adapter, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver);
      if (typeof value !== 'function' || typeof property !== 'string') return value;
      return (...args: unknown[]) => {
        const result: unknown = (value as (...args: unknown[]) => unknown).apply(target, args);
        if (!(result instanceof Promise)) return result;
        return result.catch((error: unknown) => {
          if (!(error instanceof NotFoundError || error instanceof UploadConflictError)) {
            events.notify('storageError', { operation: property, kind: storageErrorKind(error), error });
          }
          throw error;
        });
      };
    },
  });
}

/** A bounded name for what went wrong: an errno code, `timeout`, an HTTP status class, or `other`. */
export function storageErrorKind(error: unknown): string {
  const { code, name, $metadata } = (error ?? {}) as { code?: unknown; name?: unknown; $metadata?: { httpStatusCode?: number } };
  if (typeof code === 'string' && /^E[A-Z0-9]{1,15}$/.test(code)) return code;
  if (name === 'TimeoutError' || name === 'AbortError') return 'timeout';
  const status = $metadata?.httpStatusCode;
  if (typeof status === 'number' && status >= 400 && status < 600) return `http_${Math.floor(status / 100)}xx`;
  return 'other';
}
