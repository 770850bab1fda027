/**
 * `npm run bench`: our example server against the reference registry (CNCF distribution,
 * Debian package `docker-registry`), side by side in one run with one client.
 *
 *   npm run bench                           # the full run (a few minutes)
 *   npm run bench -- --quick                # small sizes, one round (under a minute)
 *   npm run bench -- --help                 # every flag
 *   npm run bench -- --workloads mirror     # pull-through: cold and warm pull through a mirror of the upstream, and direct
 *
 * Each workload runs against both servers in turn, alternating which goes first, for several
 * rounds; the table shows medians and the ratio ours/reference. These are measurements, never
 * test assertions.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { once } from 'node:events';
import { closeSync, constants, existsSync, fsyncSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import http from 'node:http';
import { connect, createServer, type AddressInfo } from 'node:net';
import os from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DIRECT_BLOCK } from '../lib/storage/fs/aligned-blocks';

const MiB = 1 << 20;
const MB = 1e6;

interface Flags {
  sizeMiB: number;
  chunkMiB: number;
  rounds: number;
  smallCount: number;
  smallSize: number;
  concurrency: number[];
  heads: number;
  headConcurrency: number;
  scalingMiB: number[];
  workloads: Set<string>;
  json?: string;
  reference: boolean;
  serverNodeArgs: string[];
  settleSeconds: number;
  idleSeconds: number;
  sessionLevels: number[];
  sessionPosts: number;
  sessionRepositories: number;
  descriptors: number;
  indexChildren: number;
  loadClients: number;
  loadBigUploads: number;
}

const ALL_WORKLOADS = ['limits', 'put', 'stream', 'chunks', 'get', 'range', 'fresh-get', 'small', 'head', 'load', 'scaling', 'mirror', 'sessions', 'manifests'];

const HELP = `usage: npm run bench -- [flags]
  --quick                 small preset: --size 128 --rounds 1 --small 300 --heads 2000 --scaling 1,16,128 --settle 0
                          --sessions 0,1000,10000 --session-posts 200 --descriptors 2500 --index-children 2000
                          --load-clients 50 --load-big 4
  --size MIB              big blob for put/stream/chunks/get/range/mirror (default 1024)
  --chunk MIB             PATCH chunk size for "chunks" (default 8)
  --rounds N              rounds per workload (default 3)
  --small N               small blobs per concurrency level per round (default 2000)
  --small-size BYTES      size of each small blob (default 4096)
  --concurrency A,B,..    concurrency levels for small uploads (default 1,8,32)
  --heads N               HEAD requests for the router-overhead figure (default 10000)
  --head-concurrency N    (default 8)
  --scaling A,B,..        monolithic PUT sizes in MiB for time per byte and memory (default 1,16,256,1024,4096)
  --workloads a,b,..      subset of ${ALL_WORKLOADS.join(',')} (default all)
  --json FILE             also write the results as JSON
  --no-reference          run only our server
  --server-node-args A,B  extra node flags for our server, e.g. --cpu-prof,--cpu-prof-dir=/tmp/prof
  --settle SECONDS        quiet time before each timed write of 256 MiB or more (default 6, --quick 0); see README
  --idle SECONDS          after the last workload, how long the servers stay idle before their memory is read again (default 30, --quick 5)
  --sessions A,B,..       open sessions at which "sessions" times POSTs and reads RSS (default 0,10000,100000)
  --session-posts N       timed POSTs at each of those levels (default 1000)
  --session-repos N       repositories the sessions are spread over (default 200)
  --descriptors N         layer descriptors, all one blob, in the "manifests" image manifest (default 25000)
  --index-children N      distinct child manifests in the "manifests" index (default 20000)
  --load-clients N        clients pushing and pulling a small image at once in "load" (default 200)
  --load-big N            clients pushing 64 MiB at the same time in "load" (default 20)`;

function parseFlags(argv: string[]): Flags {
  const flags: Flags = {
    sizeMiB: 1024,
    chunkMiB: 8,
    rounds: 3,
    smallCount: 2000,
    smallSize: 4096,
    concurrency: [1, 8, 32],
    heads: 10000,
    headConcurrency: 8,
    scalingMiB: [1, 16, 256, 1024, 4096],
    workloads: new Set(ALL_WORKLOADS),
    reference: true,
    serverNodeArgs: [],
    settleSeconds: 6,
    idleSeconds: 30,
    sessionLevels: [0, 10_000, 100_000],
    sessionPosts: 1000,
    sessionRepositories: 200,
    descriptors: 25_000,
    indexChildren: 20_000,
    loadClients: 200,
    loadBigUploads: 20,
  };
  if (argv.includes('--quick')) {
    Object.assign(flags, {
      sizeMiB: 128,
      rounds: 1,
      smallCount: 300,
      heads: 2000,
      scalingMiB: [1, 16, 128],
      settleSeconds: 0,
      idleSeconds: 5,
      sessionLevels: [0, 1000, 10_000],
      sessionPosts: 200,
      descriptors: 2500,
      indexChildren: 2000,
      loadClients: 50,
      loadBigUploads: 4,
    });
  }
  const numbers = (text: string) => text.split(',').map(Number);
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      const next = argv[++i];
      if (next === undefined) throw new Error(`${flag} needs a value`);
      return next;
    };
    switch (flag) {
      case '--quick': break;
      case '--size': flags.sizeMiB = Number(value()); break;
      case '--chunk': flags.chunkMiB = Number(value()); break;
      case '--rounds': flags.rounds = Number(value()); break;
      case '--small': flags.smallCount = Number(value()); break;
      case '--small-size': flags.smallSize = Number(value()); break;
      case '--concurrency': flags.concurrency = numbers(value()); break;
      case '--heads': flags.heads = Number(value()); break;
      case '--head-concurrency': flags.headConcurrency = Number(value()); break;
      case '--scaling': flags.scalingMiB = numbers(value()); break;
      case '--workloads': flags.workloads = new Set(value().split(',')); break;
      case '--json': flags.json = resolve(value()); break;
      case '--no-reference': flags.reference = false; break;
      case '--server-node-args': flags.serverNodeArgs = value().split(','); break;
      case '--settle': flags.settleSeconds = Number(value()); break;
      case '--idle': flags.idleSeconds = Number(value()); break;
      case '--sessions': flags.sessionLevels = numbers(value()); break;
      case '--session-posts': flags.sessionPosts = Number(value()); break;
      case '--session-repos': flags.sessionRepositories = Number(value()); break;
      case '--descriptors': flags.descriptors = Number(value()); break;
      case '--index-children': flags.indexChildren = Number(value()); break;
      case '--load-clients': flags.loadClients = Number(value()); break;
      case '--load-big': flags.loadBigUploads = Number(value()); break;
      case '--help': console.log(HELP); process.exit(0);
      default: throw new Error(`unknown flag ${flag}\n${HELP}`);
    }
  }
  for (const name of flags.workloads) if (!ALL_WORKLOADS.includes(name)) throw new Error(`unknown workload ${name}`);
  return flags;
}

// ---------------------------------------------------------------------------------------------
// Servers

interface Server {
  name: 'ours' | 'reference';
  base: string;
  pid: number;
  process: ChildProcess;
  /** Resident memory right after start and a first request, in KiB. */
  startKiB: number;
}

