/** Requests held open mid-body, and waiting for what the server stored. */
import http, { type IncomingHttpHeaders } from 'node:http';
import { request, sha256 } from './http';

/** A response as the test client received it. */
export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** A request whose body the test sends piece by piece, to hold it open mid-body. */
export interface OpenRequest {
  /** Settles when the response has been read; rejects when the connection fails. */
  response: Promise<RawResponse>;
  /** Writes bytes and resolves once they are handed to the socket. */
  send(data: Buffer): Promise<void>;
  /** Ends the body. */
  end(data?: Buffer): void;
  /** Drops the connection, as a client that crashes or is killed. */
  abort(): void;
}

/** Starts a request and leaves its body open. */
export function openRequest(url: string, method: string, headers: Record<string, string>): OpenRequest {
  const req = http.request(url, { method, headers, agent: false });
  const response = new Promise<RawResponse>((resolve, reject) => {
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
  response.catch(() => undefined);
  return {
    response,
    send: (data) => new Promise<void>((resolve, reject) => req.write(data, (error) => (error ? reject(error) : resolve()))),
    end: (data) => req.end(data),
    abort: () => req.destroy(),
  };
}

/**
 * Polls `probe` until `done` holds (a condition, not a timing: it gives up after `attempts`
 * tries, 20 ms apart, with an error naming `what`).
 */
export async function waitFor<T>(what: string, probe: () => Promise<T>, done: (value: T) => boolean, attempts = 500): Promise<T> {
  for (let attempt = 0; attempt < attempts; attempt++) {
    const value = await probe();
    if (done(value)) return value;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`gave up waiting for ${what}`);
}

/** The bytes an upload session holds, from its status (GET → Range). */
export async function storedSize(baseUrl: string, location: string): Promise<number> {
  const status = await request(`${baseUrl}${location}`, { method: 'GET' });
  if (status.status !== 204) throw new Error(`status of ${location}: ${status.status} ${status.body.toString()}`);
  const range = String(status.headers.range);
  return range === '0-0' ? 0 : Number(range.split('-')[1]) + 1;
}

/**
 * Sends `data` from byte `stored` on to an upload and completes it under its sha256: by a PATCH
 * and a bare PUT, or with the rest as the PUT's last chunk. Resolves to the PUT's status; a
 * refused PATCH throws.
 */
export async function finishUpload(baseUrl: string, location: string, data: Buffer, stored: number, lastChunkIn: 'PATCH' | 'PUT' = 'PATCH'): Promise<number> {
  const rest =
    stored < data.length
      ? { headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `${stored}-${data.length - 1}` }, body: data.subarray(stored) }
      : {};
  const complete = `${baseUrl}${location}?digest=${sha256(data)}`;
  if (lastChunkIn === 'PUT') return (await request(complete, { method: 'PUT', ...rest })).status;
  if (stored < data.length) {
    const patched = await request(`${baseUrl}${location}`, { method: 'PATCH', ...rest });
    if (patched.status !== 202) throw new Error(`PATCH of the rest from ${stored}: ${patched.status} ${patched.body.toString()}`);
  }
  return (await request(complete, { method: 'PUT' })).status;
}
