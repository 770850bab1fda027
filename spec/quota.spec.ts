/**
 * Storage quotas over each built-in adapter: refusals at POST, mid-stream, at commit and at mount,
 * usage after mounts, deletes and garbage collection, namespaces, the usage document, and two routers over one
 * FileSystemStorage root racing to the limit.
 */
import express from 'express';
import supertest from 'supertest';
import { createRegistryRouter, FileSystemStorage, type RegistryOptions, type RegistryRouter, type StorageAdapter } from '../lib';
import { bytes, chunked, listen, request, sha256 } from './support/http';
import { makeImage, pushImage } from './support/oci';
import { builtInStorages } from './support/storages';
import { useTempDir } from './support/temp-dir';

function registry(storage: StorageAdapter, options: Partial<RegistryOptions>): { router: RegistryRouter; agent: ReturnType<typeof supertest>; app: express.Express } {
  const router = createRegistryRouter({ storage, ...options });
  const app = express().use(router);
  return { router, agent: supertest(app), app };
}

function push(agent: ReturnType<typeof supertest>, repository: string, data: Buffer) {
  return agent.post(`/v2/${repository}/blobs/uploads/?digest=${sha256(data)}`).set('Content-Type', 'application/octet-stream').send(data);
}

describe.each(builtInStorages)('quotas over %s', (_name, makeStorage) => {
  let storage: StorageAdapter;
  let cleanup: () => Promise<void>;

  beforeEach(async () => ({ storage, cleanup } = await makeStorage()));
  afterEach(() => cleanup());

  it('takes blobs that fit and refuses one that does not at POST, from its Content-Length, with usage and limit', async () => {
    const { router, agent } = registry(storage, { quota: 10_000 });
    await push(agent, 'a/app', bytes(6000, 1)).expect(201);
    const refused = await push(agent, 'a/app', bytes(5000, 2)).expect(403);
    expect(refused.body.errors[0]).toEqual({
      code: 'DENIED',
      message: expect.stringMatching(/^quota exceeded: a\/app holds 6000 of its 10000 bytes/),
      detail: { reason: 'quota', scope: 'a/app', usage: 6000, limit: 10_000, size: 5000 },
    });
    // Nothing of the refused blob stays: no link, no session.
    expect((await agent.head(`/v2/a/app/blobs/${sha256(bytes(5000, 2))}`)).status).toBe(404);
    expect(await storage.listDocuments('uploads/')).toEqual([]);
    expect(await router.usage('a/app')).toMatchObject({ scope: 'a/app', bytes: 6000, blobs: 1, limit: 10_000 });
    await push(agent, 'a/app', bytes(4000, 3)).expect(201);
    expect(await router.usage('a/app')).toMatchObject({ bytes: 10_000, blobs: 2 });
    // Another repository has a quota of its own.
    await push(agent, 'b/app', bytes(9000, 4)).expect(201);
  });

  it('refuses a chunk whose Content-Range would go over before reading it, and the commit of bytes that do not fit', async () => {
    const { router, agent } = registry(storage, { quota: 10_000 });
    const location = (await agent.post('/v2/a/blobs/uploads/').expect(202)).headers.location;
    await agent.patch(location).set('Content-Type', 'application/octet-stream').set('Content-Range', '0-7999').send(bytes(8000, 5)).expect(202);
    // Meanwhile another blob fills the quota: the session's bytes no longer fit, so its commit is refused.
    await push(agent, 'a', bytes(3000, 6)).expect(201);
    const commit = await agent.put(`${location}?digest=${sha256(bytes(8000, 5))}`).expect(403);
    expect(commit.body.errors[0].detail).toEqual({ reason: 'quota', scope: 'a', usage: 3000, limit: 10_000, size: 8000 });
    expect((await agent.head(`/v2/a/blobs/${sha256(bytes(8000, 5))}`)).status).toBe(404);
    const next = (await agent.post('/v2/a/blobs/uploads/').expect(202)).headers.location;
    const over = await agent.patch(next).set('Content-Type', 'application/octet-stream').set('Content-Range', '0-7999').send(bytes(8000, 5)).expect(403);
    expect(over.body.errors[0].detail).toMatchObject({ usage: 3000, limit: 10_000, size: 8000 });
    expect((await agent.get(next).expect(204)).headers.range).toBe('0-0');
    expect(await router.usage('a')).toMatchObject({ bytes: 3000, blobs: 1 });
  });

  it('stops a streamed body (no length announced) once it would go over; the session keeps at most the room left', async () => {
    const { router, app } = registry(storage, { quota: 100_000 });
    const server = await listen(app);
    try {
      const first = bytes(40_000, 7);
      expect((await request(`${server.url}/v2/a/blobs/uploads/?digest=${sha256(first)}`, { method: 'POST', body: first })).status).toBe(201);
      const location = (await request(`${server.url}/v2/a/blobs/uploads/`, { method: 'POST' })).headers.location!;
      const res = await request(`${server.url}${location}`, {
        method: 'PATCH',
        headers: { 'Content-Type': 'application/octet-stream' },
        body: chunked(bytes(300_000, 8), 16 * 1024),
      });
      expect(res.status).toBe(403);
      expect(JSON.parse(res.body.toString()).errors[0]).toMatchObject({ code: 'DENIED', detail: { reason: 'quota', usage: 40_000, limit: 100_000 } });
      const status = await request(`${server.url}${location}`, { method: 'GET' });
      expect(Number(String(status.headers.range).split('-')[1]) + 1).toBeLessThanOrEqual(60_000);
      expect(await router.usage('a')).toMatchObject({ bytes: 40_000, blobs: 1 });
    } finally {
      await server.close();
    }
  });

  it('counts mounts, refuses one that does not fit, counts a blob once however often it is linked, and frees it on delete', async () => {
    const { router, agent } = registry(storage, { quota: { 'small/': 10_000 } });
    const big = bytes(8000, 9);
    const small = bytes(3000, 10);
    await push(agent, 'free/app', big).expect(201);
    await push(agent, 'free/app', small).expect(201);
    // `free/app` has no quota: its usage is reported without a limit, and no usage document is kept.
    expect(await router.usage('free/app')).toMatchObject({ scope: 'free/app', bytes: 11_000, blobs: 2, limit: undefined });
    await agent.post(`/v2/small/one/blobs/uploads/?mount=${sha256(big)}&from=free/app`).expect(201);
    const refused = await agent.post(`/v2/small/two/blobs/uploads/?mount=${sha256(small)}&from=free/app`).expect(403);
    expect(refused.body.errors[0].detail).toEqual({ reason: 'quota', scope: 'small/', usage: 8000, limit: 10_000, size: 3000 });
    expect((await agent.head(`/v2/small/two/blobs/${sha256(small)}`)).status).toBe(404);
    // The namespace shares one quota; the same blob in two of its repositories counts once.
    await agent.post(`/v2/small/two/blobs/uploads/?mount=${sha256(big)}&from=free/app`).expect(201);
    await push(agent, 'small/two', big).expect(201);
    expect(await router.usage('small/two')).toMatchObject({ scope: 'small/', bytes: 8000, blobs: 1, limit: 10_000 });
    expect(await router.usage('small/one')).toMatchObject({ scope: 'small/', bytes: 8000 });
    // Deleting it from one repository leaves it counted for the other; from both frees it.
    await agent.delete(`/v2/small/one/blobs/${sha256(big)}`).expect(202);
    expect(await router.usage('small/one')).toMatchObject({ bytes: 8000, blobs: 1 });
    await agent.delete(`/v2/small/two/blobs/${sha256(big)}`).expect(202);
    expect(await router.usage('small/one')).toMatchObject({ bytes: 0, blobs: 0 });
    await agent.post(`/v2/small/two/blobs/uploads/?mount=${sha256(small)}&from=free/app`).expect(201);
    expect(await router.usage('small/two')).toMatchObject({ bytes: 3000, blobs: 1 });
    // The usage document follows every change.
    const document = JSON.parse((await storage.getDocument('quotas/namespaces/small/_usage'))!.toString('utf8'));
    expect(document).toMatchObject({ scope: 'small/', bytes: 3000, blobs: 1, limit: 10_000 });
    expect(await storage.listDocuments('quotas/repositories/')).toEqual([]);
  });

  it('frees the blobs of a deleted manifest when the garbage collector unlinks them, and its usage document follows', async () => {
    const { router, agent } = registry(storage, { quota: 100_000 });
    const image = makeImage('counted');
    await pushImage(agent, 'q/app', image, 'v1');
    const bytesOfImage = [image.config, ...image.layers].reduce((sum, blob) => sum + Buffer.byteLength(blob), 0);
    expect(await router.usage('q/app')).toMatchObject({ bytes: bytesOfImage, blobs: 3 });
    await agent.delete(`/v2/q/app/manifests/${image.digest}`).expect(202);
    // The manifest is gone, its blobs stay linked until a collection finds nothing references them.
    expect(await router.usage('q/app')).toMatchObject({ bytes: bytesOfImage, blobs: 3 });
    expect(await router.collectGarbage({ grace: 0 })).toMatchObject({ blobLinksRemoved: 3 });
    expect(await router.usage('q/app')).toMatchObject({ bytes: 0, blobs: 0 });
    const document = JSON.parse((await storage.getDocument('quotas/repositories/q/app/_usage'))!.toString('utf8'));
    expect(document).toMatchObject({ scope: 'q/app', bytes: 0, blobs: 0, limit: 100_000 });
  });

  it('takes the longest matching key of a table, and a function naming its namespace', async () => {
    const table = registry(storage, { quota: { 'team/': 1000, 'team/big': 5000 } }).router;
    expect(await table.usage('team/big')).toMatchObject({ scope: 'team/big', limit: 5000 });
    expect(await table.usage('team/x/y')).toMatchObject({ scope: 'team/', limit: 1000 });
    expect(await table.usage('teams')).toMatchObject({ scope: 'teams', limit: undefined });
    const byFunction = registry(storage, { quota: (repository) => ({ namespace: `${repository.split('/')[0]}/`, bytes: 7 }) }).router;
    expect(await byFunction.usage('org/app')).toMatchObject({ scope: 'org/', limit: 7 });
  });
});