async function freePort(): Promise<number> {
  const probe = createServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const port = (probe.address() as AddressInfo).port;
  probe.close();
  return port;
}

/** Waits until `url` answers 200 to `method`; fails when `child` exits first, or after about 10 s. */
async function waitForServer(url: string, child: ChildProcess, what: string, method = 'GET'): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    if (child.exitCode !== null) throw new Error(`${what} exited with code ${child.exitCode}`);
    try {
      const response = await fetch(url, { method });
      if (response.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((done) => setTimeout(done, 100));
  }
  throw new Error(`${what} did not answer on ${url}`);
}

/** Starts our example server with its data in `dir/<data>` and `env` added to its environment. */
async function startOurs(dir: string, nodeArgs: string[], data = 'ours', env: Record<string, string> = {}): Promise<Server> {
  const port = await freePort();
  const script = resolve(__dirname, '../examples/server.js');
  const child = spawn(process.execPath, [...nodeArgs, script], {
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', DATA_DIR: join(dir, data), ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  reportEarlyExit(child, 'our example server');
  const base = `http://127.0.0.1:${port}`;
  await waitForServer(`${base}/v2/`, child, 'our example server');
  return { name: 'ours', base, pid: child.pid!, process: child, startKiB: statusKiB(child.pid!, 'VmRSS') };
}

async function startReference(dir: string): Promise<Server | undefined> {
  const binary = (process.env.PATH ?? '')
    .split(delimiter)
    .map((dir) => join(dir, 'docker-registry'))
    .find((path) => existsSync(path));
  if (!binary) {
    console.log('docker-registry is not installed, so only our server runs. Install the reference with:\n  apt-get install -y docker-registry\n');
    return undefined;
  }
  const port = await freePort();
  const config = join(dir, 'reference.yml');
  writeFileSync(
    config,
    [
      'version: 0.1',
      'log:',
      '  level: warn',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${join(dir, 'reference')}`,
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: 127.0.0.1:${port}`,
      '',
    ].join('\n'),
  );
  const logFile = join(dir, 'reference.log');
  const child = spawn(binary, ['serve', config], { stdio: ['ignore', 'ignore', openSync(logFile, 'w')] });
  reportEarlyExit(child, 'docker-registry', logFile);
  const base = `http://127.0.0.1:${port}`;
  await waitForServer(`${base}/v2/`, child, 'docker-registry');
  return { name: 'reference', base, pid: child.pid!, process: child, startKiB: statusKiB(child.pid!, 'VmRSS') };
}

/**
 * Debian's nginx serving one file with `sendfile on` (one process, no logging): the machine's limit
 * for a GET over loopback HTTP, for the same client and bytes. Undefined when nginx is not installed.
 */
async function startNginx(dir: string, file: string): Promise<{ base: string; process: ChildProcess } | undefined> {
  const binary = ['/usr/sbin/nginx', ...(process.env.PATH ?? '').split(delimiter).map((path) => join(path, 'nginx'))].find((path) => existsSync(path));
  if (!binary) {
    console.log('nginx is not installed, so the GET limit row is missing. Install it with:\n  apt-get install -y nginx\n');
    return undefined;
  }
  const port = await freePort();
  const prefix = join(dir, 'nginx');
  mkdirSync(prefix, { recursive: true });
  const config = join(prefix, 'nginx.conf');
  writeFileSync(
    config,
    [
      'daemon off;',
      // One process that never changes user, so it reads the benchmark's private folder.
      'master_process off;',
      'worker_processes 1;',
      `pid ${join(prefix, 'nginx.pid')};`,
      `error_log ${join(prefix, 'error.log')} warn;`,
      'events { worker_connections 64; }',
      'http {',
      '  access_log off;',
      '  sendfile on;',
      '  tcp_nopush on;',
      `  client_body_temp_path ${prefix}; proxy_temp_path ${prefix}; fastcgi_temp_path ${prefix}; uwsgi_temp_path ${prefix}; scgi_temp_path ${prefix};`,
      `  server { listen 127.0.0.1:${port}; location = /blob { alias ${file}; default_type application/octet-stream; } }`,
      '}',
      '',
    ].join('\n'),
  );
  const child = spawn(binary, ['-p', prefix, '-c', config], { stdio: ['ignore', 'ignore', 'inherit'] });
  reportEarlyExit(child, 'nginx', join(prefix, 'error.log'));
  const base = `http://127.0.0.1:${port}`;
  await waitForServer(`${base}/blob`, child, 'nginx', 'HEAD');
  return { base, process: child };
}

/**
 * Says so when a server exits before the benchmark stops it (which would otherwise show only as
 * a failed request), with the end of its log when it has one.
 */
function reportEarlyExit(child: ChildProcess, name: string, logFile?: string): void {
  child.once('exit', (code, signal) => {
    if (child.killed) return;
    console.error(`${name} exited during the run (${signal ?? `exit code ${code}`})`);
    if (logFile && existsSync(logFile)) console.error(readFileSync(logFile, 'utf8').split('\n').slice(-30).join('\n'));
  });
}

async function stopServer(server: Server): Promise<void> {
  if (server.process.exitCode !== null) return;
  server.process.kill('SIGTERM');
  await once(server.process, 'exit');
}

/** The process's CPU time so far, in seconds, from /proc. */
function processCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in USER_HZ (100)
}

function statusKiB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) : 0;
}

/**
 * Watches a server's resident memory while a workload runs: takes the idle figure just before
 * (as the shared rss-watch.sh does), resets the high-water mark (clear_refs), and also samples
 * VmRSS in case the reset is not permitted.
 */
class MemoryWatch {
  private readonly idleKiB: number;
  private peakKiB: number;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly pid: number) {
    try {
      writeFileSync(`/proc/${pid}/clear_refs`, '5');
    } catch {
      // without permission the sampled peak still counts
    }
    this.idleKiB = statusKiB(pid, 'VmRSS');
    this.peakKiB = this.idleKiB;
    this.timer = setInterval(() => (this.peakKiB = Math.max(this.peakKiB, statusKiB(pid, 'VmRSS'))), 20);
  }

  /** Peak resident memory above the idle figure, in MiB. */
  stop(): number {
    clearInterval(this.timer);
    return (Math.max(this.peakKiB, statusKiB(this.pid, 'VmHWM')) - this.idleKiB) / 1024;
  }
}

// ---------------------------------------------------------------------------------------------
// The client: node:http with keep-alive, data generated and hashed once.

// Node's server closes a connection idle for 5 s (its keepAliveTimeout); dropping idle sockets
// after 4 s keeps a request from going out on one just as the server closes it, which the pauses
// between large writes would otherwise make likely.
const agent = new http.Agent({ keepAlive: true, maxSockets: 256, timeout: 4000 });

/** A connection per request, as skopeo makes them (it sends `Connection: close` on every request). */
const closingAgent = new http.Agent({ keepAlive: false, maxSockets: 256 });

/** A request body: a list of buffers written in order with back-pressure. */
type Body = Buffer[];

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  bytes: number;
}

