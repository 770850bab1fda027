import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { RegistryError } from './errors';
import type { Log } from './log';
import type { Mirror } from './mirror/mirror';
import { isRecycling } from './storage/adapter';
import type { RegistryStore } from './store';

/** The HTTP methods a resource's method table may answer. */
export type HttpMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** A resource's handlers keyed by HTTP method; a method that is absent gets a 405. */
export type MethodTable = Partial<Record<HttpMethod, () => Promise<void>>>;

/** The request as the router sees it: Node's request plus what Express adds in every version. */
export interface RegistryRequest extends IncomingMessage {
  baseUrl: string;
  path: string;
}

/** Settings every resource reads, with defaults filled in. */
export interface ResolvedOptions {
  mountFromAnyRepository: boolean;
  deleteEnabled: boolean;
  maxManifestSize: number;
}

/** Everything a resource's handlers need for one request. */
export interface RequestContext {
  req: RegistryRequest;
  res: ServerResponse;
  /** Uploads, blobs, manifests, tags and referrers over the router's storage, with its limits. */
  store: RegistryStore;
  /** The mirror, when `repository` is under one of its prefixes. */
  mirror?: Mirror;
  options: ResolvedOptions;
  /** Where the router is mounted (`''` or e.g. `/r`), for building `Location` URLs. */
  baseUrl: string;
  /** The validated repository name, for routes that have one. */
  repository: string;
  /** Route parameters after the repository name (upload id, digest, reference), percent-decoded where safe. */
  params: Record<string, string>;
  query: URLSearchParams;
  /** Whether the catalog may list `repository` to the caller (always true without an `authorize` option). */
  mayList: (repository: string) => Promise<boolean>;
}

/** Builds a resource's method table for one request. */
export type ResourceDispatcher = (context: RequestContext, log: Log) => MethodTable;

/** Throws 405 `UNSUPPORTED` when the registry was set up without DELETE. */
export function requireDeleteEnabled(options: ResolvedOptions): void {
  if (!options.deleteEnabled) throw new RegistryError('UNSUPPORTED', 'deleting is disabled on this registry');
}

/** Ends a response with no body. */
export function sendEmpty(res: ServerResponse, status: number, headers: Record<string, string | number | string[]> = {}): void {
  res.statusCode = status;
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  res.setHeader('Content-Length', 0);
  res.end();
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

/** Ends a response with a JSON body. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.end(text);
}