describe('quotas across instances', () => {
  const root = useTempDir('oci-quota-');

  it('two routers over one FileSystemStorage root racing to the limit never go over it', async () => {
    const limit = 100_000;
    const size = 9000;
    const [first, second] = [0, 1].map(() => registry(new FileSystemStorage({ root: root() }), { quota: { 'race/': limit } }));
    // Twenty-four distinct blobs, twice what fits, pushed at once, alternately through either router, into two repositories of the namespace.
    const blobs = Array.from({ length: 24 }, (_, index) => bytes(size, 100 + index));
    const statuses = await Promise.all(
      blobs.map((data, index) => push((index % 2 === 0 ? first : second).agent, `race/r${index % 3}`, data).then((res) => res.status)),
    );
    expect(statuses.every((status) => status === 201 || status === 403)).toBe(true);
    const accepted = statuses.filter((status) => status === 201).length;
    const usage = await first.router.usage('race/r0');
    expect(usage).toMatchObject({ bytes: accepted * size, blobs: accepted });
    expect(usage.bytes).toBeLessThanOrEqual(limit);
    expect(accepted).toBeGreaterThan(0);
    // Whatever was refused in the race, the room left is usable now.
    const room = Math.floor((limit - usage.bytes) / size);
    for (let index = 0; index < room; index++) await push(second.agent, 'race/r9', bytes(size, 200 + index)).expect(201);
    await push(first.agent, 'race/r9', bytes(size, 300)).expect(403);
    expect((await second.router.usage('race/r1')).bytes).toBe(Math.floor(limit / size) * size);
  });
});
