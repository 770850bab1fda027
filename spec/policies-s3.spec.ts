/**
 * The policies over S3Storage, through two routers on one bucket prefix as two instances would
 * be: a quota raced to its limit, an immutable tag raced to be set, and retention. Kept small,
 * since every step is a few S3 requests; the full cases run over the built-in adapters.
 */
import express from 'express';
import supertest from 'supertest';
import { createRegistryRouter, type RegistryOptions } from '../lib';
import { S3Storage } from '../lib/storage/s3';
import { bytes, sha256 } from './support/http';
import { makeImage, OCI_MANIFEST, pushImage } from './support/oci';
import { ensureBucket, s3Settings, s3TestStorage, S3_SKIP_REASON } from './support/s3';

const settings = s3Settings();

(settings ? describe : describe.skip)(`policies over S3Storage, two instances${settings ? '' : ` ${S3_SKIP_REASON}`}`, () => {
  let test: ReturnType<typeof s3TestStorage>;
  let other: S3Storage;
  beforeAll(() => ensureBucket(settings!));
  beforeEach(() => {
    test = s3TestStorage(settings!);
    other = new S3Storage({ ...settings!, prefix: test.prefix, claimLeaseMs: 3000 });
  });
  afterEach(async () => {
    other.client.destroy();
    await test.cleanup();
  });

  /** Two routers, one over each client of the same prefix. */
  function instances(options: Partial<RegistryOptions>) {
    return [test.storage, other].map((storage) => {
      const router = createRegistryRouter({ storage, ...options });
      return { router, agent: supertest(express().use(router)) };
    });
  }

  it('holds a namespace quota raced through both, and counts what each linked', async () => {
    const [first, second] = instances({ quota: { 'race/': 20_000 } });
    const blobs = Array.from({ length: 6 }, (_, index) => bytes(6000, 400 + index));
    const statuses = await Promise.all(
      blobs.map((data, index) =>
        (index % 2 === 0 ? first : second).agent
          .post(`/v2/race/r${index % 2}/blobs/uploads/?digest=${sha256(data)}`)
          .set('Content-Type', 'application/octet-stream')
          .send(data)
          .then((res) => res.status),
      ),
    );
    const accepted = statuses.filter((status) => status === 201).length;
    expect(statuses.filter((status) => status !== 201 && status !== 403)).toEqual([]);
    const usage = await second.router.usage('race/r0');
    expect(usage).toMatchObject({ scope: 'race/', bytes: accepted * 6000, limit: 20_000 });
    expect(usage.bytes).toBeLessThanOrEqual(20_000);
    expect(accepted).toBeGreaterThan(0);
  }, 120_000);

  it('lets one of two racing pushes set an immutable tag, and retention keeps what its rule says', async () => {
    let now = Date.parse('2026-01-01T00:00:00Z');
    const [first, second] = instances({ immutableTags: /^release$/, retention: [{ repositories: 'app', keepLast: 1 }], clock: () => now });
    const images = [makeImage('s3 one', {}, 1), makeImage('s3 two', {}, 1)];
    for (const image of images) await pushImage(first.agent, 'app', image);
    const put = (agent: typeof first.agent, tag: string, manifest: Buffer) =>
      agent.put(`/v2/app/manifests/${tag}`).set('Content-Type', OCI_MANIFEST).send(manifest.toString());
    const statuses = await Promise.all([put(first.agent, 'release', images[0].manifest), put(second.agent, 'release', images[1].manifest)].map((pending) => pending.then((res) => res.status)));
    expect(statuses.sort()).toEqual([201, 403]);

    now += 60_000;
    await put(second.agent, 'old', images[0].manifest).expect(201);
    now += 60_000;
    await put(first.agent, 'new', images[1].manifest).expect(201);
    // `release` is immutable and stays; of the others, only the newest is kept.
    expect((await second.router.applyRetention()).tagsRemoved).toEqual([{ repository: 'app', tag: 'old', digest: images[0].digest }]);
    expect((await first.agent.get('/v2/app/tags/list').expect(200)).body.tags).toEqual(['new', 'release']);
  }, 120_000);
});
