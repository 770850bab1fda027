/** HTTP helpers for the specs: a host app with the router, digests, test bytes, listening, raw requests. */
import { createHash } from 'node:crypto';
import express from 'express';
import http, { type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { createRegistryRouter, type RegistryOptions, type StorageAdapter } from '../../lib';

/** Options for {@link makeApp}. */
export interface AppOptions extends Partial<RegistryOptions> {
  /** Mount the router under this prefix. */
  prefix?: string;
  /** Mount express.json() and express.urlencoded() before the router, as many host apps do. */
  bodyParsers?: boolean;
}

/** A host Express app with the registry router mounted. */
export function makeApp(storage: StorageAdapter, options: AppOptions = {}) {
  const { prefix, bodyParsers, ...routerOptions } = options;
  const app = express();
  if (bodyParsers) app.use(express.json(), express.urlencoded({ extended: false }));
  const router = createRegistryRouter({ storage, ...routerOptions });
  if (prefix) app.use(prefix, router);
  else app.use(router);
  app.get('/host-route', (_req, res) => {
    res.send('host');
  });
  return app;
}

/** `sha256:<hex>` of `data`. */
export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** `sha512:<hex>` of `data`. */
export function sha512(data: Buffer | string): string {
  return `sha512:${createHash('sha512').update(data).digest('hex')}`;
}

/** Deterministic pseudo-random bytes. */
export function bytes(length: number, seed = 1): Buffer {
  const buffer = Buffer.alloc(length);
  let state = seed;
  for (let i = 0; i < length; i++) {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    buffer[i] = state >> 16;
  }
  return buffer;
}

/** A listening server for tests that need raw HTTP (streamed bodies, disconnects). */
export async function listen(app: http.RequestListener): Promise<{ url: string; port: number; close: () => Promise<void> }> {
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A raw HTTP request; a Readable body is sent with chunked transfer encoding. */
export function request(
  url: string,
  options: { method: string; headers?: Record<string, string>; body?: Buffer | Readable },
): Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: options.method, headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (options.body instanceof Readable) options.body.pipe(req);
    else req.end(options.body);
  });
}

/** Splits `data` into a stream of chunks of `size` bytes. */
export function chunked(data: Buffer, size = 64 * 1024): Readable {
  const parts: Buffer[] = [];
  for (let offset = 0; offset < data.length; offset += size) parts.push(data.subarray(offset, offset + size));
  return Readable.from(parts);
}
