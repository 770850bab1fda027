import { asStorageFault, StorageFullError, StorageUnavailableError } from './storage/adapter';

/**
 * The error codes of the OCI Distribution Specification v1.1, each with the HTTP status the
 * spec (or, where it is silent, the reference registry) pairs it with and its standard message.
 */
export const ERROR_CODES = {
  BLOB_UNKNOWN: { status: 404, message: 'blob unknown to registry' },
  BLOB_UPLOAD_INVALID: { status: 400, message: 'blob upload invalid' },
  BLOB_UPLOAD_UNKNOWN: { status: 404, message: 'blob upload unknown to registry' },
  DIGEST_INVALID: { status: 400, message: 'provided digest did not match uploaded content' },
  MANIFEST_BLOB_UNKNOWN: { status: 400, message: 'manifest references a blob unknown to the registry' },
  MANIFEST_INVALID: { status: 400, message: 'manifest invalid' },
  MANIFEST_UNKNOWN: { status: 404, message: 'manifest unknown to registry' },
  NAME_INVALID: { status: 400, message: 'invalid repository name' },
  NAME_UNKNOWN: { status: 404, message: 'repository name not known to registry' },
  SIZE_INVALID: { status: 400, message: 'provided length did not match content length' },
  TAG_INVALID: { status: 400, message: 'invalid tag' },
  UNAUTHORIZED: { status: 401, message: 'authentication required' },
  DENIED: { status: 403, message: 'requested access to the resource is denied' },
  UNSUPPORTED: { status: 405, message: 'the operation is unsupported' },
  TOOMANYREQUESTS: { status: 429, message: 'too many requests' },
  RANGE_INVALID: { status: 416, message: 'invalid content range' },
  /** Not in the OCI spec: the reference registry's code for a backend it cannot reach. */
  UNAVAILABLE: { status: 503, message: 'service unavailable' },
  UNKNOWN: { status: 500, message: 'unknown error' },
} as const;

/** One of the error codes in {@link ERROR_CODES}. */
export type ErrorCode = keyof typeof ERROR_CODES;

/** Options that refine a {@link RegistryError} beyond its code's defaults. */
export interface RegistryErrorOptions {
  /** HTTP status to answer with instead of the code's default (e.g. 413 for SIZE_INVALID). */
  status?: number;
  /** Extra response headers (e.g. `Range` on a 416, `Allow` on a 405). */
  headers?: Record<string, string>;
  /**
   * The body's `message` instead of the code's standard one. Clients such as skopeo print the
   * code and message but not the detail, so a refusal the user must act on says why here.
   */
  message?: string;
}

/**
 * An error the registry answers with an OCI error body. Handlers throw it; the router turns it
 * into `{"errors":[{"code","message","detail"}]}` with the right status.
 */
export class RegistryError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly detail: unknown;
  readonly headers: Record<string, string>;
  /** The body's `message`: the code's standard one unless the thrower gave its own. */
  readonly bodyMessage: string;

  constructor(code: ErrorCode, detail?: unknown, options: RegistryErrorOptions = {}) {
    super(`${code}: ${options.message ?? ERROR_CODES[code].message}`);
    this.name = 'RegistryError';
    this.code = code;
    this.status = options.status ?? ERROR_CODES[code].status;
    this.detail = detail ?? null;
    this.headers = options.headers ?? {};
    this.bodyMessage = options.message ?? ERROR_CODES[code].message;
  }

  /** The JSON body the spec defines for errors. */
  toBody(): { errors: { code: ErrorCode; message: string; detail: unknown }[] } {
    return { errors: [{ code: this.code, message: this.bodyMessage, detail: this.detail }] };
  }
}

/**
 * The answer to `error`, the one place where storage faults become statuses: a
 * {@link StorageFullError} (or `ENOSPC`/`EDQUOT`) is 507 `UNKNOWN` saying storage is full, a
 * {@link StorageUnavailableError} (or a refused or timed-out connection) 503 `UNAVAILABLE` with
 * `Retry-After`, and anything else that is not a {@link RegistryError} a 500 `UNKNOWN` whose
 * detail does not leak internals.
 */
export function toRegistryError(error: unknown): RegistryError {
  if (error instanceof RegistryError) return error;
  const fault = asStorageFault(error);
  if (fault instanceof StorageFullError) {
    return new RegistryError('UNKNOWN', 'storage is full: the registry cannot store more data until space is freed', { status: 507 });
  }
  if (fault instanceof StorageUnavailableError) {
    return new RegistryError('UNAVAILABLE', 'storage is unavailable: retry later', { headers: { 'Retry-After': String(fault.retryAfter) } });
  }
  return new RegistryError('UNKNOWN', 'internal error');
}
