/**
 * `npm run bench:calls`: where a small upload's time goes, storage call by storage call. The
 * router runs in this process over a `FileSystemStorage` in a new folder, every adapter method is
 * timed (a method that calls another counts in both), and one client pushes 4 KiB blobs as
 * `many-small` does (POST, then PUT `?digest=` with the body), one at a time, over a keep-alive
 * connection. It prints, per request and method, the calls per upload and the time they took,
 * beside each request's own time, and first the floor any call pays: one `stat` of a cached file
 * through libuv's threads (as every adapter call goes), against the same `stat` made synchronously.
 *
 *   npm run bench:calls                       # 300 uploads after 50 to warm up
 *   npm run bench:calls -- --uploads 1000 --size 65536
 *
 * At concurrency 1 every storage call's round trip through libuv's threads is waited for in turn,
 * which is what sets the rate of small uploads (docs/performance.md). A measurement, not a test.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import express from 'express';
import { createRegistryRouter, FileSystemStorage } from '../lib';

const WARM_UP = 50;

function flag(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  return index === -1 ? fallback : Number(process.argv[index + 1]);
}

interface Tally {
  calls: number;
  micros: number;
}

/** Wraps every method of `storage` that returns a promise, adding its calls and time to `tallies` under the request's method. */
function timeCalls(storage: FileSystemStorage, currentMethod: () => string, tallies: Map<string, Tally>): void {
  const target = storage as unknown as Record<string, unknown>;
  for (const name of Object.getOwnPropertyNames(FileSystemStorage.prototype)) {
    const method = target[name];
    if (name === 'constructor' || typeof method !== 'function') continue;
    target[name] = function (this: unknown, ...args: unknown[]): unknown {
      const started = process.hrtime.bigint();
      const result: unknown = method.apply(this, args);
      if (!(result instanceof Promise)) return result;
      const key = `${currentMethod()} ${name}`;
      return result.finally(() => {
        const tally = tallies.get(key) ?? { calls: 0, micros: 0 };
        tally.calls++;
        tally.micros += Number(process.hrtime.bigint() - started) / 1000;
        tallies.set(key, tally);
      });
    };
  }
}

interface Answer {
  status: number;
  location?: string;
}

function send(agent: http.Agent, method: string, url: string, body?: Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const request = http.request(url, { method, agent, headers: { 'content-length': body?.length ?? 0 } }, (response) => {
      response.resume();
      response.on('end', () => resolve({ status: response.statusCode!, location: response.headers.location }));
      response.on('error', reject);
    });
    request.on('error', reject);
    request.end(body);
  });
}

/** Microseconds per `stat` of one cached file, through libuv's threads and synchronously, after as many again to warm up. */
async function statCost(file: string, count: number): Promise<{ threaded: number; synchronous: number }> {
  const time = async (each: () => unknown) => {
    for (let index = 0; index < count; index++) await each();
    const started = process.hrtime.bigint();
    for (let index = 0; index < count; index++) await each();
    return Number(process.hrtime.bigint() - started) / 1000 / count;
  };
  return { threaded: await time(() => stat(file)), synchronous: await time(() => statSync(file)) };
}

async function main(): Promise<void> {
  const uploads = flag('uploads', 300);
  const size = flag('size', 4096);
  const root = mkdtempSync(join(os.tmpdir(), 'oci-calls-'));
  writeFileSync(join(root, 'probe'), 'probe');
  const floor = await statCost(join(root, 'probe'), 2000);
  const storage = new FileSystemStorage({ root });
  const tallies = new Map<string, Tally>();
  let method = '';
  timeCalls(storage, () => method, tallies);
  const app = express();
  app.use((request, _response, next) => {
    method = request.method;
    next();
  });
  app.use(createRegistryRouter({ storage }));
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const requestMicros = { POST: 0, PUT: 0 };
  try {
    for (let index = 0; index < WARM_UP + uploads; index++) {
      if (index === WARM_UP) {
        tallies.clear();
        requestMicros.POST = requestMicros.PUT = 0;
      }
      const body = randomBytes(size);
      const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
      let started = process.hrtime.bigint();
      const opened = await send(agent, 'POST', `${base}/v2/bench/calls/blobs/uploads/`);
      requestMicros.POST += Number(process.hrtime.bigint() - started) / 1000;
      if (opened.status !== 202 || !opened.location) throw new Error(`POST answered ${opened.status}`);
      const location = new URL(opened.location, base);
      location.searchParams.set('digest', digest);
      started = process.hrtime.bigint();
      const committed = await send(agent, 'PUT', location.href, body);
      requestMicros.PUT += Number(process.hrtime.bigint() - started) / 1000;
      if (committed.status !== 201) throw new Error(`PUT answered ${committed.status}`);
    }
  } finally {
    agent.destroy();
    server.close();
    rmSync(root, { recursive: true, force: true });
  }
  console.log(`one stat of a cached file: ${floor.threaded.toFixed(1)} us through libuv's threads, ${floor.synchronous.toFixed(1)} us synchronously`);
  console.log(`${uploads} uploads of ${size} B, one at a time, after ${WARM_UP} to warm up; times per upload`);
  for (const request of ['POST', 'PUT'] as const) {
    console.log(`\n${request}: ${(requestMicros[request] / uploads).toFixed(0)} us for the whole request, as the client saw it`);
    const rows = [...tallies].filter(([key]) => key.startsWith(`${request} `)).sort((a, b) => b[1].micros - a[1].micros);
    for (const [key, { calls, micros }] of rows) {
      const name = key.slice(request.length + 1);
      console.log(`  ${name.padEnd(20)} ${(calls / uploads).toFixed(1).padStart(4)} calls ${(micros / uploads).toFixed(0).padStart(6)} us (${(micros / calls).toFixed(0)} us each)`);
    }
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
