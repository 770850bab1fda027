/** A client that disconnects at any moment leaves no open file, lock, temp file or half-written content. */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import { createRegistryRouter, FileSystemStorage, type RegistryRouter } from '../lib';
import { expectOnlyVerifiedContent, filesUnder, openFilesUnder } from './support/storage-files';
import { bytes, listen, request, sha256 } from './support/http';
import { makeImage, OCI_MANIFEST } from './support/oci';
import { finishUpload, storedSize, waitFor } from './support/streaming';

/** When the client drops the connection. */
type Moment = 'before-body' | 'mid-body' | 'mid-response';

/**
 * Sends a request and destroys its socket at `moment`: right after the headers, after part of
 * the body (the rest is announced but never sent), or once the first response bytes arrive.
 */
function disconnect(url: string, method: string, headers: Record<string, string>, body: Buffer | undefined, moment: Moment): Promise<void> {
  return new Promise((resolve) => {
    const req = http.request(url, { method, headers, agent: false });
    req.on('error', () => resolve());
    req.on('close', () => resolve());
    req.on('response', (res) => {
      res.once('data', () => req.destroy());
      res.on('error', () => resolve());
      res.on('end', () => resolve());
    });
    if (moment === 'before-body') req.flushHeaders();
    else if (moment === 'mid-body') req.write(body!.subarray(0, Math.floor(body!.length / 2)));
    else req.end(body);
    // The server has the headers (and part of the body) once the socket has written them.
    if (moment !== 'mid-response') req.once('socket', (socket) => socket.once('connect', () => setImmediate(() => req.destroy())));
  });
}

