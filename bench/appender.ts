/**
 * `npm run bench:appender`: what an upload's disk path costs on top of receiving and hashing it.
 * A bare `node:http` server (no router, no storage adapter) takes 1 GiB PUTs and, by mode:
 *
 * - `receive`: hashes the body (sha256), as the router does, and writes nothing;
 * - `direct`: hashes it and appends it through `FileAppender` with direct writes, then fsyncs;
 * - `cache`: the same through the page cache (`directWrites: false`).
 *
 *   npm run bench:appender                              # 1 GiB, 3 PUTs per mode
 *   npm run bench:appender -- --size-mib 256 --rounds 5
 *
 * The server runs as its own process, like the registry in `npm run bench`; the client sends one
 * random buffer, generated before timing, over a keep-alive connection. Modes run in turn. On a
 * VM whose host takes freed memory back, the `cache` figure depends on how recently the previous
 * write freed its pages (see README, "Why the script pauses"), so it is shown, not compared.
 * A measurement, not a test.
 */
import { fork } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { closeSync, fsyncSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { FileAppender, UploadFlusher } from '../lib/storage/fs/file-appender';

const MiB = 1024 * 1024;
const MODES = ['receive', 'direct', 'cache'] as const;
type Mode = (typeof MODES)[number];

function flag(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  return index === -1 ? fallback : Number(process.argv[index + 1]);
}

/** The server side: answers each PUT once its body is hashed and, by mode, stored and fsynced. */
function serve(mode: Mode): void {
  const dir = mkdtempSync(join(os.tmpdir(), 'oci-appender-'));
  const server = http.createServer((request, response) => {
    const hash = createHash('sha256');
    request.on('data', (chunk: Buffer) => hash.update(chunk));
    const done = async () => {
      if (mode === 'receive') {
        request.resume();
        await new Promise((resolve) => request.once('end', resolve));
        return;
      }
      const path = join(dir, 'data');
      writeFileSync(path, '');
      const appender = await FileAppender.open(path, 0, new UploadFlusher(path), mode === 'direct');
      try {
        await pipeline(request, appender);
      } finally {
        await appender.close();
      }
      const fd = openSync(path, 'r');
      fsyncSync(fd);
      closeSync(fd);
      rmSync(path);
    };
    done().then(
      () => response.end(hash.digest('hex')),
      (error: Error) => response.writeHead(500).end(error.message),
    );
  });
  server.listen(0, '127.0.0.1', () => process.send!((server.address() as AddressInfo).port));
  process.once('disconnect', () => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
}

function put(port: number, agent: http.Agent, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const request = http.request({ host: '127.0.0.1', port, method: 'PUT', agent, headers: { 'Content-Length': data.length } }, (response) => {
      response.resume();
      response.once('end', () => (response.statusCode === 200 ? resolve() : reject(new Error(`status ${response.statusCode}`))));
    });
    request.once('error', reject);
    for (let offset = 0; offset < data.length; offset += MiB) request.write(data.subarray(offset, offset + MiB));
    request.end();
  });
}

async function main(): Promise<void> {
  const size = flag('size-mib', 1024) * MiB;
  const rounds = flag('rounds', 3);
  const data = randomFillSync(Buffer.allocUnsafe(size));
  for (const mode of MODES) {
    const child = fork(__filename, ['--serve', mode]);
    const port = await new Promise<number>((resolve) => child.once('message', (message) => resolve(Number(message))));
    const agent = new http.Agent({ keepAlive: true });
    const figures: string[] = [];
    for (let round = 0; round < rounds; round++) {
      const started = process.hrtime.bigint();
      await put(port, agent, data);
      figures.push((size / 1e6 / (Number(process.hrtime.bigint() - started) / 1e9)).toFixed(0));
    }
    agent.destroy();
    child.disconnect();
    console.log(`${mode.padEnd(8)} ${figures.join(' ')} MB/s (${size / MiB} MiB PUTs)`);
  }
}

const serveIndex = process.argv.indexOf('--serve');
if (serveIndex !== -1) serve(process.argv[serveIndex + 1] as Mode);
else
  main().catch((error: Error) => {
    console.error(error);
    process.exit(1);
  });
