// What a host app's body parsers and its clients' aborts can do to the process the registry runs in: nothing.
import http from 'node:http';
import { join } from 'node:path';
import type { HttpMethod } from '../lib/context';
import { startChild, type ChildServer } from './support/child-server';
import { request, sha256 } from './support/http';
import { makeImage, OCI_MANIFEST } from './support/oci';

const HOST_APP = join(__dirname, 'support', 'host-app.js');
/** The host app's `bodyIdleTimeout`: small, so waiting past it is quick. */
const IDLE = 100;
// Both Express generations, whose body parsers differ in how they mark a body as read.
const EXPRESS_VERSIONS = ['express', 'express4'];

interface Counters {
  uncaught: number;
  unhandled: number;
  errors: string[];
}

const children: ChildServer[] = [];
afterEach(async () => {
  for (const server of children.splice(0)) {
    server.child.kill('SIGKILL');
    await server.exited;
  }
});

async function startHost(env: Record<string, string>): Promise<ChildServer> {
  const server = await startChild(HOST_APP, { BODY_IDLE_TIMEOUT: String(IDLE), ...env });
  children.push(server);
  return server;
}

/** Waits until every timer the requests so far armed has fired, then: the host still serves, and nothing went unhandled. */
async function expectHostUnharmed(server: ChildServer): Promise<void> {
  const settled = await request(`${server.url}/settle`, { method: 'GET' });
  expect(settled.status).toBe(200);
  const counters = JSON.parse(settled.body.toString()) as Counters;
  expect(counters.errors).toEqual([]);
  expect(counters).toMatchObject({ uncaught: 0, unhandled: 0 });
  expect((await request(`${server.url}/v2/`, { method: 'GET' })).status).toBe(200);
  expect(server.child.exitCode).toBeNull();
}

function errorOf(res: { body: Buffer }): { code: string; detail: string } {
  return JSON.parse(res.body.toString()).errors[0];
}

interface MiddlewareCase {
  middleware: string;
  /** The Content-Type of the manifest PUT and of the blob PATCH: one the middleware reads. */
  manifestType: string;
  blobType: string;
  /** Whether the registry can use what the middleware left (exact bytes), or must refuse. */
  bodies: 'used' | 'refused';
}

const MIDDLEWARE: [string, MiddlewareCase][] = [
  ['express.json()', { middleware: 'json', manifestType: 'application/json', blobType: 'application/json', bodies: 'refused' }],
  [
    "express.json({ type: 'application/*+json' })",
    { middleware: 'json-plus', manifestType: OCI_MANIFEST, blobType: 'application/vnd.example.layer+json', bodies: 'refused' },
  ],
  ['express.raw()', { middleware: 'raw', manifestType: OCI_MANIFEST, blobType: 'application/octet-stream', bodies: 'used' }],
  ['express.raw({ type: () => true })', { middleware: 'raw-all', manifestType: OCI_MANIFEST, blobType: 'application/octet-stream', bodies: 'used' }],
  ['express.text()', { middleware: 'text', manifestType: 'text/plain', blobType: 'text/plain', bodies: 'refused' }],
];

