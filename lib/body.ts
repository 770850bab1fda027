// Request bodies: where their bytes come from, the Meter they stream through with its idle timer, and that all of it ends with its reader.
import type { Hash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { RegistryError, type ErrorCode } from './errors';
import { Meter, type IdleLimit } from './meter';
import { countBodyBytes } from './request-log';

/** Whether the request carries a body (a positive Content-Length or a chunked one). */
export function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

/** What a body parser mounted before the router left on the request. */
interface ParsedRequest extends IncomingMessage {
  body?: unknown;
  /** Set by body-parser 1 (Express 4) once it has read the body. */
  _body?: boolean;
}

/**
 * The request's body as a byte stream, checked before anything is made for it: the socket's
 * bytes, or the exact bytes an `express.raw()` mounted before the router left in `req.body`.
 * Throws 400 `code` when another body parser read the body (its bytes are gone; the detail names
 * the fix) or when the client left before its body was read.
 */
export function requestBody(req: IncomingMessage, code: ErrorCode): Readable {
  const parsed = req as ParsedRequest;
  if (parsed._body || req.readableEnded) {
    // An empty body read by a parser lost nothing (body-parser 1 reads a `Content-Length: 0` one).
    if (!hasBody(req)) return Readable.from([], { objectMode: false });
    const encoding = req.headers['content-encoding'];
    const decoded = encoding !== undefined && encoding.toLowerCase() !== 'identity';
    if (Buffer.isBuffer(parsed.body) && !decoded) {
      countBodyBytes(req, parsed.body.length);
      return Readable.from([parsed.body], { objectMode: false });
    }
    throw new RegistryError(code, `${consumer(parsed.body, decoded)} mounted before the registry router, so its exact bytes are gone; mount the registry router before body parsers, or limit them to your own paths (express.raw() may stay: its bytes are used)`);
  }
  // A client that left while the registry was looking things up: its stream will never end.
  if (req.destroyed && !req.readableEnded) {
    throw new RegistryError(code, 'the client closed the connection before its body was read');
  }
  countBodyBytes(req);
  return req;
}

function consumer(body: unknown, decoded: boolean): string {
  if (decoded) return 'the request body was decoded (Content-Encoding) by a body parser';
  if (typeof body === 'string') return 'the request body was consumed by a text parser (express.text())';
  return 'the request body was consumed by a JSON or form parser (express.json(), express.urlencoded())';
}

/** How a body is metered on its way in; see {@link Meter}. */
export interface MeterSpec {
  /** Fed every byte, for a digest computed while the body streams. */
  hash?: Hash;
  /** Most bytes accepted; one more fails the body with `overLimit()`. */
  limit?: number;
  overLimit?: () => Error;
  /** Called with the running byte count after each chunk. */
  onBytes?: (bytes: number) => void;
  /** How long the body may stall, and the error then. */
  idle?: IdleLimit;
  /** What the reader hears when `source` fails (unless with a RegistryError, which it hears itself) or closes before its end: the client left. */
  ended: () => Error;
}

/**
 * Streams `source` through a {@link Meter} into `consume`, owning both until `consume` settles:
 * every error of either reaches `consume` through the meter (and none goes unhandled), a source
 * that fails or closes before its end fails the meter at once, and however it ends, the meter is
 * destroyed (its idle timer cleared) and unpiped before this settles. Every body the registry
 * reads passes through here.
 */
export async function meterBody<T>(source: Readable, spec: MeterSpec, consume: (meter: Meter) => Promise<T>): Promise<T> {
  const meter = new Meter(spec.hash, spec.limit, spec.overLimit, { idle: spec.idle, onBytes: spec.onBytes });
  let sourceError: Error | undefined;
  // A body that refused itself (a form part over its limit) says why; any other failure is a client gone.
  const fail = (error?: Error) => {
    sourceError ??= error instanceof RegistryError ? error : spec.ended();
    meter.destroy(sourceError);
  };
  const closed = () => {
    if (!source.readableEnded) fail();
  };
  source.on('error', fail);
  source.once('close', closed);
  if (source.destroyed) closed();
  // The reader may first await other things (a lock); the meter's error waits for it meanwhile.
  meter.on('error', () => undefined);
  source.pipe(meter);
  try {
    return await consume(meter);
  } catch (error) {
    throw sourceError ?? error;
  } finally {
    source.unpipe(meter);
    source.removeListener('error', fail);
    source.removeListener('close', closed);
    meter.destroy();
  }
}

/** The whole body as one buffer, refusing more than `limit` bytes without reading them all. */
export async function readWholeBody(req: IncomingMessage, spec: MeterSpec & { code: ErrorCode; limit: number; overLimit: () => Error }): Promise<Buffer> {
  if (Number(req.headers['content-length'] ?? 0) > spec.limit) throw spec.overLimit();
  return meterBody(requestBody(req, spec.code), spec, async (meter) => {
    const chunks: Buffer[] = [];
    for await (const chunk of meter) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  });
}
