// Follows one request through the router and reports it as a `requestCompleted` event.
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RegistryEvents, RouteName } from './events';

const bodyBytes = new WeakMap<IncomingMessage, number>();

/**
 * Counts the request body's bytes: `parsed` read by a body parser before the router, or else
 * each chunk as it is read. Called by whoever is about to consume the body (a 'data' listener
 * makes the stream flow, so never earlier).
 */
export function countBodyBytes(req: IncomingMessage, parsed?: number): void {
  if (bodyBytes.has(req)) return;
  bodyBytes.set(req, parsed ?? 0);
  if (parsed === undefined) req.on('data', (chunk: Buffer) => bodyBytes.set(req, bodyBytes.get(req)! + chunk.length));
}

/** What the router learns about a request while dispatching it. */
export interface RequestLabels {
  route: RouteName;
  repository?: string;
}

/** Notes the route a request was matched to and announces it with `requestStarted`. */
export function startRequest(labels: RequestLabels, route: RouteName, method: string, events: RegistryEvents): void {
  labels.route = route;
  events.notify('requestStarted', { route, method });
}

/**
 * Times the request and counts the body bytes written to `res`, and once the response has
 * ended (or the connection closed first) emits `requestCompleted`. Returns the labels the
 * router fills in once it has matched a route.
 */
export function trackRequest(req: IncomingMessage, res: ServerResponse, events: RegistryEvents): RequestLabels {
  const started = performance.now();
  const labels: RequestLabels = { route: 'unknown' };
  let bytesSent = 0;
  const count = (chunk: unknown, encoding: unknown) => {
    if (typeof chunk === 'string') bytesSent += Buffer.byteLength(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
    else if (chunk instanceof Uint8Array) bytesSent += chunk.length;
  };
  const write = res.write;
  const end = res.end;
  res.write = function (this: ServerResponse, chunk: unknown, ...rest: unknown[]) {
    count(chunk, rest[0]);
    return (write as (...args: unknown[]) => boolean).call(this, chunk, ...rest);
  } as typeof res.write;
  res.end = function (this: ServerResponse, chunk?: unknown, ...rest: unknown[]) {
    if (typeof chunk !== 'function') count(chunk, rest[0]);
    return (end as (...args: unknown[]) => ServerResponse).call(this, chunk, ...rest);
  } as typeof res.end;
  res.once('close', () => {
    events.notify('requestCompleted', {
      route: labels.route,
      method: req.method ?? 'GET',
      status: res.statusCode,
      repository: labels.repository,
      bytesReceived: bodyBytes.get(req) ?? 0,
      // Node drops the body of a response to HEAD.
      bytesSent: req.method === 'HEAD' ? 0 : bytesSent,
      ms: performance.now() - started,
      aborted: !res.writableFinished,
    });
  });
  return labels;
}

/** The request behind a change, as the reference registry's notifications describe it. */
export interface RequestOrigin {
  /** The client's `X-Request-Id` when it sent a sane one, else a new UUID. */
  id: string;
  /** The client's address. */
  addr: string;
  /** The `Host` the client asked for. */
  host: string;
  method: string;
  useragent: string;
}

const origins = new AsyncLocalStorage<RequestOrigin>();
const REQUEST_ID = /^[\x21-\x7e]{1,128}$/;

/** Runs `work` with `req` as the origin of whatever changes it makes. */
export function withOrigin<T>(req: IncomingMessage, work: () => Promise<T>): Promise<T> {
  const given = req.headers['x-request-id'];
  const origin: RequestOrigin = {
    id: typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID(),
    addr: req.socket.remoteAddress ?? '',
    host: req.headers.host ?? '',
    method: req.method ?? '',
    useragent: req.headers['user-agent'] ?? '',
  };
  return origins.run(origin, work);
}

/** The request whose handling is running now, if any (host code calling the store has none). */
export function currentOrigin(): RequestOrigin | undefined {
  return origins.getStore();
}
