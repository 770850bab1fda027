/** Garbage collection: what is kept and removed, and every order of a push against each step of the sweep. */
import express from 'express';
import supertest from 'supertest';
import { CollectionRunningError, createRegistryRouter, FileSystemStorage, MemoryStorage, parseDigest, type RegistryRouter, type StorageAdapter } from '../lib';
import { contentKey } from '../lib/store/paths';
import { call, gatedStorage, type CallMatcher } from './support/gated-storage';
import { sha256 } from './support/http';
import { descriptor, makeImage, OCI_INDEX, OCI_MANIFEST, pushBlob, pushImage, type TestImage } from './support/oci';
import { useTempDir } from './support/temp-dir';

/** A host app over `storage`, with the router kept for its maintenance calls. */
function registryOver(storage: StorageAdapter): { agent: ReturnType<typeof supertest>; router: RegistryRouter } {
  const router = createRegistryRouter({ storage, uploadPurging: false });
  return { agent: supertest(express().use(router)), router };
}

/** Every blob of `image` pulls from `repository` with its exact bytes. */
async function expectPulls(agent: ReturnType<typeof supertest>, repository: string, image: TestImage): Promise<void> {
  await agent.get(`/v2/${repository}/manifests/${image.digest}`).expect(200);
  for (const blob of [image.config, ...image.layers]) {
    const res = await agent.get(`/v2/${repository}/blobs/${sha256(blob)}`).buffer(true).parse((r, done) => {
      const chunks: Buffer[] = [];
      r.on('data', (chunk: Buffer) => chunks.push(chunk));
      r.on('end', () => done(null, Buffer.concat(chunks)));
    });
    expect(res.status).toBe(200);
    expect((res.body as Buffer).toString()).toBe(blob);
  }
}

async function contentCount(storage: StorageAdapter): Promise<number> {
  return (await storage.listContent!()).length;
}

