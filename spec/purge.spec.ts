/** Purging stale upload sessions, never one with a request in flight here or in another process. */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import express from 'express';
import supertest from 'supertest';
import { createRegistryRouter, FileSystemStorage, MemoryStorage, type StorageAdapter } from '../lib';
import type { UploadSession } from '../lib/store';
import { repositorySessionsPrefix, uploadRecordKey } from '../lib/store/paths';
import { bytes, listen, makeApp, request, sha256 } from './support/http';
import { openRequest, storedSize, waitFor } from './support/streaming';
import { useTempDir } from './support/temp-dir';

const DAY = 24 * 60 * 60 * 1000;

/** Rewrites a session's record as if it had started `age` ms ago. */
async function age(storage: StorageAdapter, location: string, ageMs: number): Promise<void> {
  const id = location.split('/').pop()!;
  const record = JSON.parse((await storage.getDocument(uploadRecordKey(id)))!.toString()) as UploadSession;
  record.startedAt = new Date(Date.now() - ageMs).toISOString();
  await storage.putDocument(uploadRecordKey(id), Buffer.from(JSON.stringify(record)));
}

describe('purging stale upload sessions', () => {
  const root = useTempDir('oci-purge-');

  it('removes sessions older than the maximum age (default 7 days) with their bytes, and keeps younger ones', async () => {
    const storage = new FileSystemStorage({ root: root() });
    const router = createRegistryRouter({ storage });
    const agent = supertest(makeApp(storage, { uploadPurging: false }));
    const old = (await agent.post('/v2/a/blobs/uploads/').expect(202)).headers.location;
    const fresh = (await agent.post('/v2/a/blobs/uploads/').expect(202)).headers.location;
    await agent.patch(old).set('Content-Type', 'application/octet-stream').send(bytes(1000)).expect(202);
    await age(storage, old, 7 * DAY + 60_000);
    await age(storage, fresh, 6 * DAY);

    expect(await router.purgeStaleUploads()).toEqual([old.split('/').pop()]);
    await agent.get(old).expect(404);
    expect(await storage.uploadSize(old.split('/').pop()!)).toBeUndefined();
    await agent.get(fresh).expect(204);
    expect(await router.purgeStaleUploads(5 * DAY)).toEqual([fresh.split('/').pop()]);
    expect(await storage.listDocuments('uploads/')).toEqual([]);
    // Nor do they count against the repository's limit any more.
    expect(await storage.listDocuments(repositorySessionsPrefix('a'))).toEqual([]);
  });

  it.each([
    ['in this process', false],
    ['in another router over the same folder', true],
  ])('never removes a session with a PATCH in flight %s', async (_where, otherRouter) => {
    const servingRouter = createRegistryRouter({ storage: new FileSystemStorage({ root: root() }), uploadPurging: false });
    const purgingRouter = otherRouter ? createRegistryRouter({ storage: new FileSystemStorage({ root: root() }), uploadPurging: false }) : servingRouter;
    const server = await listen(express().use(servingRouter));
    try {
      const location = (await request(`${server.url}/v2/a/blobs/uploads/`, { method: 'POST' })).headers.location!;
      const data = bytes(300_000, 4);
      const patch = openRequest(`${server.url}${location}`, 'PATCH', {
        'Content-Type': 'application/octet-stream',
        'Content-Length': String(data.length),
      });
      await patch.send(data.subarray(0, 100_000));
      await waitFor('the first bytes to be stored', () => storedSize(server.url, location), (size) => size === 100_000);

      // maxAge 0: every session is stale, yet this one has a request in flight.
      expect(await purgingRouter.purgeStaleUploads(0)).toEqual([]);

      patch.end(data.subarray(100_000));
      expect((await patch.response).status).toBe(202);
      expect((await request(`${server.url}${location}?digest=${sha256(data)}`, { method: 'PUT' })).status).toBe(201);
    } finally {
      await server.close();
    }
  });

  it('a request that arrives while its session is being purged finds it gone', async () => {
    const storage = new MemoryStorage();
    let releaseDelete!: () => void;
    const deleteReached = new Promise<void>((reached) => {
      const gate = new Promise<void>((release) => (releaseDelete = release));
      const deleteUpload = storage.deleteUpload.bind(storage);
      storage.deleteUpload = async (id) => {
        reached();
        await gate;
        return deleteUpload(id);
      };
    });
    const router = createRegistryRouter({ storage, uploadPurging: false });
    const agent = supertest(express().use(router));
    const location = (await agent.post('/v2/a/blobs/uploads/').expect(202)).headers.location;
    const purged = router.purgeStaleUploads(0);
    await deleteReached;
    // The purger holds the session: a PATCH now must not write into it.
    const patch = await agent.patch(location).set('Content-Type', 'application/octet-stream').send(Buffer.from('late bytes'));
    expect(patch.status).toBe(404);
    expect(patch.body.errors[0].code).toBe('BLOB_UPLOAD_UNKNOWN');
    releaseDelete();
    expect(await purged).toEqual([location.split('/').pop()]);
    await agent.get(location).expect(404);
  });

  it('runs on its interval (fake timers), and not at all when turned off', async () => {
    jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
    try {
      const scheduled = new MemoryStorage();
      const unscheduled = new MemoryStorage();
      for (const storage of [scheduled, unscheduled]) {
        const session: UploadSession = { id: '00000000-0000-4000-8000-000000000001', repository: 'a', startedAt: new Date(Date.now() - 5000).toISOString() };
        await storage.putDocument(uploadRecordKey(session.id), Buffer.from(JSON.stringify(session)));
        await storage.createUpload(session.id);
      }
      createRegistryRouter({ storage: scheduled, uploadPurging: { maxAge: 1000, interval: 10_000 } });
      createRegistryRouter({ storage: unscheduled, uploadPurging: false });
      // Up to 10% jitter: nothing before the interval, done by 1.1 × interval.
      await jest.advanceTimersByTimeAsync(9_999);
      expect(await scheduled.listDocuments('uploads/')).toHaveLength(1);
      await jest.advanceTimersByTimeAsync(1_002);
      await waitForImmediate();
      expect(await scheduled.listDocuments('uploads/')).toEqual([]);
      expect(await unscheduled.listDocuments('uploads/')).toHaveLength(1);
    } finally {
      jest.useRealTimers();
    }
  });

  it('does not keep the process alive: a script that only creates a router exits on its own', async () => {
    const script = `require(${JSON.stringify(join(__dirname, '..', 'dist', 'lib'))}).createRegistryRouter({ storage: new (require(${JSON.stringify(
      join(__dirname, '..', 'dist', 'lib'),
    )}).MemoryStorage)() }); console.log('created');`;
    const { stdout } = await promisify(execFile)(process.execPath, ['-e', script], { timeout: 20_000 });
    expect(stdout.trim()).toBe('created');
  });
});

async function waitForImmediate(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}