function request(
  base: string,
  method: string,
  path: string,
  headers: http.OutgoingHttpHeaders = {},
  body?: Body,
  expectBody?: (chunk: Buffer, offset: number) => void,
  via: http.Agent = agent,
): Promise<Reply> {
  return new Promise((resolvePromise, reject) => {
    const req = http.request(new URL(path, base), { method, headers, agent: via });
    req.on('error', reject);
    req.on('response', (res) => {
      let bytes = 0;
      const errorText: Buffer[] = [];
      res.on('data', (chunk: Buffer) => {
        if (res.statusCode! >= 400) errorText.push(chunk);
        else expectBody?.(chunk, bytes);
        bytes += chunk.length;
      });
      res.on('error', reject);
      res.on('end', () => {
        // A HEAD's status is its answer (404: no such blob); any other request failed.
        if (res.statusCode! >= 400 && method !== 'HEAD') {
          reject(new Error(`${method} ${path} → ${res.statusCode} ${Buffer.concat(errorText).toString('utf8').slice(0, 300)}`));
        } else {
          resolvePromise({ status: res.statusCode!, headers: res.headers, bytes });
        }
      });
    });
    void (async () => {
      try {
        for (const piece of body ?? []) {
          if (!req.write(piece)) await once(req, 'drain');
        }
        req.end();
      } catch (error) {
        req.destroy(error as Error);
      }
    })();
  });
}

function expectStatus(reply: Reply, status: number, what: string): Reply {
  if (reply.status !== status) throw new Error(`${what}: expected ${status}, got ${reply.status}`);
  return reply;
}

/** The next request path from a Location header (absolute URL or absolute path), with extra query parameters. */
function follow(base: string, location: string | undefined, params: Record<string, string> = {}): string {
  if (!location) throw new Error('no Location header');
  const url = new URL(location, base);
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  return url.pathname + url.search;
}

/** A blob of `size` bytes made of the random data, repeated when larger; sliced for writing. */
class BlobSource {
  private static readonly digests = new Map<string, string>();

  /** A blob of `size` bytes whose byte `i` is the data's byte `(i + shift) % data.length`. */
  constructor(
    private readonly data: Buffer,
    readonly size: number,
    private readonly shift = 0,
  ) {}

  /** The bytes from `start` to `end` (exclusive) as buffers of at most `piece` bytes. */
  pieces(start = 0, end = this.size, piece = 4 * MiB): Buffer[] {
    const list: Buffer[] = [];
    for (let offset = start; offset < end; ) {
      const at = (offset + this.shift) % this.data.length;
      const length = Math.min(piece, end - offset, this.data.length - at);
      list.push(this.data.subarray(at, at + length));
      offset += length;
    }
    return list;
  }

  byteAt(offset: number): Buffer {
    const at = (offset + this.shift) % this.data.length;
    return this.data.subarray(at, at + 1);
  }

  /** Checks a response chunk against the bytes at `offset` (memcmp, far cheaper than hashing). */
  verify(chunk: Buffer, offset: number): void {
    let checked = 0;
    while (checked < chunk.length) {
      const at = (offset + checked + this.shift) % this.data.length;
      const length = Math.min(chunk.length - checked, this.data.length - at);
      if (!chunk.subarray(checked, checked + length).equals(this.data.subarray(at, at + length))) {
        throw new Error(`response bytes differ from the blob at offset ${offset + checked}`);
      }
      checked += length;
    }
  }

  get digest(): string {
    const key = `${this.size}+${this.shift}`;
    let digest = BlobSource.digests.get(key);
    if (!digest) {
      const hash = createHash('sha256');
      for (const piece of this.pieces(0, this.size, 64 * MiB)) hash.update(piece);
      digest = `sha256:${hash.digest('hex')}`;
      BlobSource.digests.set(key, digest);
    }
    return digest;
  }
}

async function startSession(base: string, repository: string): Promise<string> {
  const reply = expectStatus(await request(base, 'POST', `/v2/${repository}/blobs/uploads/`, { 'Content-Length': 0 }), 202, 'POST upload');
  return follow(base, reply.headers.location);
}

async function uploadMonolithic(base: string, repository: string, blob: BlobSource): Promise<void> {
  const session = await startSession(base, repository);
  const put = follow(base, session, { digest: blob.digest });
  const headers = { 'Content-Type': 'application/octet-stream', 'Content-Length': blob.size };
  const reply = await request(base, 'PUT', put, headers, blob.pieces());
  expectStatus(reply, 201, 'PUT monolithic');
  if (reply.headers['docker-content-digest'] !== blob.digest) throw new Error('PUT: wrong Docker-Content-Digest');
}

async function uploadStreamed(base: string, repository: string, blob: BlobSource): Promise<void> {
  const session = await startSession(base, repository);
  const headers = { 'Content-Type': 'application/octet-stream', 'Transfer-Encoding': 'chunked' };
  const patched = expectStatus(await request(base, 'PATCH', session, headers, blob.pieces()), 202, 'PATCH streamed');
  const put = follow(base, patched.headers.location, { digest: blob.digest });
  expectStatus(await request(base, 'PUT', put, { 'Content-Length': 0 }), 201, 'PUT after streamed PATCH');
}

async function uploadChunked(base: string, repository: string, blob: BlobSource, chunkSize: number): Promise<void> {
  let location = await startSession(base, repository);
  for (let start = 0; start < blob.size; start += chunkSize) {
    const end = Math.min(start + chunkSize, blob.size);
    const headers = {
      'Content-Type': 'application/octet-stream',
      'Content-Range': `${start}-${end - 1}`,
      'Content-Length': end - start,
    };
    const reply = expectStatus(await request(base, 'PATCH', location, headers, blob.pieces(start, end)), 202, 'PATCH chunk');
    if (reply.headers.range !== `0-${end - 1}`) throw new Error(`PATCH chunk: Range ${reply.headers.range}, expected 0-${end - 1}`);
    location = follow(base, reply.headers.location);
  }
  expectStatus(await request(base, 'PUT', follow(base, location, { digest: blob.digest }), { 'Content-Length': 0 }), 201, 'PUT after chunks');
}

/** One blob pushed the way skopeo 1.9 pushes a layer: HEAD (404), POST, one chunked PATCH, PUT `?digest=`, each on a connection of its own. */
async function uploadAsSkopeo(base: string, repository: string, blob: { bytes: Buffer; digest: string }): Promise<void> {
  const close = { Connection: 'close' };
  expectStatus(await request(base, 'HEAD', `/v2/${repository}/blobs/${blob.digest}`, close, undefined, undefined, closingAgent), 404, 'HEAD as skopeo');
  const started = expectStatus(await request(base, 'POST', `/v2/${repository}/blobs/uploads/`, { ...close, 'Content-Length': 0 }, undefined, undefined, closingAgent), 202, 'POST as skopeo');
  const patchHeaders = { ...close, 'Content-Type': 'application/octet-stream', 'Transfer-Encoding': 'chunked' };
  const patched = expectStatus(await request(base, 'PATCH', follow(base, started.headers.location), patchHeaders, [blob.bytes], undefined, closingAgent), 202, 'PATCH as skopeo');
  const put = follow(base, patched.headers.location, { digest: blob.digest });
  expectStatus(await request(base, 'PUT', put, { ...close, 'Content-Length': 0 }, undefined, undefined, closingAgent), 201, 'PUT as skopeo');
}