describe('garbage collection', () => {
  const root = useTempDir('oci-gc-');

  it.each([
    ['MemoryStorage', () => new MemoryStorage()],
    ['FileSystemStorage', () => new FileSystemStorage({ root: root() })],
  ])('reclaims a deleted image and keeps the tagged one, on %s', async (_name, makeStorage) => {
    const storage = makeStorage();
    const { agent, router } = registryOver(storage);
    const kept = makeImage('kept');
    const gone = makeImage('gone', {}, 3);
    await pushImage(agent, 'gc/app', kept, 'v1');
    await pushImage(agent, 'gc/app', gone, 'v2');
    expect(await contentCount(storage)).toBe(7);
    await agent.delete(`/v2/gc/app/manifests/${gone.digest}`).expect(202);

    const dry = await router.collectGarbage({ grace: 0, dryRun: true });
    expect(dry).toMatchObject({ dryRun: true, blobLinksRemoved: 4, contentDeleted: 4, manifestsDeleted: 0 });
    expect(await contentCount(storage)).toBe(7);

    const report = await router.collectGarbage({ grace: 0 });
    const goneBytes = [gone.config, ...gone.layers].reduce((sum, blob) => sum + Buffer.byteLength(blob), 0) + gone.manifest.length;
    expect(report).toMatchObject({ dryRun: false, blobLinksRemoved: 4, contentDeleted: 4, manifestsDeleted: 0, bytesFreed: goneBytes, revived: 0 });
    expect(await contentCount(storage)).toBe(3);
    await expectPulls(agent, 'gc/app', kept);
    await agent.head(`/v2/gc/app/blobs/${sha256(gone.layers[2])}`).expect(404);
    expect(await storage.listDocuments('gc/')).toEqual([]);
    // A second collection finds nothing more.
    expect(await router.collectGarbage({ grace: 0 })).toMatchObject({ blobLinksRemoved: 0, contentDeleted: 0, bytesFreed: 0 });
  });

  it('keeps blobs younger than the grace period, and content another repository still links', async () => {
    const storage = new MemoryStorage();
    const { agent, router } = registryOver(storage);
    const shared = 'shared layer';
    await pushBlob(agent, 'gc/one', shared);
    await pushBlob(agent, 'gc/two', shared);
    await pushBlob(agent, 'gc/one', 'pending push');
    expect(await router.collectGarbage()).toMatchObject({ blobLinksRemoved: 0, contentDeleted: 0 });
    const image = makeImage('two', { layers: [descriptor('application/vnd.oci.image.layer.v1.tar', shared)] });
    await pushImage(agent, 'gc/two', { ...image, layers: [] }, 'latest');
    // With no grace, gc/one's links go; the shared layer's content stays for gc/two.
    expect(await router.collectGarbage({ grace: 0 })).toMatchObject({ blobLinksRemoved: 2, contentDeleted: 1 });
    await agent.get(`/v2/gc/two/blobs/${sha256(shared)}`).expect(200);
    await agent.head(`/v2/gc/one/blobs/${sha256(shared)}`).expect(404);
  });

  it('pins content only where a commit keeps a stored copy: a new blob leaves no pin, one pushed again a pin until the next collection', async () => {
    const storage = new MemoryStorage();
    const { agent, router } = registryOver(storage);
    await pushBlob(agent, 'gc/first', 'a layer');
    expect(await storage.listDocuments('gc/pins/')).toEqual([]);
    await pushBlob(agent, 'gc/second', 'a layer');
    expect(await storage.listDocuments('gc/pins/')).toEqual([`content/${contentKey(parseDigest(sha256('a layer')))}`]);
    // A collection clears the pins written before the millisecond it starts in, not during it.
    const pinnedBy = Date.now();
    while (Date.now() <= pinnedBy) await new Promise((resolve) => setTimeout(resolve, 1));
    expect(await router.collectGarbage()).toMatchObject({ blobLinksRemoved: 0, contentDeleted: 0 });
    expect(await storage.listDocuments('gc/')).toEqual([]);
    await agent.get(`/v2/gc/second/blobs/${sha256('a layer')}`).expect(200);
  });

  it('deletes old untagged manifests only when asked, keeping index children and referrers of kept subjects', async () => {
    const storage = new MemoryStorage();
    const { agent, router } = registryOver(storage);
    const amd = makeImage('amd64');
    const arm = makeImage('arm64');
    await pushImage(agent, 'gc/multi', amd);
    await pushImage(agent, 'gc/multi', arm);
    const index = JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [descriptor(OCI_MANIFEST, amd.manifest), descriptor(OCI_MANIFEST, arm.manifest)] });
    await agent.put('/v2/gc/multi/manifests/v1').set('Content-Type', OCI_INDEX).send(index).expect(201);
    const subject = { mediaType: OCI_INDEX, digest: sha256(index), size: index.length };
    const signature = makeImage('signature', { subject, artifactType: 'application/vnd.example.signature' }, 1);
    await pushImage(agent, 'gc/multi', signature);
    const orphan = makeImage('orphan', {}, 1);
    await pushImage(agent, 'gc/multi', orphan);

    expect(await router.collectGarbage({ grace: 0 })).toMatchObject({ manifestsDeleted: 0, blobLinksRemoved: 0 });
    const report = await router.collectGarbage({ grace: 0, untagged: 0 });
    expect(report).toMatchObject({ manifestsDeleted: 1, blobLinksRemoved: 2, contentDeleted: 2 });
    await agent.get(`/v2/gc/multi/manifests/${orphan.digest}`).expect(404);
    for (const image of [amd, arm, signature]) await expectPulls(agent, 'gc/multi', image);
    const referrers = await agent.get(`/v2/gc/multi/referrers/${sha256(index)}`).expect(200);
    expect(referrers.body.manifests.map((entry: { digest: string }) => entry.digest)).toEqual([signature.digest]);

    // Untagging the index lets it, its children and its signature go.
    await agent.delete('/v2/gc/multi/manifests/v1').expect(202);
    expect(await router.collectGarbage({ grace: 0, untagged: 0 })).toMatchObject({ manifestsDeleted: 4 });
    expect(await contentCount(storage)).toBe(0);
    expect(await storage.listDocuments('manifests/')).toEqual([]);
  });

  it('runs one collection at a time per storage', async () => {
    const storage = new MemoryStorage();
    const first = registryOver(storage).router;
    const second = registryOver(storage).router;
    const results = await Promise.allSettled([first.collectGarbage(), second.collectGarbage()]);
    expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(1);
    expect((results.find((result) => result.status === 'rejected') as PromiseRejectedResult).reason).toBeInstanceOf(CollectionRunningError);
    expect(await first.collectGarbage()).toMatchObject({ dryRun: false });
  });

  it('emits garbageCollected with the report', async () => {
    const { router } = registryOver(new MemoryStorage());
    const reports: unknown[] = [];
    router.events.on('garbageCollected', (report) => reports.push(report));
    const report = await router.collectGarbage();
    expect(reports).toEqual([report]);
  });
});