describe.each(EXPRESS_VERSIONS)('a host app on %s with a body parser mounted before the registry router', (expressModule) => {
  it.each(MIDDLEWARE)('%s: a manifest PUT and a blob PATCH it reads are used byte for byte or refused with the fix named; the host outlives bodyIdleTimeout', async (_name, test) => {
    const server = await startHost({ MIDDLEWARE: test.middleware, EXPRESS: expressModule });
    const image = makeImage(`middleware-${test.middleware}`);
    for (const blob of [image.config, ...image.layers]) {
      const pushed = await request(`${server.url}/v2/h/app/blobs/uploads/?digest=${sha256(blob)}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/octet-stream' },
        body: Buffer.from(blob),
      });
      expect(pushed.status).toBe(201);
    }

    const put = await request(`${server.url}/v2/h/app/manifests/v1`, { method: 'PUT', headers: { 'Content-Type': test.manifestType }, body: image.manifest });
    const layer = Buffer.from(JSON.stringify({ a: 'layer that looks like JSON' }));
    const session = await request(`${server.url}/v2/h/app/blobs/uploads/`, { method: 'POST' });
    expect(session.status).toBe(202);
    const location = `${server.url}${session.headers.location}`;
    const patch = await request(location, { method: 'PATCH', headers: { 'Content-Type': test.blobType }, body: layer });

    if (test.bodies === 'used') {
      expect(put.status).toBe(201);
      expect(put.headers['docker-content-digest']).toBe(image.digest);
      const pulled = await request(`${server.url}/v2/h/app/manifests/v1`, { method: 'GET', headers: { Accept: OCI_MANIFEST } });
      expect(Buffer.compare(pulled.body, image.manifest)).toBe(0);
      expect(patch.status).toBe(202);
      expect(patch.headers.range).toBe(`0-${layer.length - 1}`);
      expect((await request(`${location}?digest=${sha256(layer)}`, { method: 'PUT' })).status).toBe(201);
      const blob = await request(`${server.url}/v2/h/app/blobs/${sha256(layer)}`, { method: 'GET' });
      expect(Buffer.compare(blob.body, layer)).toBe(0);
    } else {
      expect(put.status).toBe(400);
      expect(errorOf(put).code).toBe('MANIFEST_INVALID');
      expect(errorOf(put).detail).toMatch(/consumed by .* before the registry router.*mount the registry router before/);
      expect(patch.status).toBe(400);
      expect(errorOf(patch).code).toBe('BLOB_UPLOAD_INVALID');
      expect(errorOf(patch).detail).toMatch(/consumed by .* before the registry router.*mount the registry router before/);
    }
    await expectHostUnharmed(server);
  });
});

/** A request for each route × method of the router (upload routes on a real session), checked against each route's `Allow`. */
async function everyRouteAndMethod(baseUrl: string, session: string): Promise<[HttpMethod, string][]> {
  const digest = sha256('absent');
  const samples: [HttpMethod, string][] = [
    ['GET', '/v2/'],
    ['HEAD', '/v2/'],
    ['GET', '/v2/_catalog'],
    ['POST', '/v2/h/app/blobs/uploads/'],
    ['POST', `/v2/h/app/blobs/uploads/?digest=${digest}`],
    ['POST', `/v2/h/app/blobs/uploads/?mount=${digest}&from=h/other`],
    ...(['GET', 'HEAD', 'PATCH', 'DELETE'] as HttpMethod[]).map((method): [HttpMethod, string] => [method, session]),
    ['PUT', `${session}?digest=${digest}`],
    ...(['GET', 'HEAD', 'DELETE'] as HttpMethod[]).map((method): [HttpMethod, string] => [method, `/v2/h/app/blobs/${digest}`]),
    ...(['GET', 'HEAD', 'PUT', 'DELETE'] as HttpMethod[]).map((method): [HttpMethod, string] => [method, '/v2/h/app/manifests/v1']),
    ['PUT', `/v2/h/app/manifests/${digest}`],
    ['GET', '/v2/h/app/tags/list'],
    ['GET', `/v2/h/app/referrers/${digest}`],
  ];
  // Every method each route serves is among them. A route is known by its path up to the last
  // `/` and by the `Allow` of the 405 a method it does not serve gets.
  const paths = [...new Set(samples.map(([, sample]) => sample.split('?')[0]))];
  const routeOf = new Map<string, string>();
  for (const path of paths) {
    const refused = await request(`${baseUrl}${path}`, { method: 'OPTIONS' });
    routeOf.set(path, `${path.slice(0, path.lastIndexOf('/'))} ${String(refused.headers.allow)}`);
  }
  for (const route of new Set(routeOf.values())) {
    for (const method of route.split(' ').slice(1).join(' ').split(', ')) {
      const covered = samples.some(([sampleMethod, sample]) => sampleMethod === method && routeOf.get(sample.split('?')[0]) === route);
      expect(`${method} ${route} ${covered ? 'covered' : 'missing'}`).toBe(`${method} ${route} covered`);
    }
  }
  return samples;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Sends a request whose body is announced and (`whole`) sent or (otherwise) only begun, and
 * closes the connection while the host's `authorize` is deciding about it.
 */
async function abortDuringAuthorize(server: ChildServer, method: HttpMethod, path: string, whole: boolean): Promise<void> {
  const authorizing = server.nextLine(new RegExp(`^authorizing ${method} ${escapeRegExp(path)}$`));
  const body = Buffer.from(JSON.stringify({ schemaVersion: 2, padding: 'x'.repeat(40) }));
  const req = http.request(`${server.url}${path}`, {
    method,
    agent: false,
    headers: { 'X-Hold': '1', 'Content-Type': path.includes('/manifests/') ? OCI_MANIFEST : 'application/octet-stream', 'Content-Length': body.length },
  });
  const closed = new Promise<void>((resolve) => req.once('close', () => resolve()));
  req.on('error', () => undefined);
  req.write(whole ? body : body.subarray(0, 10));
  await authorizing;
  req.destroy();
  await closed;
}

describe.each(EXPRESS_VERSIONS)('an async authorize on %s, and a client that leaves while it decides', (expressModule) => {
  it.each([
    ['with its body begun', false],
    ['with its whole body sent', true],
  ])('for every route × method, %s: the host outlives bodyIdleTimeout and nothing goes unhandled', async (_moment, whole) => {
    const server = await startHost({ AUTHORIZE: 'hold', EXPRESS: expressModule });
    const started = await request(`${server.url}/v2/h/app/blobs/uploads/`, { method: 'POST' });
    expect(started.status).toBe(202);
    for (const [method, path] of await everyRouteAndMethod(server.url, started.headers.location!)) await abortDuringAuthorize(server, method, path, whole);
    await expectHostUnharmed(server);
  });
});
