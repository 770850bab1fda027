/** S3Storage against a real S3 server: the adapter test kit, multipart parts and tails, sealed uploads, two instances, presigned reads. */
import { describeStorageAdapter, readAll } from 'express-oci-registry/testing';
import { randomUUID } from 'node:crypto';
import { ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import supertest from 'supertest';
import { S3Storage } from '../lib/storage/s3';
import { bytes, chunked, listen, makeApp, request, sha256 } from './support/http';
import { ensureBucket, s3Settings, s3TestStorage, S3_SKIP_REASON } from './support/s3';

const settings = s3Settings();

if (!settings) {
  describe.skip(`S3Storage contract ${S3_SKIP_REASON}`, () => {
    it('runs against a real S3 server', () => undefined);
  });
} else {
  let cleanup: (() => Promise<void>) | undefined;
  beforeAll(() => ensureBucket(settings));
  describeStorageAdapter(
    'S3Storage',
    () => {
      const test = s3TestStorage(settings);
      cleanup = test.cleanup;
      return test.storage;
    },
    { cleanup: () => cleanup?.() },
  );
}

const MiB = 1024 * 1024;

(settings ? describe : describe.skip)(`S3Storage multipart uploads${settings ? '' : ` ${S3_SKIP_REASON}`}`, () => {
  let test: ReturnType<typeof s3TestStorage>;
  let storage: S3Storage;
  beforeAll(() => ensureBucket(settings!));
  beforeEach(() => {
    test = s3TestStorage(settings!, { partSize: 5 * MiB });
    storage = test.storage;
  });
  afterEach(() => test.cleanup());

  /** The same prefix through another client, as another process would see it. */
  const otherProcess = () => new S3Storage({ ...settings!, prefix: test.prefix, partSize: 5 * MiB, claimLeaseMs: 3000 });

  it('cuts chunks of any size into parts with a tail, continues in another process, commits into one object', async () => {
    const data = bytes(12 * MiB + 12345, 7);
    const id = randomUUID();
    await storage.createUpload(id);
    let size = 0;
    for (const [start, end] of [[0, 3 * MiB], [3 * MiB, 3 * MiB + 1], [3 * MiB + 1, 10 * MiB]]) {
      size = await storage.appendUpload(id, size, chunked(data.subarray(start, end), 100_000));
      expect(size).toBe(end);
    }
    const other = otherProcess();
    expect(await other.uploadSize(id)).toBe(10 * MiB);
    expect(await other.appendUpload(id, size, chunked(data.subarray(size), 1 << 20))).toBe(data.length);
    await storage.commitUpload(id, data.length, 'sha256/aa/twelve');
    expect(await other.statContent('sha256/aa/twelve')).toEqual({ size: data.length });
    expect((await readAll(await other.readContent('sha256/aa/twelve'))).equals(data)).toBe(true);
    const across = { start: 5 * MiB - 10, end: 10 * MiB + 10 };
    expect((await readAll(await storage.readContent('sha256/aa/twelve', across))).equals(data.subarray(across.start, across.end + 1))).toBe(true);
    // Committing copied nothing: one data object holds the blob, and nothing else is left.
    const listed = await storage.client.send(new ListObjectsV2Command({ Bucket: settings!.bucket, Prefix: `${test.prefix}/` }));
    const dataObjects = (listed.Contents ?? []).filter((object) => object.Key!.startsWith(`${test.prefix}/data/`));
    expect(dataObjects.map((object) => object.Size)).toEqual([data.length]);
    expect((listed.Contents ?? []).map((object) => object.Key!.slice(test.prefix.length + 1).split('/')[0]).sort()).toEqual(['content', 'data']);
    other.client.destroy();
  });

  it('reads an unfinished multipart upload back, then lets it grow again', async () => {
    const data = bytes(13 * MiB, 9);
    const id = randomUUID();
    await storage.createUpload(id);
    expect(await storage.appendUpload(id, 0, chunked(data.subarray(0, 6 * MiB)))).toBe(6 * MiB);
    expect((await readAll(await storage.readUpload(id))).equals(data.subarray(0, 6 * MiB))).toBe(true);
    expect(await storage.appendUpload(id, 6 * MiB, chunked(data.subarray(6 * MiB)))).toBe(data.length);
    expect((await readAll(await storage.readUpload(id))).equals(data)).toBe(true);
    await storage.commitUpload(id, data.length, 'sha256/bb/thirteen');
    expect((await readAll(await storage.readContent('sha256/bb/thirteen', { start: 6 * MiB - 1, end: 6 * MiB }))).equals(data.subarray(6 * MiB - 1, 6 * MiB + 1))).toBe(true);
  });

  /** The keys of the data objects under the test's prefix. */
  async function dataObjects(): Promise<string[]> {
    const listed = await storage.client.send(new ListObjectsV2Command({ Bucket: settings!.bucket, Prefix: `${test.prefix}/data/` }));
    return (listed.Contents ?? []).map((object) => object.Key!);
  }

  it('takes an empty append to a sealed upload without reopening it (no copy, no multipart upload left)', async () => {
    const id = randomUUID();
    await storage.createUpload(id);
    expect(await storage.appendUpload(id, 0, chunked(bytes(6 * MiB, 10)))).toBe(6 * MiB);
    await readAll(await storage.readUpload(id)); // reading back seals the multipart upload
    expect(await storage.appendUpload(id, 6 * MiB, chunked(Buffer.alloc(0)))).toBe(6 * MiB);
    const open = await storage.client.send(new ListMultipartUploadsCommand({ Bucket: settings!.bucket, Prefix: `${test.prefix}/` }));
    expect(open.Uploads ?? []).toEqual([]);
  });

  it('keeps one data object when two uploads of the same content commit at once', async () => {
    const data = bytes(6 * MiB, 11);
    const ids = [randomUUID(), randomUUID()];
    for (const id of ids) {
      await storage.createUpload(id);
      await storage.appendUpload(id, 0, chunked(data));
    }
    await Promise.all(ids.map((id) => storage.commitUpload(id, data.length, 'sha256/cc/same')));
    expect(await dataObjects()).toHaveLength(1);
    expect((await readAll(await storage.readContent('sha256/cc/same'))).equals(data)).toBe(true);
  });

  it('serves a multi-part push through the router, chunks alternating between two instances', async () => {
    const other = otherProcess();
    const apps = [makeApp(storage), makeApp(other)];
    const data = bytes(11 * MiB + 777, 3);
    const digest = sha256(data);
    const started = await supertest(apps[0]).post('/v2/s3/chunked/blobs/uploads/').expect(202);
    expect(started.headers['oci-chunk-min-length']).toBe(String(5 * MiB));
    let location = started.headers.location;
    const cuts = [0, 3 * MiB, 4 * MiB + 5, 9 * MiB, data.length];
    for (let index = 1; index < cuts.length; index++) {
      const chunk = data.subarray(cuts[index - 1], cuts[index]);
      const patched = await supertest(apps[index % 2])
        .patch(location)
        .set('Content-Type', 'application/octet-stream')
        .set('Content-Range', `${cuts[index - 1]}-${cuts[index] - 1}`)
        .send(chunk)
        .expect(202);
      expect(patched.headers.range).toBe(`0-${cuts[index] - 1}`);
      location = patched.headers.location;
    }
    // The committing instance served only some chunks: it verifies by reading the bytes back.
    await supertest(apps[1]).put(`${location}?digest=${digest}`).expect(201);
    const whole = await supertest(apps[0]).get(`/v2/s3/chunked/blobs/${digest}`).buffer(true).expect(200);
    expect((whole.body as Buffer).equals(data)).toBe(true);
    const ranged = await supertest(apps[1])
      .get(`/v2/s3/chunked/blobs/${digest}`)
      .set('Range', `bytes=${5 * MiB - 3}-${10 * MiB + 2}`)
      .buffer(true)
      .expect(206);
    expect((ranged.body as Buffer).equals(data.subarray(5 * MiB - 3, 10 * MiB + 3))).toBe(true);
    other.client.destroy();
  });

  it('answers blob GETs with a redirect to a presigned URL when asked to', async () => {
    const redirecting = new S3Storage({ ...settings!, prefix: test.prefix, presignedReadSeconds: 60 });
    const app = makeApp(redirecting);
    const data = bytes(6 * MiB + 3, 11);
    const digest = sha256(data);
    await supertest(app).post(`/v2/s3/presigned/blobs/uploads/?digest=${digest}`).set('Content-Type', 'application/octet-stream').send(data).expect(201);
    const redirected = await supertest(app).get(`/v2/s3/presigned/blobs/${digest}`).expect(307);
    expect(redirected.headers['docker-content-digest']).toBe(digest);
    const url = redirected.headers.location;
    expect(url.startsWith(`${settings!.endpoint}/`)).toBe(true);
    const whole = await request(url, { method: 'GET' });
    expect([whole.status, whole.body.equals(data)]).toEqual([200, true]);
    const ranged = await request(url, { method: 'GET', headers: { Range: 'bytes=100-199' } });
    expect([ranged.status, ranged.body.equals(data.subarray(100, 200))]).toEqual([206, true]);
    await supertest(app).head(`/v2/s3/presigned/blobs/${digest}`).expect(200).expect('Content-Length', String(data.length));
    // Without the option, the same blob streams through the registry.
    const streamed = await supertest(makeApp(storage)).get(`/v2/s3/presigned/blobs/${digest}`).buffer(true).expect(200);
    expect((streamed.body as Buffer).equals(data)).toBe(true);
    redirecting.client.destroy();
  });

  it('takes one streamed PATCH of unknown length through the router', async () => {
    const server = await listen(makeApp(storage));
    try {
      const data = bytes(12 * MiB + 1, 5);
      const digest = sha256(data);
      const started = await request(`${server.url}/v2/s3/streamed/blobs/uploads/`, { method: 'POST' });
      const location = `${server.url}${started.headers.location}`;
      const patched = await request(location, { method: 'PATCH', headers: { 'Content-Type': 'application/octet-stream' }, body: chunked(data) });
      expect(patched.status).toBe(202);
      expect(patched.headers.range).toBe(`0-${data.length - 1}`);
      expect((await request(`${location}?digest=${digest}`, { method: 'PUT' })).status).toBe(201);
      const fetched = await request(`${server.url}/v2/s3/streamed/blobs/${digest}`, { method: 'GET', headers: { Range: 'bytes=5242870-5242889' } });
      expect(fetched.status).toBe(206);
      expect(fetched.body.equals(data.subarray(5242870, 5242890))).toBe(true);
    } finally {
      await server.close();
    }
  });
});
