/** Every HTTP response the registry writes: empty, JSON, streamed, OCI errors, and the blob and manifest responses. */
import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import type { Digest } from './digest';
import { toRegistryError } from './errors';
import type { ByteRange } from './range';
import { isRecycling } from './storage/adapter';
import type { StoredManifest } from './store';

/** Ends a response with no body. */
export function sendEmpty(res: ServerResponse, status: number, headers: Record<string, string | number | string[]> = {}): void {
  res.statusCode = status;
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  res.setHeader('Content-Length', 0);
  res.end();
}

/** Ends a response with a JSON body. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  writeJsonHead(res, status, text, headers);
  res.end(text);
}

/** Sets the status and headers of a JSON response whose body is `text`. */
function writeJsonHead(res: ServerResponse, status: number, text: string, headers: Record<string, string>): void {
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  res.setHeader('Content-Length', Buffer.byteLength(text));
}

/**
 * Writes `error` as an OCI error response. Anything that is not a {@link RegistryError} becomes
 * a 500 `UNKNOWN` whose detail does not leak internals. With `keepOpen` the whole response is
 * written but not ended, for the caller to end once the request is done with.
 */
export function sendError(res: ServerResponse, error: unknown, { keepOpen = false } = {}): void {
  const registryError = toRegistryError(error);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (!keepOpen) return sendJson(res, registryError.status, registryError.toBody(), registryError.headers);
  const body = JSON.stringify(registryError.toBody());
  writeJsonHead(res, registryError.status, body, registryError.headers);
  res.write(body);
}

/**
 * Sends `stream` as the response body, like `pipeline(stream, res)`; a {@link RecyclingReadable}
 * gets each chunk back once the socket has taken it.
 */
export async function sendStream(stream: Readable, res: ServerResponse): Promise<void> {
  if (!isRecycling(stream)) return pipeline(stream, res);
  let failure: Error | undefined;
  const sent = finished(res);
  stream.on('data', (chunk: Buffer) => {
    if (!res.write(chunk, () => stream.recycle(chunk))) {
      stream.pause();
      res.once('drain', () => stream.resume());
    }
  });
  stream.once('end', () => res.end());
  stream.once('error', (error) => {
    failure = error;
    res.destroy(error);
  });
  try {
    await sent;
  } catch (error) {
    throw failure ?? error;
  } finally {
    // Stops reading when the client went away first.
    stream.destroy();
  }
}

/**
 * Answers a blob GET or HEAD: 200 with the whole blob, or 206 with `range`, with its digest and
 * caching headers. `open` gives the bytes, and is called only when there are bytes to send
 * (`undefined` for a HEAD).
 */
export async function sendBlob(
  res: ServerResponse,
  blob: { digest: Digest; size: number },
  range: ByteRange | undefined,
  open: (() => Promise<Readable>) | undefined,
  /** Writes the body instead of `open` (a pull-through cache sending bytes as they arrive). */
  send?: (res: ServerResponse, range: ByteRange | undefined) => Promise<void>,
): Promise<void> {
  const length = range ? range.end - range.start + 1 : blob.size;
  res.statusCode = range ? 206 : 200;
  res.setHeader('Content-Type', 'application/octet-stream');
  res.setHeader('Docker-Content-Digest', blob.digest.value);
  res.setHeader('Accept-Ranges', 'bytes');
  res.setHeader('ETag', `"${blob.digest.value}"`);
  // Content is immutable; no-transform also keeps compression middleware away from blobs.
  res.setHeader('Cache-Control', 'max-age=31536000, immutable, no-transform');
  if (range) res.setHeader('Content-Range', `bytes ${range.start}-${range.end}/${blob.size}`);
  res.setHeader('Content-Length', length);
  if (!open || length === 0) {
    res.end();
    return;
  }
  if (send) await send(res, range);
  else await sendStream(await open(), res);
}

/** Answers a manifest GET or HEAD: its exact bytes (none for a HEAD), typed as it was pushed. */
export function sendManifest(res: ServerResponse, manifest: StoredManifest, body: Buffer | undefined): void {
  res.statusCode = 200;
  res.setHeader('Content-Type', manifest.mediaType);
  res.setHeader('Docker-Content-Digest', manifest.digest.value);
  res.setHeader('ETag', `"${manifest.digest.value}"`);
  res.setHeader('Content-Length', manifest.size);
  res.end(body);
}
