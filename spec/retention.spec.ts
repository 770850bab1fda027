/**
 * Tag retention over each built-in adapter: fifty tags set over a controlled clock keep exactly
 * what the rules say, a dry run only lists, referrers stay, a garbage collection then frees what
 * the removed tags alone held, and tags carry the time they were set.
 */
import express from 'express';
import supertest from 'supertest';
import { createRegistryRouter, globMatcher, type RegistryRouter, type RetentionRule, type StorageAdapter } from '../lib';
import { sha256 } from './support/http';
import { descriptor, makeImage, OCI_MANIFEST, pushImage, type TestImage } from './support/oci';
import { builtInStorages } from './support/storages';

const MINUTE = 60_000;
const START = Date.parse('2026-01-01T00:00:00Z');

describe.each(builtInStorages)('retention over %s', (_name, makeStorage) => {
  let storage: StorageAdapter;
  let cleanup: () => Promise<void>;
  let now: number;
  let router: RegistryRouter;
  let agent: ReturnType<typeof supertest>;
  const rules: RetentionRule[] = [
    { repositories: 'team/**', keepLast: 5, keepNewerThan: 58 * MINUTE, keepTags: /^release-/ },
    { repositories: 'other', keepLast: 1 },
  ];

  beforeEach(async () => {
    ({ storage, cleanup } = await makeStorage());
    now = START;
    router = createRegistryRouter({ storage, retention: rules, immutableTags: /^build-2$/, clock: () => now });
    agent = supertest(express().use(router));
  });
  afterEach(() => cleanup());

  const tagAt = (repository: string, tag: string, image: TestImage) =>
    agent.put(`/v2/${repository}/manifests/${tag}`).set('Content-Type', OCI_MANIFEST).send(image.manifest.toString()).expect(201);
  const tagsOf = async (repository: string) => (await agent.get(`/v2/${repository}/tags/list`).expect(200)).body.tags as string[];

  it('keeps the last n, the newer than, the matching and the immutable tags of 50 set over time, and untags the rest', async () => {
    const images: TestImage[] = [];
    const names = Array.from({ length: 50 }, (_, index) => (index % 10 === 0 ? `release-${index}` : `build-${index}`));
    for (const [index, tag] of names.entries()) {
      now = START + index * MINUTE;
      const image = makeImage(`image ${index}`, {}, 1);
      await pushImage(agent, 'team/app', image);
      await tagAt('team/app', tag, image);
      images.push(image);
    }
    // build-7 is set again last, so it is the most recent; `legacy` was stored before tags had times.
    now = START + 100 * MINUTE;
    await tagAt('team/app', 'build-7', images[7]);
    await storage.putDocument('repositories/team/app/_tags/legacy', Buffer.from(JSON.stringify({ digest: images[0].digest })));
    // Signatures of a kept and of an untagged manifest.
    const signature = (subject: TestImage) =>
      makeImage(`signature of ${subject.digest}`, { artifactType: 'application/example.signature', subject: descriptor(OCI_MANIFEST, subject.manifest) }, 1);
    const keptSignature = signature(images[45]);
    const untaggedSignature = signature(images[5]);
    await pushImage(agent, 'team/app', keptSignature);
    await pushImage(agent, 'team/app', untaggedSignature);
    // A repository no rule matches keeps everything.
    await pushImage(agent, 'elsewhere', images[0], 'a');
    await tagAt('elsewhere', 'b', images[0]);
    now += 1000;

    const kept = new Set(['build-7', ...[43, 44, 45, 46, 47, 48, 49].map((index) => `build-${index}`), 'release-0', 'release-10', 'release-20', 'release-30', 'release-40', 'build-2']);
    const removed = [...names, 'legacy'].filter((tag) => !kept.has(tag)).sort();
    expect(removed).toHaveLength(37);

    const dryRun = await router.applyRetention({ dryRun: true });
    expect(dryRun.tagsRemoved.map((entry) => entry.tag).sort()).toEqual(removed);
    expect(await tagsOf('team/app')).toHaveLength(51);

    const deleted: string[] = [];
    router.events.on('tagDeleted', ({ tag }) => deleted.push(tag));
    const result = await router.applyRetention();
    expect(result.tagsRemoved.map((entry) => entry.tag).sort()).toEqual(removed);
    expect(result.tagsRemoved).toContainEqual({ repository: 'team/app', tag: 'build-8', digest: images[8].digest });
    expect(deleted.sort()).toEqual(removed);
    expect(await tagsOf('team/app')).toEqual([...kept].sort());
    expect(await tagsOf('elsewhere')).toEqual(['a', 'b']);
    // Untagging only: the manifests stay by digest, and so do the referrers of every one of them.
    await agent.get(`/v2/team/app/manifests/${images[8].digest}`).expect(200);
    for (const [subject, referrer] of [
      [images[45], keptSignature],
      [images[5], untaggedSignature],
    ]) {
      const listed = (await agent.get(`/v2/team/app/referrers/${subject.digest}`).expect(200)).body.manifests;
      expect(listed.map((entry: { digest: string }) => entry.digest)).toEqual([referrer.digest]);
    }
    // A second run finds nothing more to remove.
    expect((await router.applyRetention()).tagsRemoved).toEqual([]);
  });

  it('in a garbage collection untags first, then frees what the removed tags alone held, referrers following their subject', async () => {
    const collecting = createRegistryRouter({ storage, retention: [{ repositories: 'gc/**', keepLast: 2 }], clock: () => now });
    const gcAgent = supertest(express().use(collecting));
    const images = Array.from({ length: 4 }, (_, index) => makeImage(`collected ${index}`, {}, 1));
    for (const [index, image] of images.entries()) {
      now = START + index * MINUTE;
      await pushImage(gcAgent, 'gc/app', image, `t${index}`);
    }
    const signature = (subject: TestImage) =>
      makeImage(`signature of ${subject.digest}`, { artifactType: 'application/example.signature', subject: descriptor(OCI_MANIFEST, subject.manifest) }, 1);
    const [oldSignature, keptSignature] = [signature(images[0]), signature(images[3])];
    await pushImage(gcAgent, 'gc/app', oldSignature);
    await pushImage(gcAgent, 'gc/app', keptSignature);
    // Pushed by digest and never tagged: retention has nothing to say about it, so it stays.
    const byDigest = makeImage('by digest', {}, 1);
    await pushImage(gcAgent, 'gc/app', byDigest);
    const status = async (path: string) => (await gcAgent.head(`/v2/gc/app/${path}`)).status;

    const dry = await collecting.collectGarbage({ grace: 0, dryRun: true });
    expect(dry.tagsRemoved.map((removed) => removed.tag).sort()).toEqual(['t0', 't1']);
    expect(dry).toMatchObject({ dryRun: true, manifestsDeleted: 3 });
    expect((await gcAgent.get('/v2/gc/app/tags/list').expect(200)).body.tags).toEqual(['t0', 't1', 't2', 't3']);

    const report = await collecting.collectGarbage({ grace: 0 });
    expect([...report.tagsRemoved].sort((a, b) => (a.tag < b.tag ? -1 : 1))).toEqual([
      { repository: 'gc/app', tag: 't0', digest: images[0].digest },
      { repository: 'gc/app', tag: 't1', digest: images[1].digest },
    ]);
    expect(report).toMatchObject({ manifestsDeleted: 3, blobLinksRemoved: 6 });
    expect((await gcAgent.get('/v2/gc/app/tags/list').expect(200)).body.tags).toEqual(['t2', 't3']);
    for (const gone of [images[0], images[1], oldSignature]) {
      expect(await status(`manifests/${gone.digest}`)).toBe(404);
      for (const blob of [gone.config, ...gone.layers]) expect(await status(`blobs/${sha256(blob)}`)).toBe(404);
    }
    for (const kept of [images[2], images[3], keptSignature, byDigest]) {
      expect(await status(`manifests/${kept.digest}`)).toBe(200);
      for (const blob of [kept.config, ...kept.layers]) expect(await status(`blobs/${sha256(blob)}`)).toBe(200);
    }
    const referrers = (await gcAgent.get(`/v2/gc/app/referrers/${images[3].digest}`).expect(200)).body.manifests;
    expect(referrers.map((entry: { digest: string }) => entry.digest)).toEqual([keptSignature.digest]);
  });

  it('records when each tag was set, and leaves a tag set again after the rules read it', async () => {
    const image = makeImage('timed', {}, 1);
    await pushImage(agent, 'other', image, 'old');
    now += MINUTE;
    await tagAt('other', 'new', image);
    const records = await router.store.manifests.tagRecords('other');
    expect(records).toEqual([
      { tag: 'new', digest: image.digest, at: new Date(START + MINUTE).toISOString() },
      { tag: 'old', digest: image.digest, at: new Date(START).toISOString() },
    ]);
    // The rule read `old` as set at START; it was set again since, so it stays.
    now += MINUTE;
    await tagAt('other', 'old', image);
    expect(await router.store.manifests.deleteTag('other', 'old', records[1])).toBe(false);
    expect(await tagsOf('other')).toEqual(['new', 'old']);
    expect((await router.applyRetention()).tagsRemoved).toEqual([{ repository: 'other', tag: 'new', digest: image.digest }]);
  });
});

describe('retention rules', () => {
  it('are checked when the router is made: a rule that keeps nothing would untag everything', () => {
    expect(() => createRegistryRouter({ storage: {} as StorageAdapter, retention: [{ repositories: '**' }] })).toThrow(/keeps nothing/);
    expect(() => createRegistryRouter({ storage: {} as StorageAdapter, retention: [{ repositories: '*', keepLast: -1 }] })).toThrow(/keepLast/);
  });

  it('match repositories by glob: * within a segment, ** across, ? one character', () => {
    const matches = globMatcher(['team-a/**', 'ci/*-cache', 'v?']);
    expect(['team-a/x', 'team-a/x/y', 'ci/go-cache', 'v1'].map(matches)).toEqual([true, true, true, true]);
    expect(['team-a', 'team-ab/x', 'ci/a/b-cache', 'v10', 'ci/go-cacheX'].map(matches)).toEqual([false, false, false, false, false]);
  });
});
