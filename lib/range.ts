/** Byte ranges: upload chunks' `Content-Range`, the `Range` of a session, and blob GETs' `Range`. */
import { RegistryError } from './errors';

/** An inclusive byte range. */
export interface ByteRange {
  start: number;
  end: number;
}

const MAX_SAFE_DIGITS = 15;

function parseOffset(text: string): number | undefined {
  if (!/^\d+$/.test(text) || text.length > MAX_SAFE_DIGITS) return undefined;
  return Number(text);
}

/**
 * Parses the `Content-Range` of an upload chunk: the spec's `<start>-<end>`, also accepting the
 * RFC 9110 form `bytes <start>-<end>/<total|*>` some clients send. Throws a 416 when malformed.
 */
export function parseChunkRange(header: string, storedSize: number): ByteRange {
  const match = /^(?:bytes[ =])?(\d+)-(\d+)(?:\/(?:\d+|\*))?$/.exec(header.trim());
  const start = match ? parseOffset(match[1]) : undefined;
  const end = match ? parseOffset(match[2]) : undefined;
  if (start === undefined || end === undefined || end < start) {
    throw rangeError(storedSize, `malformed Content-Range "${header.slice(0, 80)}"; expected <start>-<end>`);
  }
  return { start, end };
}

/** The `Range` header value that reports an upload session's stored size. */
export function uploadRangeHeader(size: number): string {
  return `0-${Math.max(size - 1, 0)}`;
}

/** A 416 that tells the client how much of the upload is stored, so it can resume. */
export function rangeError(storedSize: number, detail: string): RegistryError {
  return new RegistryError('BLOB_UPLOAD_INVALID', detail, {
    status: 416,
    headers: { Range: uploadRangeHeader(storedSize) },
  });
}

/**
 * Interprets a blob request's `Range` header against a blob of `size` bytes. Returns undefined
 * when the whole blob should be served (no header, or one this server ignores such as several
 * ranges), a range to serve, or `'unsatisfiable'`.
 */
export function parseRequestRange(header: string | undefined, size: number): ByteRange | 'unsatisfiable' | undefined {
  if (!header) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '')) return undefined;
  if (match[1] === '') {
    const suffix = parseOffset(match[2]);
    if (suffix === undefined) return undefined;
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(size - suffix, 0), end: size - 1 };
  }
  const start = parseOffset(match[1]);
  const end = match[2] === '' ? Number.MAX_SAFE_INTEGER : parseOffset(match[2]);
  if (start === undefined || end === undefined || end < start) return undefined;
  if (start >= size) return 'unsatisfiable';
  return { start, end: Math.min(end, size - 1) };
}