/** A request run while a collection is held, and where its blob must then be. */
interface Race {
  name: string;
  /** Runs the request; resolves to whether the registry said the blob exists there (or took the push). */
  run: (agent: ReturnType<typeof supertest>) => Promise<boolean>;
  /** The repository the registry said holds the blob. */
  repository: string;
}

const layer = 'a layer left unreferenced, then referenced again';
const image: TestImage = { ...makeImage('race', { layers: [descriptor('application/vnd.oci.image.layer.v1.tar', layer)] }), layers: [layer] };

const races: Race[] = [
  {
    name: 'a manifest PUT naming the blob',
    repository: 'race/app',
    run: async (agent) => {
      const res = await agent.put('/v2/race/app/manifests/v1').set('Content-Type', OCI_MANIFEST).send(image.manifest.toString());
      if (res.status === 201) return true;
      expect(res.status).toBe(400);
      expect(res.body.errors[0].code).toBe('MANIFEST_BLOB_UNKNOWN');
      await agent.get('/v2/race/app/manifests/v1').expect(404);
      return false;
    },
  },
  {
    name: 'a HEAD of the blob',
    repository: 'race/app',
    run: async (agent) => {
      const res = await agent.head(`/v2/race/app/blobs/${sha256(layer)}`);
      expect([200, 404]).toContain(res.status);
      return res.status === 200;
    },
  },
  {
    name: 'a mount of the blob into another repository',
    repository: 'race/other',
    run: async (agent) => {
      const res = await agent.post(`/v2/race/other/blobs/uploads/?mount=${sha256(layer)}&from=race/app`);
      expect([201, 202]).toContain(res.status);
      return res.status === 201;
    },
  },
];

/**
 * Where the collection is held while the request runs: each step of the protocol. Before the
 * collection condemns anything, only a push that names the blob keeps it (a HEAD or a mount of an
 * unreferenced blob then is what `grace` is for); from condemnation on, any of them does.
 */
const pausePoints: { name: string; at: CallMatcher; skip?: number; everyRequestKeeps: boolean }[] = [
  { name: 'before it condemns anything', at: call('putDocument', (key) => key.startsWith('gc/marks/'), (value) => value.includes('condemned')), everyRequestKeeps: false },
  { name: 'after condemning, before the second mark', at: call('listDocuments', (key) => key === 'catalog/'), skip: 1, everyRequestKeeps: true },
  { name: 'as it marks the link deleting', at: call('putDocument', (key) => key.startsWith('gc/marks/repositories/'), (value) => value.includes('deleting')), everyRequestKeeps: true },
  { name: 'after marking deleting, before reading the pin', at: call('getDocument', (key) => key.startsWith('gc/pins/repositories/')), everyRequestKeeps: true },
  { name: 'as it removes the link', at: call('deleteDocument', (key) => key.startsWith('repositories/race/app/_blobs/')), everyRequestKeeps: true },
  { name: 'as it deletes the content', at: call('deleteContent', () => true), everyRequestKeeps: true },
];