describe('client disconnects leave nothing half-written or leaked', () => {
  let root: string;
  let registry: RegistryRouter;
  let storage: FileSystemStorage;
  let server: Awaited<ReturnType<typeof listen>>;
  const big = bytes(6 * 1024 * 1024, 41);
  const image = makeImage('disconnect');

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'oci-disconnect-'));
    storage = new FileSystemStorage({ root });
    registry = createRegistryRouter({ storage, uploadPurging: false });
    server = await listen(express().use(registry));
    // Content to read back and reference: a big blob and an image.
    for (const blob of [big, Buffer.from(image.config), ...image.layers.map((layer) => Buffer.from(layer))]) {
      expect((await request(`${server.url}/v2/d/app/blobs/uploads/?digest=${sha256(blob)}`, { method: 'POST', headers: { 'Content-Type': 'application/octet-stream' }, body: blob })).status).toBe(201);
    }
    expect((await request(`${server.url}/v2/d/app/manifests/v1`, { method: 'PUT', headers: { 'Content-Type': OCI_MANIFEST }, body: image.manifest })).status).toBe(201);
  });
  afterAll(async () => {
    await server.close();
    await rm(root, { recursive: true, force: true });
  });

  /** After every disconnect: no open file under the storage, no lock, no temp file, only verified content. */
  async function expectNothingLeaked(): Promise<void> {
    await waitFor('the server to finish the aborted request', () => openFilesUnder(root), (files) => files.length === 0);
    await waitFor('locks to be released', () => filesUnder(join(root, 'uploads')), (files) => files.every((file) => !file.endsWith('/lock')));
    expect(await filesUnder(join(root, 'tmp'))).toEqual([]);
    await expectOnlyVerifiedContent(root);
    const state = registry.store.uploads as unknown as { inUse: Map<string, number>; runningHashes: Map<string, unknown> };
    await waitFor('in-flight requests to end', async () => state.inUse.size, (size) => size === 0);
    // Running hashes are kept only for sessions that still exist.
    const sessions = new Set(await storage.listDocuments('uploads/'));
    expect([...state.runningHashes.keys()].filter((id) => !sessions.has(id))).toEqual([]);
  }

  async function newSession(): Promise<string> {
    return (await request(`${server.url}/v2/d/app/blobs/uploads/`, { method: 'POST' })).headers.location!;
  }

  const octets = (length: number) => ({ 'Content-Type': 'application/octet-stream', 'Content-Length': String(length) });
  const moments: Moment[] = ['before-body', 'mid-body', 'mid-response'];

  it.each(moments)('monolithic POST, %s: no session and no blob stay behind unless it completed', async (moment) => {
    const data = bytes(3 * 1024 * 1024, 42);
    const before = await storage.listDocuments('uploads/');
    await disconnect(`${server.url}/v2/d/mono/blobs/uploads/?digest=${sha256(data)}`, 'POST', octets(data.length), data, moment);
    await expectNothingLeaked();
    // The server cancels the session once it sees the body fail.
    await waitFor('the session to be cancelled', () => storage.listDocuments('uploads/'), (ids) => ids.length === before.length);
    expect(await storage.listDocuments('uploads/')).toEqual(before);
    const head = await request(`${server.url}/v2/d/mono/blobs/${sha256(data)}`, { method: 'HEAD' });
    expect(head.status).toBe(moment === 'mid-response' ? 200 : 404);
  });

  it.each(moments)('PATCH, %s: the session keeps a prefix of the bytes sent and can go on', async (moment) => {
    const data = bytes(3 * 1024 * 1024, 43);
    const location = await newSession();
    await disconnect(`${server.url}${location}`, 'PATCH', octets(data.length), data, moment);
    await expectNothingLeaked();
    const stored = await storedSize(server.url, location);

    const id = location.split('/').pop()!;
    const onDisk = await readFile(join(root, 'uploads', id, 'data'));
    expect(onDisk.length).toBe(stored);
    expect(Buffer.compare(onDisk, data.subarray(0, stored))).toBe(0);
    expect(await finishUpload(server.url, location, data, stored, 'PUT')).toBe(201);
  });

  it.each(moments)('PUT with a last chunk, %s: nothing is published from a partial body', async (moment) => {
    const data = bytes(3 * 1024 * 1024, 44);
    const location = await newSession();
    await disconnect(`${server.url}${location}?digest=${sha256(data)}`, 'PUT', octets(data.length), data, moment);
    await expectNothingLeaked();
    const head = await request(`${server.url}/v2/d/app/blobs/${sha256(data)}`, { method: 'HEAD' });
    if (moment === 'mid-response') expect(head.status).toBe(200);
    else {
      expect(head.status).toBe(404);
      expect(await storedSize(server.url, location)).toBeLessThan(data.length);
    }
  });

  it.each([
    ['GET a blob', 'GET', () => `/v2/d/app/blobs/${sha256(big)}`, {}],
    ['GET a blob range', 'GET', () => `/v2/d/app/blobs/${sha256(big)}`, { Range: 'bytes=100-5000000' }],
    ['GET a manifest', 'GET', () => '/v2/d/app/manifests/v1', {}],
    ['GET tags', 'GET', () => '/v2/d/app/tags/list', {}],
    ['GET the catalog', 'GET', () => '/v2/_catalog', {}],
    ['GET referrers', 'GET', () => `/v2/d/app/referrers/${image.digest}`, {}],
  ] as [string, string, () => string, Record<string, string>][])('%s, dropped before and during the response', async (_name, method, path, headers) => {
    for (const moment of ['before-body', 'mid-response'] as Moment[]) {
      await disconnect(`${server.url}${path()}`, method, headers, undefined, moment);
      await expectNothingLeaked();
    }
    const whole = await request(`${server.url}/v2/d/app/blobs/${sha256(big)}`, { method: 'GET' });
    expect(sha256(whole.body)).toBe(sha256(big));
  });

  it.each(moments)('manifest PUT, %s: the tag is either absent or whole', async (moment) => {
    const tagged = makeImage('disconnect', { annotations: { moment } });
    await disconnect(`${server.url}/v2/d/app/manifests/${moment}`, 'PUT', { 'Content-Type': OCI_MANIFEST, 'Content-Length': String(tagged.manifest.length) }, tagged.manifest, moment);
    await expectNothingLeaked();
    const res = await request(`${server.url}/v2/d/app/manifests/${moment}`, { method: 'GET', headers: { Accept: OCI_MANIFEST } });
    if (res.status === 200) expect(sha256(res.body)).toBe(tagged.digest);
    else expect(res.status).toBe(404);
    if (moment === 'mid-response') expect(res.status).toBe(200);
  });

  it('many aborted uploads leave no file handle, session or running hash behind', async () => {
    const data = bytes(512 * 1024, 45);
    const sessionsBefore = (await storage.listDocuments('uploads/')).length;
    await Promise.all(
      Array.from({ length: 20 }, () => disconnect(`${server.url}/v2/d/many/blobs/uploads/?digest=${sha256(data)}`, 'POST', octets(data.length), data, 'mid-body')),
    );
    await expectNothingLeaked();
    await waitFor('the sessions to be cancelled', () => storage.listDocuments('uploads/'), (ids) => ids.length === sessionsBefore);
  });
});