/** GETs a blob, whole or a range; with `verify`, compares every byte (kept out of timed runs, as it costs the client CPU). */
async function download(base: string, repository: string, blob: BlobSource, range?: { start: number; end: number }, verify = false): Promise<number> {
  const headers: Record<string, string> = range ? { Range: `bytes=${range.start}-${range.end - 1}` } : {};
  const path = `/v2/${repository}/blobs/${blob.digest}`;
  const first = range?.start ?? 0;
  const reply = verify
    ? await request(base, 'GET', path, headers, undefined, (chunk, offset) => blob.verify(chunk, first + offset))
    : await countingGet(base, path, headers);
  const expected = range ? range.end - range.start : blob.size;
  expectStatus(reply, range ? 206 : 200, 'GET blob');
  if (reply.bytes !== expected) throw new Error(`GET: ${reply.bytes} bytes, expected ${expected}`);
  return reply.bytes;
}

/**
 * A GET for timed downloads that counts the body's bytes as they land in one reused 1 MiB buffer.
 * node:http allocates a buffer for every 64 KiB read and parses each: at about 1.5 GB/s that took
 * the client most of a core, so the client, not the servers, set the GET figure. This handles only
 * what both registries send for a blob: a status line, headers with Content-Length, that many bytes.
 */
function countingGet(base: string, path: string, headers: Record<string, string>): Promise<Reply> {
  const url = new URL(base);
  return new Promise((resolvePromise, reject) => {
    let head = '';
    let reply: Reply | undefined;
    let length = 0;
    const socket = connect({
      host: url.hostname,
      port: Number(url.port),
      onread: {
        buffer: Buffer.allocUnsafe(MiB),
        callback: (count: number, buffer: Uint8Array) => {
          if (reply) {
            reply.bytes += count;
          } else {
            head += Buffer.from(buffer.buffer, buffer.byteOffset, count).toString('latin1');
            const end = head.indexOf('\r\n\r\n');
            if (end < 0) return true;
            const lines = head.slice(0, end).split('\r\n');
            const parsed: http.IncomingHttpHeaders = {};
            for (const line of lines.slice(1)) {
              const colon = line.indexOf(':');
              parsed[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
            }
            reply = { status: Number(lines[0].split(' ')[1]), headers: parsed, bytes: head.length - end - 4 };
            length = Number(parsed['content-length']);
            if (!Number.isSafeInteger(length)) reject(new Error(`GET ${path}: no Content-Length in the response`));
          }
          if (reply.bytes >= length) {
            socket.destroy();
            resolvePromise(reply);
          }
          return true;
        },
      },
    });
    socket.on('connect', () => {
      const lines = [`GET ${path} HTTP/1.1`, `Host: ${url.host}`, 'Connection: close', ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`)];
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    });
    socket.on('error', reject);
    socket.on('close', () => reject(new Error(`GET ${path}: the connection closed after ${reply?.bytes ?? 0} body bytes`)));
  });
}

// ---------------------------------------------------------------------------------------------
// Measurements

interface Sample {
  value: number;
  /** Client CPU time as a share of one core during the sample. */
  clientCpu: number;
  /** Server CPU time as a share of one core during the sample. */
  serverCpu: number;
  memoryMiB?: number;
  extra?: Record<string, number>;
}

/** Runs `work` against `server`, timing it and recording client and server CPU. */
async function measure(
  server: Server,
  work: () => Promise<void>,
  value: (seconds: number) => number,
  watchMemory = false,
): Promise<Sample> {
  const watch = watchMemory ? new MemoryWatch(server.pid) : undefined;
  const serverCpuBefore = processCpuSeconds(server.pid);
  const clientBefore = process.cpuUsage();
  const started = process.hrtime.bigint();
  try {
    await work();
  } catch (error) {
    watch?.stop();
    throw error;
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const client = process.cpuUsage(clientBefore);
  return {
    value: value(seconds),
    clientCpu: (client.user + client.system) / 1e6 / seconds,
    serverCpu: (processCpuSeconds(server.pid) - serverCpuBefore) / seconds,
    memoryMiB: watch?.stop(),
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

interface Row {
  workload: string;
  unit: string;
  /** Whether a larger value is better (throughput) or smaller (latency, memory). */
  higherIsBetter: boolean;
  samples: Partial<Record<Server['name'], Sample[]>>;
  limit?: number;
}

const rows: Row[] = [];

function row(workload: string, unit: string, higherIsBetter = true): Row {
  let found = rows.find((candidate) => candidate.workload === workload);
  if (!found) {
    found = { workload, unit, higherIsBetter, samples: {} };
    rows.push(found);
  }
  return found;
}

function record(workload: string, unit: string, server: Server, sample: Sample, higherIsBetter = true): void {
  const target = row(workload, unit, higherIsBetter);
  (target.samples[server.name] ??= []).push(sample);
}

function summary(target: Row) {
  const pick = (name: Server['name']) => {
    const samples = target.samples[name];
    if (!samples?.length) return undefined;
    const memory = samples.map((s) => s.memoryMiB).filter((m): m is number => m !== undefined);
    return {
      median: median(samples.map((s) => s.value)),
      values: samples.map((s) => s.value),
      clientCpu: median(samples.map((s) => s.clientCpu)),
      serverCpu: median(samples.map((s) => s.serverCpu)),
      peakMemoryMiB: memory.length ? Math.max(...memory) : undefined,
    };
  };
  const ours = pick('ours');
  const reference = pick('reference');
  // The median of each round's ratio: the two samples of a round ran back to back, so a change in
  // the machine's load between rounds cancels out. None against a reference figure of zero (a
  // memory peak below what /proc resolves).
  const paired = ours && reference ? ours.values.map((value, round) => value / reference.values[round]).filter(Number.isFinite) : [];
  const ratio = paired.length ? median(paired) : undefined;
  return { workload: target.workload, unit: target.unit, higherIsBetter: target.higherIsBetter, ours, reference, ratio, limit: target.limit };
}

function format(value: number | undefined, digits = 1): string {
  if (value === undefined || !Number.isFinite(value)) return '-';
  if (Math.abs(value) >= 1000) return value.toFixed(0);
  return value.toFixed(digits);
}

function printTable(): void {
  const header = ['workload', 'unit', 'ours', 'reference', 'ratio', 'limit', 'ours cpu', 'ref cpu', 'client cpu'];
  const lines = rows.map((target) => {
    const s = summary(target);
    return [
      s.workload,
      s.unit,
      format(s.ours?.median),
      format(s.reference?.median),
      s.ratio === undefined ? '-' : `${s.ratio.toFixed(2)}x`,
      format(s.limit),
      s.ours ? `${Math.round(s.ours.serverCpu * 100)}%` : '-',
      s.reference ? `${Math.round(s.reference.serverCpu * 100)}%` : '-',
      s.ours || s.reference ? `${Math.round(Math.max(s.ours?.clientCpu ?? 0, s.reference?.clientCpu ?? 0) * 100)}%` : '-',
    ];
  });
  const widths = header.map((name, column) => Math.max(name.length, ...lines.map((line) => line[column].length)));
  const render = (cells: string[]) => `| ${cells.map((cell, column) => (column < 2 ? cell.padEnd(widths[column]) : cell.padStart(widths[column]))).join(' | ')} |`;
  console.log(render(header));
  console.log(`|${widths.map((width, column) => `${'-'.repeat(width + 1)}${column < 2 ? '-' : ':'}`).join('|')}|`);
  for (const line of lines) console.log(render(line));
}

// ---------------------------------------------------------------------------------------------
// Workloads

/** Runs `fn` for each server, alternating which goes first by round. */
async function alternate(servers: Server[], round: number, fn: (server: Server) => Promise<void>): Promise<void> {
  const order = round % 2 === 0 ? servers : [...servers].reverse();
  for (const server of order) await fn(server);
}

/** The machine's sha256 speed over `data`, in MB/s: the hashing part of the uploads' limit. */
function measureHashLimit(data: Buffer): number {
  const started = process.hrtime.bigint();
  const hash = createHash('sha256');
  for (let offset = 0; offset < data.length; offset += MiB) hash.update(data.subarray(offset, offset + MiB));
  hash.digest();
  const rate = data.length / (Number(process.hrtime.bigint() - started) / 1e9) / MB;
  row('limit: node sha256, 1 MiB updates', 'MB/s').limit = rate;
  return rate;
}

/** Writes `data` to a new file in 1 MiB writes, then fsyncs it; records both speeds, in MB/s. */
function measureWriteLimit(data: Buffer, dir: string): void {
  const file = join(dir, 'limit-write');
  const started = process.hrtime.bigint();
  const fd = openSync(file, 'w');
  for (let offset = 0; offset < data.length; offset += MiB) writeSync(fd, data, offset, Math.min(MiB, data.length - offset));
  const writeSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  fsyncSync(fd);
  const syncSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  closeSync(fd);
  rmSync(file);
  writeLimits.write.push(data.length / writeSeconds / MB);
  writeLimits.sync.push(data.length / syncSeconds / MB);
  row('limit: file write, 1 MiB writes', 'MB/s').limit = median(writeLimits.write);
  row('limit: file write + fsync', 'MB/s').limit = median(writeLimits.sync);
}

/**
 * The same bytes written past the page cache the way `FileSystemStorage` writes an upload: copied
 * into one page-aligned block of {@link DIRECT_BLOCK} bytes (WebAssembly memory starts on a page),
 * written with `O_DIRECT`, then fsync. Skipped where the file system refuses direct writes.
 */
function measureDirectWriteLimit(data: Buffer, dir: string): void {
  const file = join(dir, 'limit-direct');
  const memory = (globalThis as { WebAssembly?: { Memory: new (descriptor: { initial: number }) => { buffer: ArrayBuffer } } }).WebAssembly;
  if (constants.O_DIRECT === undefined || !memory) return;
  const block = Buffer.from(new memory.Memory({ initial: DIRECT_BLOCK / 65536 }).buffer);
  const length = data.length - (data.length % DIRECT_BLOCK);
  let fd: number;
  try {
    fd = openSync(file, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_DIRECT, 0o644);
  } catch {
    return;
  }
  const started = process.hrtime.bigint();
  for (let offset = 0; offset < length; offset += DIRECT_BLOCK) {
    data.copy(block, 0, offset, offset + DIRECT_BLOCK);
    writeSync(fd, block, 0, DIRECT_BLOCK, offset);
  }
  fsyncSync(fd);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  closeSync(fd);
  rmSync(file);
  writeLimits.direct.push(length / seconds / MB);
  row(`limit: file write past the cache, ${DIRECT_BLOCK / MiB} MiB O_DIRECT + fsync`, 'MB/s').limit = median(writeLimits.direct);
}

/** Each round's plain write figures, in MB/s: without and with the fsync, and past the page cache. */
const writeLimits = { write: [] as number[], sync: [] as number[], direct: [] as number[] };

/**
 * When the latest large write ended. On a virtual machine whose balloon device reports free
 * memory to the host (virtio-balloon free page reporting), pages a deleted or replaced file
 * frees go back to the host within seconds, and writing into returned pages costs a host fault
 * each: in a side experiment a 1 GiB write + fsync took 0.9-1.1 s right after a 1 GiB delete
 * and 2.4-3.1 s eight seconds after it. A timed write that follows another by less than that would measure
 * how recently the other finished; {@link timedWrite} makes every one start after the same quiet time.
 */
let lastLargeWrite = 0;

/** Writes from this size on wait out the quiet time; a smaller one needs few pages, whatever their state. */
const LARGE_WRITE = 256 * MiB;

/** Runs a timed write of `bytes`; a large one after the quiet time, noting when it ended. */
async function timedWrite<T>(flags: Flags, bytes: number, write: () => Promise<T> | T): Promise<T> {
  if (bytes < LARGE_WRITE) return write();
  const wait = lastLargeWrite + flags.settleSeconds * 1000 - Date.now();
  if (wait > 0) await sleep(wait);
  try {
    return await write();
  } finally {
    lastLargeWrite = Date.now();
  }
}

/** Runs `task(index)` for every index below `count`, `concurrency` at a time. */
async function forEachConcurrently(count: number, concurrency: number, task: (index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}

/**
 * POST latency and resident memory as abandoned sessions pile up. First a warm-up opens and
 * cancels sessions (none stays open), so that the baseline is a server that has served such
 * requests: what it costs to serve them (compiled code, a heap sized for the traffic) is then not
 * counted as the cost of open sessions. At each level, sessions are opened (untimed, spread over
 * the repositories) until that many are open, then POSTs to those repositories are timed one at a
 * time, and the server's RSS is read against the baseline.
 */
async function sessionsWorkload(server: Server, flags: Flags): Promise<void> {
  const repositories = Array.from({ length: flags.sessionRepositories }, (_, index) => `bench/sessions-${index}`);
  await forEachConcurrently(flags.sessionPosts * 5, 4, async (index) => {
    const session = await startSession(server.base, repositories[index % repositories.length]);
    expectStatus(await request(server.base, 'DELETE', session), 204, 'DELETE upload');
  });
  const idleKiB = statusKiB(server.pid, 'VmRSS');
  let open = 0;
  for (const level of flags.sessionLevels) {
    const from = open;
    if (level > open) await forEachConcurrently(level - open, 4, (index) => startSession(server.base, repositories[(from + index) % repositories.length]).then(() => undefined));
    open = Math.max(open, level);
    const latencies: number[] = [];
    const sample = await measure(
      server,
      async () => {
        for (let index = 0; index < flags.sessionPosts; index++) {
          const started = process.hrtime.bigint();
          await startSession(server.base, repositories[index % repositories.length]);
          latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
        }
      },
      () => 0,
    );
    open += flags.sessionPosts;
    const label = `${level.toLocaleString('en-US')} open sessions`;
    record(`POST p50, ${label}`, 'ms', server, { ...sample, value: percentile(latencies, 50) }, false);
    record(`POST p99, ${label}`, 'ms', server, { ...sample, value: percentile(latencies, 99) }, false);
    record(`RSS above the warmed-up server, ${label}`, 'MiB', server, { ...sample, value: (statusKiB(server.pid, 'VmRSS') - idleKiB) / 1024 }, false);
  }
}

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

async function putManifest(base: string, repository: string, reference: string, mediaType: string, body: Buffer): Promise<void> {
  expectStatus(await request(base, 'PUT', `/v2/${repository}/manifests/${reference}`, { 'Content-Type': mediaType, 'Content-Length': body.length }, [body]), 201, 'PUT manifest');
}

/**
 * Manifest PUTs whose descriptor checks dominate: an image manifest listing one layer
 * `flags.descriptors` times, and an index of `flags.indexChildren` distinct child manifests
 * (pushed untimed first). Each is PUT under a new tag per round, so every PUT checks again.
 */
async function manifestsWorkload(servers: Server[], flags: Flags): Promise<void> {
  const repository = 'bench/manifests';
  const blob = (text: string) => {
    const bytes = Buffer.from(text);
    return { bytes, digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}` };
  };
  const config = blob('{"architecture":"amd64","os":"linux"}');
  const layer = blob('one layer, listed many times');
  const descriptorOf = (mediaType: string, item: { bytes: Buffer; digest: string }) => ({ mediaType, digest: item.digest, size: item.bytes.length });
  const image = (layers: number, annotations?: Record<string, string>) =>
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: descriptorOf('application/vnd.oci.image.config.v1+json', config),
        layers: Array.from({ length: layers }, () => descriptorOf('application/vnd.oci.image.layer.v1.tar', layer)),
        annotations,
      }),
    );
  const many = image(flags.descriptors);
  const children = Array.from({ length: flags.indexChildren }, (_, index) => blob(image(1, { child: String(index) }).toString()));
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: children.map((child) => descriptorOf(OCI_MANIFEST, child)) }));
  for (const server of servers) {
    for (const item of [config, layer]) {
      const session = await startSession(server.base, repository);
      const put = follow(server.base, session, { digest: item.digest });
      expectStatus(await request(server.base, 'PUT', put, { 'Content-Type': 'application/octet-stream', 'Content-Length': item.bytes.length }, [item.bytes]), 201, 'PUT blob');
    }
    await forEachConcurrently(children.length, 8, (child) => putManifest(server.base, repository, children[child].digest, OCI_MANIFEST, children[child].bytes));
  }
  for (let round = 0; round < flags.rounds; round++) {
    await alternate(servers, round, async (server) => {
      const ms = (seconds: number) => seconds * 1000;
      record(
        `manifest PUT, ${flags.descriptors.toLocaleString('en-US')} repeated layer descriptors`,
        'ms',
        server,
        await measure(server, () => putManifest(server.base, repository, `many-layers-${round}`, OCI_MANIFEST, many), ms),
        false,
      );
      record(
        `index PUT, ${flags.indexChildren.toLocaleString('en-US')} children`,
        'ms',
        server,
        await measure(server, () => putManifest(server.base, repository, `index-${round}`, OCI_INDEX, index), ms),
        false,
      );
    });
  }
}