describe('garbage collection racing pushes, mounts and HEADs', () => {
  for (const race of races) {
    for (const pause of pausePoints) {
      it(`${race.name}, with the collection held ${pause.name}: what the registry said exists is kept, or the request fails cleanly`, async () => {
        const gated = gatedStorage();
        const { agent, router } = registryOver(gated.storage);
        // The blob and the config are in the repository but no manifest names them: candidates, with no grace.
        for (const blob of [image.config, layer]) await pushBlob(agent, 'race/app', blob);
        const gate = gated.pauseAt(pause.at, pause.skip);
        const collection = router.collectGarbage({ grace: 0 });
        await gate.reached;
        // The request runs while the collection is held; it either finishes, or waits on a deleting mark.
        const request = race.run(agent);
        await Promise.race([request, gated.nextCall(call('getDocument', (key) => key.startsWith('gc/marks/')))]);
        gate.release();
        const [said] = await Promise.all([request, collection]);
        if (said && (pause.everyRequestKeeps || race.name.startsWith('a manifest'))) {
          await agent.get(`/v2/${race.repository}/blobs/${sha256(layer)}`).expect(200);
          expect(await gated.storage.statContent(contentKey(parseDigest(sha256(layer))))).toEqual({ size: layer.length });
        }
        if (said && race.name.startsWith('a manifest')) await expectPulls(agent, 'race/app', image);
        // Whatever happened, a push naming the blob now either works whole or fails cleanly.
        const push = await agent.put(`/v2/${race.repository}/manifests/after`).set('Content-Type', OCI_MANIFEST).send(image.manifest.toString());
        if (push.status === 201) {
          await agent.get(`/v2/${race.repository}/blobs/${sha256(layer)}`).expect(200);
        } else {
          expect(push.body.errors[0].code).toBe('MANIFEST_BLOB_UNKNOWN');
          await agent.get(`/v2/${race.repository}/manifests/after`).expect(404);
        }
        expect(await gated.storage.listDocuments('gc/marks/')).toEqual([]);
      });
    }
  }

  it('a manifest PUT held between its check and its write while a whole collection runs fails cleanly, or keeps what it names', async () => {
    const gated = gatedStorage();
    const { agent, router } = registryOver(gated.storage);
    for (const blob of [image.config, layer]) await pushBlob(agent, 'race/app', blob);
    const held = gated.pauseAt(call('putDocument', (key) => key.startsWith('repositories/race/app/_manifests/')));
    const push = agent.put('/v2/race/app/manifests/v1').set('Content-Type', OCI_MANIFEST).send(image.manifest.toString()).then((res) => res);
    await held.reached;
    expect(await router.collectGarbage({ grace: 0 })).toMatchObject({ blobLinksRemoved: 2 });
    held.release();
    const res = await push;
    expect(res.status).toBe(400);
    expect(res.body.errors[0].code).toBe('MANIFEST_BLOB_UNKNOWN');
    await agent.get('/v2/race/app/manifests/v1').expect(404);
    await agent.get(`/v2/race/app/manifests/${image.digest}`).expect(404);
  });

  it('a manifest PUT whose bytes a collection removed before its revision was written writes them again', async () => {
    const gated = gatedStorage();
    const { agent, router } = registryOver(gated.storage);
    await pushImage(agent, 'race/app', image, 'keep');
    const second = { ...makeImage('second', { layers: [descriptor('application/vnd.oci.image.layer.v1.tar', layer)] }), layers: [layer] };
    await pushBlob(agent, 'race/app', second.config);
    const held = gated.pauseAt(call('putDocument', (key) => key === `repositories/race/app/_manifests/sha256/${second.digest.slice(7)}`));
    const push = agent.put('/v2/race/app/manifests/v2').set('Content-Type', OCI_MANIFEST).send(second.manifest.toString()).then((res) => res);
    await held.reached;
    // The new manifest's bytes are stored, but no revision names them yet: the collection takes them.
    expect(await router.collectGarbage({ grace: 3_600_000 })).toMatchObject({ bytesFreed: second.manifest.length, blobLinksRemoved: 0 });
    held.release();
    expect((await push).status).toBe(201);
    await expectPulls(agent, 'race/app', second);
  });
});
