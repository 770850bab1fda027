/** SIGKILL at every step of an upload loses no acknowledged byte, and the client resumes after a restart. */
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, readlink, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startChild, type ChildServer } from './support/child-server';
import { bytes, request, sha256 } from './support/http';
import { expectOnlyVerifiedContent } from './support/storage-files';
import { finishUpload, openRequest, storedSize, waitFor } from './support/streaming';

const PROJECT = join(__dirname, '..');
const EXAMPLE_SERVER = join(PROJECT, 'dist', 'examples', 'server.js');
const CRASH_SERVER = join(PROJECT, 'spec', 'support', 'crash-server.js');

const children = new Set<ChildProcess>();

/** Spawns a registry server on a free port over `dataDir` and waits until it listens. */
async function startServer(script: string, dataDir: string, env: Record<string, string> = {}): Promise<ChildServer> {
  const server = await startChild(script, { DATA_DIR: dataDir, ...env });
  children.add(server.child);
  return server;
}

async function kill(server: ChildServer): Promise<void> {
  server.child.kill('SIGKILL');
  expect(await server.exited).toBe('SIGKILL');
}

describe('crash safety: SIGKILL at any moment, restart on the same folder, resume', () => {
  let dataDir: string;
  beforeEach(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'oci-crash-'));
  });
  afterEach(async () => {
    for (const child of children) child.kill('SIGKILL');
    children.clear();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('the example server killed mid-PATCH: status reports what was stored, the lock left behind is taken over, the upload completes', async () => {
    const data = bytes(3 * 1024 * 1024, 21);
    const first = await startServer(EXAMPLE_SERVER, dataDir);
    const location = (await request(`${first.url}/v2/crash/app/blobs/uploads/`, { method: 'POST' })).headers.location!;
    const id = location.split('/').pop()!;
    const dataFile = join(dataDir, 'uploads', id, 'data');

    const patch = openRequest(`${first.url}${location}`, 'PATCH', { 'Content-Type': 'application/octet-stream', 'Content-Length': String(data.length) });
    await patch.send(data.subarray(0, 1_000_000));
    await waitFor('the bytes sent to reach the disk', async () => (await stat(dataFile)).size, (size) => size === 1_000_000);
    await kill(first);
    await expect(patch.response).rejects.toThrow();
    // The PATCH was in flight: its lock file names the dead process.
    expect(await readlink(join(dataDir, 'uploads', id, 'lock'))).toMatch(new RegExp(` ${first.child.pid}$`));

    const second = await startServer(EXAMPLE_SERVER, dataDir);
    expect(await storedSize(second.url, location)).toBe(1_000_000);
    const rest = await request(`${second.url}${location}`, {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `1000000-${data.length - 1}` },
      body: data.subarray(1_000_000),
    });
    expect(rest.status).toBe(202);
    expect((await request(`${second.url}${location}?digest=${sha256(data)}`, { method: 'PUT' })).status).toBe(201);
    const blob = await request(`${second.url}/v2/crash/app/blobs/${sha256(data)}`, { method: 'GET' });
    expect(sha256(blob.body)).toBe(sha256(data));
    await expectOnlyVerifiedContent(dataDir);
  });

  it('killed without waiting: the reported size is exactly the durable size and those bytes are the client’s', async () => {
    const data = bytes(4 * 1024 * 1024, 22);
    const first = await startServer(EXAMPLE_SERVER, dataDir);
    const location = (await request(`${first.url}/v2/crash/app/blobs/uploads/`, { method: 'POST' })).headers.location!;
    const dataFile = join(dataDir, 'uploads', location.split('/').pop()!, 'data');
    const patch = openRequest(`${first.url}${location}`, 'PATCH', { 'Content-Type': 'application/octet-stream', 'Content-Length': String(data.length) });
    await patch.send(data.subarray(0, 2_500_000));
    await kill(first);
    await expect(patch.response).rejects.toThrow();

    const onDisk = await readFile(dataFile);
    expect(Buffer.compare(onDisk, data.subarray(0, onDisk.length))).toBe(0);
    const second = await startServer(EXAMPLE_SERVER, dataDir);
    const stored = await storedSize(second.url, location);
    expect(stored).toBe(onDisk.length);
    expect(await finishUpload(second.url, location, data, stored)).toBe(201);
    await expectOnlyVerifiedContent(dataDir);
  });

  // Each moment is hit exactly: the crash server's adapter SIGKILLs itself there.
  it.each([
    ['after a chunk is appended, before the 202', 'appendUpload:after', 'session', 1_000_000],
    ['after verification, before the bytes become content', 'commitUpload:before', 'session', 2_000_000],
    ['after the bytes became content, before the blob is linked', 'commitUpload:after', 'unlinked', 0],
    ['after the blob is linked, before the session record is removed', 'putDocument:after:repositories/crash/app/_blobs/', 'linked', 0],
    ['after the session record is removed, before the 201', 'deleteDocument:after:uploads/', 'linked', 0],
  ])('killed %s (%s)', async (_moment, crashAt, expected, expectedSize) => {
    const data = bytes(2_000_000, 23);
    const digest = sha256(data);
    const first = await startServer(CRASH_SERVER, dataDir, { CRASH_AT: crashAt });
    const location = (await request(`${first.url}/v2/crash/app/blobs/uploads/`, { method: 'POST' })).headers.location!;
    const id = location.split('/').pop()!;
    const push = async () => {
      const patch = await request(`${first.url}${location}`, {
        method: 'PATCH',
        headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': '0-999999' },
        body: data.subarray(0, 1_000_000),
      });
      expect(patch.status).toBe(202);
      await request(`${first.url}${location}?digest=${digest}`, {
        method: 'PUT',
        headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `1000000-${data.length - 1}` },
        body: data.subarray(1_000_000),
      });
    };
    await expect(push()).rejects.toThrow();
    expect(await first.exited).toBe('SIGKILL');
    await expectOnlyVerifiedContent(dataDir);

    const second = await startServer(CRASH_SERVER, dataDir);
    const session = await request(`${second.url}${location}`, { method: 'GET' });
    const blobUrl = `${second.url}/v2/crash/app/blobs/${digest}`;
    if (expected === 'session') {
      // The session survived with exactly the durable bytes; the client resumes from its Range.
      expect(session.status).toBe(204);
      const stored = await storedSize(second.url, location);
      expect(stored).toBe(expectedSize);
      expect(stored).toBe((await stat(join(dataDir, 'uploads', id, 'data'))).size);
      expect((await request(blobUrl, { method: 'HEAD' })).status).toBe(404);
      expect(await finishUpload(second.url, location, data, stored, 'PUT')).toBe(201);
    } else {
      // The session is gone with its bytes published as verified content.
      expect(session.status).toBe(404);
      if (expected === 'unlinked') {
        expect((await request(blobUrl, { method: 'HEAD' })).status).toBe(404);
        // Pushing again links the content; the stored copy is already the right bytes.
        const again = await request(`${second.url}/v2/crash/app/blobs/uploads/?digest=${digest}`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/octet-stream' },
          body: data,
        });
        expect(again.status).toBe(201);
      }
    }
    const blob = await request(blobUrl, { method: 'GET' });
    expect(blob.status).toBe(200);
    expect(sha256(blob.body)).toBe(digest);
    await expectOnlyVerifiedContent(dataDir);
  });
});