/**
 * A registry under a team's load: `flags.loadClients` clients each push a small image (three
 * blobs of 4 KiB, 64 KiB and 1 MiB, HEAD first as clients do, then a manifest) and pull it back,
 * while `flags.loadBigUploads` clients each push a 64 MiB blob in one streamed PATCH, all at once.
 * Per-request latency over every request, the wall time, and the server's peak memory.
 */
async function loadWorkload(servers: Server[], data: Buffer, flags: Flags, round: number): Promise<void> {
  const sizes = [4096, 64 << 10, MiB];
  const made = (index: number) => {
    const blobs = sizes.map((size) => {
      const bytes = randomFillSync(Buffer.allocUnsafe(size));
      return { bytes, digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}` };
    });
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: blobs[0].digest, size: blobs[0].bytes.length },
        layers: blobs.slice(1).map((blob) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: blob.digest, size: blob.bytes.length })),
        annotations: { client: String(index) },
      }),
    );
    return { blobs, manifest };
  };
  await alternate(servers, round, async (server) => {
    // New bytes for every server and round, made before timing.
    const images = Array.from({ length: flags.loadClients }, (_, index) => made(index));
    const big = Array.from({ length: flags.loadBigUploads }, (_, index) => new BlobSource(data, 64 * MiB, 7919 * (1 + index + round * flags.loadBigUploads)));
    for (const blob of big) void blob.digest;
    const latencies: number[] = [];
    const timed = async (method: string, path: string, headers: http.OutgoingHttpHeaders, body: Body | undefined, status: number) => {
      const started = process.hrtime.bigint();
      const reply = await request(server.base, method, path, headers, body);
      latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
      return expectStatus(reply, status, `${method} under load`);
    };
    const pushAndPull = async (index: number) => {
      const repository = `bench/load-r${round}/client-${index}`;
      const { blobs, manifest } = images[index];
      for (const blob of blobs) {
        await timed('HEAD', `/v2/${repository}/blobs/${blob.digest}`, {}, undefined, 404);
        const session = await timed('POST', `/v2/${repository}/blobs/uploads/`, { 'Content-Length': 0 }, undefined, 202);
        const put = follow(server.base, session.headers.location, { digest: blob.digest });
        await timed('PUT', put, { 'Content-Type': 'application/octet-stream', 'Content-Length': blob.bytes.length }, [blob.bytes], 201);
      }
      await timed('PUT', `/v2/${repository}/manifests/latest`, { 'Content-Type': OCI_MANIFEST, 'Content-Length': manifest.length }, [manifest], 201);
      await timed('GET', `/v2/${repository}/manifests/latest`, { Accept: OCI_MANIFEST }, undefined, 200);
      for (const blob of blobs) await timed('GET', `/v2/${repository}/blobs/${blob.digest}`, {}, undefined, 200);
    };
    const pushBig = async (index: number) => {
      const repository = `bench/load-r${round}/big-${index}`;
      const session = await timed('POST', `/v2/${repository}/blobs/uploads/`, { 'Content-Length': 0 }, undefined, 202);
      const patched = await timed('PATCH', follow(server.base, session.headers.location), { 'Content-Type': 'application/octet-stream', 'Transfer-Encoding': 'chunked' }, big[index].pieces(), 202);
      await timed('PUT', follow(server.base, patched.headers.location, { digest: big[index].digest }), { 'Content-Length': 0 }, undefined, 201);
    };
    const sample = await timedWrite(flags, 64 * MiB * flags.loadBigUploads, () =>
      measure(
        server,
        async () => void (await Promise.all([...images.map((_, index) => pushAndPull(index)), ...big.map((_, index) => pushBig(index))])),
        (seconds) => seconds,
        true,
      ),
    );
    const title = `load: ${flags.loadClients} clients push+pull a small image, ${flags.loadBigUploads} push 64 MiB`;
    record(`${title}: wall time`, 's', server, sample, false);
    record(`  request p50`, 'ms', server, { ...sample, value: percentile(latencies, 50) }, false);
    record(`  request p99`, 'ms', server, { ...sample, value: percentile(latencies, 99) }, false);
    record(`  peak RSS above idle`, 'MiB', server, { ...sample, value: sample.memoryMiB! }, false);
  });
}

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  const dir = mkdtempSync(join(os.tmpdir(), 'oci-bench-'));
  const servers: Server[] = [];
  /** Our server as a pull-through mirror of the upstream (the reference when installed), for the mirror workload only. */
  let mirror: Server | undefined;
  /** Other processes the run started (nginx), stopped with the servers. */
  const helpers: ChildProcess[] = [];
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  process.once('SIGINT', () => {
    for (const server of [...servers, ...(mirror ? [mirror] : [])]) server.process.kill('SIGTERM');
    for (const helper of helpers) helper.kill('SIGTERM');
    cleanup();
    process.exit(130);
  });
  const startedAt = new Date();
  try {
    const bigSize = flags.sizeMiB * MiB;
    const scalingSizes = flags.workloads.has('scaling') ? flags.scalingMiB.map((m) => m * MiB) : [];
    const dataSize = Math.min(Math.max(bigSize, ...scalingSizes), 1024 * MiB);
    console.log(`generating ${dataSize / MiB} MiB of random data …`);
    const data = randomFillSync(Buffer.allocUnsafe(dataSize));
    const big = new BlobSource(data, bigSize);
    void big.digest; // hashed once, before any timing

    const limitData = data.subarray(0, Math.min(bigSize, data.length));
    const hashLimit = flags.workloads.has('limits') ? measureHashLimit(limitData) : undefined;

    servers.push(await startOurs(dir, flags.serverNodeArgs));
    if (flags.reference) {
      const reference = await startReference(dir);
      if (reference) servers.push(reference);
    }
    const mbps = (bytes: number) => (seconds: number) => bytes / seconds / MB;
    const upstream = servers.find((server) => server.name === 'reference') ?? servers[0];
    if (flags.workloads.has('mirror')) mirror = await startOurs(dir, flags.serverNodeArgs, 'mirror', { UPSTREAM_URL: upstream.base, UPSTREAM_PREFIX: 'mirror/' });

    const bigWorkloads: Array<[string, string, (server: Server) => Promise<void>]> = [
      ['put', `upload ${flags.sizeMiB} MiB: monolithic PUT`, (s) => uploadMonolithic(s.base, 'bench/put', big)],
      ['stream', `upload ${flags.sizeMiB} MiB: one streamed PATCH`, (s) => uploadStreamed(s.base, 'bench/stream', big)],
      ['chunks', `upload ${flags.sizeMiB} MiB: ${flags.chunkMiB} MiB PATCH chunks`, (s) => uploadChunked(s.base, 'bench/chunks', big, flags.chunkMiB * MiB)],
    ];
    const needBlob = ['get', 'range', 'head'].some((name) => flags.workloads.has(name));
    const range = { start: Math.floor(bigSize / 4), end: Math.floor((3 * bigSize) / 4) };
    for (const server of servers) {
      if (!needBlob) continue;
      await uploadMonolithic(server.base, 'bench/get', big);
      lastLargeWrite = Date.now();
      // Every byte checked once, untimed; the timed reads below only count them.
      await download(server.base, 'bench/get', big, undefined, true);
      await download(server.base, 'bench/get', big, range, true);
    }

    // The GET limit: the same bytes as a plain file, served by nginx with sendfile, read once untimed.
    let nginx: Awaited<ReturnType<typeof startNginx>>;
    const nginxRates: number[] = [];
    if (flags.workloads.has('get')) {
      const file = join(dir, 'nginx-blob');
      const fd = openSync(file, 'w');
      for (const piece of big.pieces()) writeSync(fd, piece);
      closeSync(fd);
      lastLargeWrite = Date.now();
      nginx = await startNginx(dir, file);
      if (nginx) await request(nginx.base, 'GET', '/blob', {}, undefined, (chunk, offset) => big.verify(chunk, offset));
    }
    if (nginx) helpers.push(nginx.process);

    for (let round = 0; round < flags.rounds; round++) {
      console.log(`round ${round + 1}/${flags.rounds} (load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')})`);
      // The machine's write speed in the same state as the uploads' (see settle), once a round.
      if (hashLimit !== undefined) {
        await timedWrite(flags, limitData.length, () => measureWriteLimit(limitData, dir));
        await timedWrite(flags, limitData.length, () => measureDirectWriteLimit(limitData, dir));
      }
      const uploadLimit = hashLimit === undefined ? undefined : Math.min(hashLimit, median(writeLimits.sync));
      for (const [name, title, work] of bigWorkloads) {
        if (!flags.workloads.has(name)) continue;
        await alternate(servers, round, async (server) => {
          const sample = await timedWrite(flags, bigSize, () => measure(server, () => work(server), mbps(bigSize), true));
          record(title, 'MB/s', server, sample);
          record(`peak RSS above idle during ${name}`, 'MiB', server, { ...sample, value: sample.memoryMiB! }, false);
        });
        row(title, 'MB/s').limit = uploadLimit;
      }
      if (flags.workloads.has('get')) {
        await alternate(servers, round, async (server) => {
          record(`GET ${flags.sizeMiB} MiB blob`, 'MB/s', server, await measure(server, async () => void (await download(server.base, 'bench/get', big)), mbps(bigSize)));
        });
        if (nginx) {
          const started = process.hrtime.bigint();
          const reply = await countingGet(nginx.base, '/blob', {});
          if (reply.bytes !== bigSize) throw new Error(`nginx GET: ${reply.bytes} bytes, expected ${bigSize}`);
          nginxRates.push(mbps(bigSize)(Number(process.hrtime.bigint() - started) / 1e9));
          const limit = median(nginxRates);
          row(`limit: nginx sendfile, GET of the same ${flags.sizeMiB} MiB file`, 'MB/s').limit = limit;
          row(`GET ${flags.sizeMiB} MiB blob`, 'MB/s').limit = limit;
        }
      }
      if (flags.workloads.has('range')) {
        await alternate(servers, round, async (server) => {
          record(`Range GET (middle half)`, 'MB/s', server, await measure(server, async () => void (await download(server.base, 'bench/get', big, range)), mbps(range.end - range.start)));
        });
      }
      if (flags.workloads.has('fresh-get')) {
        // A blob nobody has pulled yet: new bytes each round (the data read from another offset),
        // pushed untimed, then pulled once. Whatever the push left in the page cache counts here.
        const fresh = new BlobSource(data, bigSize, round + 1);
        void fresh.digest;
        await alternate(servers, round, async (server) => {
          await timedWrite(flags, bigSize, () => uploadMonolithic(server.base, 'bench/fresh', fresh));
          record(`first GET of a blob just pushed`, 'MB/s', server, await measure(server, async () => void (await download(server.base, 'bench/fresh', fresh)), mbps(bigSize)));
        });
      }
      if (flags.workloads.has('small')) {
        for (const concurrency of flags.concurrency) {
          // Distinct blobs for every server, round and level, generated and hashed before timing.
          const blobs = Array.from({ length: flags.smallCount }, () => {
            const bytes = randomFillSync(Buffer.allocUnsafe(flags.smallSize));
            return { bytes, digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}` };
          });
          await alternate(servers, round, async (server) => {
            const latencies: number[] = [];
            const repository = `bench/small-c${concurrency}-r${round}`;
            let next = 0;
            const worker = async () => {
              while (next < blobs.length) {
                const blob = blobs[next++];
                const started = process.hrtime.bigint();
                const session = await startSession(server.base, repository);
                const put = follow(server.base, session, { digest: blob.digest });
                const headers = { 'Content-Type': 'application/octet-stream', 'Content-Length': blob.bytes.length };
                expectStatus(await request(server.base, 'PUT', put, headers, [blob.bytes]), 201, 'PUT small');
                latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
              }
            };
            const sample = await measure(
              server,
              async () => void (await Promise.all(Array.from({ length: concurrency }, worker))),
              (seconds) => blobs.length / seconds,
            );
            record(`${flags.smallSize} B uploads, concurrency ${concurrency}`, 'uploads/s', server, sample);
            record(`  p50 latency, concurrency ${concurrency}`, 'ms', server, { ...sample, value: percentile(latencies, 50) }, false);
            record(`  p99 latency, concurrency ${concurrency}`, 'ms', server, { ...sample, value: percentile(latencies, 99) }, false);
          });
          // The same blobs again, in a new repository, pushed the way skopeo pushes a layer.
          await alternate(servers, round, async (server) => {
            const repository = `bench/small-skopeo-c${concurrency}-r${round}`;
            let next = 0;
            const worker = async () => {
              while (next < blobs.length) await uploadAsSkopeo(server.base, repository, blobs[next++]);
            };
            const sample = await measure(
              server,
              async () => void (await Promise.all(Array.from({ length: concurrency }, worker))),
              (seconds) => blobs.length / seconds,
            );
            record(`  as skopeo: HEAD, POST, PATCH, PUT, a connection each, concurrency ${concurrency}`, 'uploads/s', server, sample);
          });
        }
      }
      if (mirror) {
        // A blob no round has used, so that the first pull through the mirror is a cold one.
        const blob = new BlobSource(data, bigSize, 1000 + round);
        void blob.digest;
        const repository = `bench/mirror-r${round}`;
        await timedWrite(flags, bigSize, () => uploadMonolithic(upstream.base, repository, blob));
        const pull = (server: Server, name: string) => async () => void (await download(server.base, name, blob));
        record(`mirror: direct GET ${flags.sizeMiB} MiB from the upstream`, 'MB/s', upstream, await measure(upstream, pull(upstream, repository), mbps(bigSize)));
        const cold = await timedWrite(flags, bigSize, () => measure(mirror!, pull(mirror!, `mirror/${repository}`), mbps(bigSize), true));
        record(`mirror: cold GET ${flags.sizeMiB} MiB through our mirror`, 'MB/s', mirror, cold);
        record(`mirror: peak RSS above idle during the cold GET`, 'MiB', mirror, { ...cold, value: cold.memoryMiB! }, false);
        record(`mirror: warm GET ${flags.sizeMiB} MiB through our mirror`, 'MB/s', mirror, await measure(mirror, pull(mirror, `mirror/${repository}`), mbps(bigSize)));
        // Every byte checked once, outside the timing.
        await download(mirror.base, `mirror/${repository}`, blob, undefined, true);
      }
      if (flags.workloads.has('head')) {
        await alternate(servers, round, async (server) => {
          const path = `/v2/bench/get/blobs/${big.digest}`;
          let next = 0;
          const worker = async () => {
            while (next++ < flags.heads) expectStatus(await request(server.base, 'HEAD', path), 200, 'HEAD blob');
          };
          const sample = await measure(
            server,
            async () => void (await Promise.all(Array.from({ length: flags.headConcurrency }, worker))),
            (seconds) => flags.heads / seconds,
          );
          record(`HEAD blob, concurrency ${flags.headConcurrency}`, 'requests/s', server, sample);
        });
      }
      if (flags.workloads.has('load')) await loadWorkload(servers, data, flags, round);
    }

    if (flags.workloads.has('scaling')) {
      // Once per size: time per byte should stay flat, and memory too.
      for (const [index, sizeMiB] of flags.scalingMiB.entries()) {
        const blob = new BlobSource(data, sizeMiB * MiB);
        void blob.digest;
        await alternate(servers, index, async (server) => {
          const sample = await timedWrite(flags, blob.size, () =>
            measure(server, () => uploadMonolithic(server.base, 'bench/scaling', blob), (seconds) => (seconds * 1e9) / blob.size, true),
          );
          record(`PUT ${sizeMiB} MiB: time per byte`, 'ns/B', server, sample, false);
          record(`PUT ${sizeMiB} MiB: peak RSS above idle`, 'MiB', server, { ...sample, value: sample.memoryMiB! }, false);
        });
      }
    }

    if (flags.workloads.has('manifests')) await manifestsWorkload(servers, flags);
    // Last: the sessions it leaves open would weigh on every later workload.
    if (flags.workloads.has('sessions')) for (const server of servers) await sessionsWorkload(server, flags);

    console.log();
    printTable();
    const machine = {
      cpus: `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'unknown'}`,
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      node: process.version,
      loadAverage: os.loadavg(),
    };
    console.log(`\nmachine: ${machine.cpus}, ${machine.memoryGiB} GiB RAM, node ${machine.node}; load average at the end ${machine.loadAverage.map((l) => l.toFixed(2)).join(' ')}`);
    // Both runtimes give memory back some time after a load ends (V8's memory reducer, Go's
    // scavenger), so what each holds is read at the end and again after a quiet spell.
    const measured = [...servers, ...(mirror ? [mirror] : [])];
    const endKiB = measured.map((server) => statusKiB(server.pid, 'VmRSS'));
    if (flags.idleSeconds > 0) await sleep(flags.idleSeconds * 1000);
    const memory = measured.map((server, index) => ({
      server: server === mirror ? 'our mirror' : server.name,
      startMiB: server.startKiB / 1024,
      endMiB: endKiB[index] / 1024,
      idleMiB: statusKiB(server.pid, 'VmRSS') / 1024,
    }));
    for (const { server, startMiB, endMiB, idleMiB } of memory) {
      const idle = flags.idleSeconds > 0 ? `, ${idleMiB.toFixed(1)} MiB after ${flags.idleSeconds} s idle (${(idleMiB / startMiB).toFixed(2)}x)` : '';
      console.log(`${server}: resident memory ${startMiB.toFixed(1)} MiB after start, ${endMiB.toFixed(1)} MiB at the end (${(endMiB / startMiB).toFixed(2)}x)${idle}`);
    }
    console.log('ratio: median over rounds of ours/reference, each pair run back to back (for ms, MiB and ns/B rows lower is better)');
    console.log('cpu: share of one core during the workload (median); limit: the machine, same bytes, same run');
    if (flags.json) {
      const report = { startedAt: startedAt.toISOString(), finishedAt: new Date().toISOString(), argv: process.argv.slice(2), machine, memory, flags: { ...flags, workloads: [...flags.workloads] }, rows: rows.map(summary) };
      writeFileSync(flags.json, `${JSON.stringify(report, null, 2)}\n`);
      console.log(`JSON: ${flags.json}`);
    }
  } finally {
    for (const server of [...servers, ...(mirror ? [mirror] : [])]) await stopServer(server);
    for (const helper of helpers) if (helper.exitCode === null && helper.kill('SIGTERM')) await once(helper, 'exit');
    agent.destroy();
    closingAgent.destroy();
    cleanup();
  }
}

main().catch((error) => {
  console.error(error instanceof Error ? error.stack : error);
  process.exitCode = 1;
});
