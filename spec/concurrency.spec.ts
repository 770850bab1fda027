/** Races: appends to one session, one blob pushed by many sessions, manifest PUTs on one tag. */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileSystemStorage, MemoryStorage } from '../lib';
import { bytes, listen, makeApp, request, sha256 } from './support/http';
import { makeImage, OCI_MANIFEST } from './support/oci';
import { openRequest, storedSize, waitFor } from './support/streaming';

/** Two base URLs that serve one storage: the same router, or two routers over one folder. */
type Setup = (root: string) => Promise<{ urls: [string, string]; close: () => Promise<void> }>;

const setups: [string, Setup][] = [
  [
    'one router over MemoryStorage',
    async () => {
      const server = await listen(makeApp(new MemoryStorage()));
      return { urls: [server.url, server.url], close: server.close };
    },
  ],
  [
    'two routers over one FileSystemStorage folder',
    async (root) => {
      const servers = await Promise.all([0, 1].map(() => listen(makeApp(new FileSystemStorage({ root })))));
      return { urls: [servers[0].url, servers[1].url], close: async () => void (await Promise.all(servers.map((server) => server.close()))) };
    },
  ],
];

const octets = { 'Content-Type': 'application/octet-stream' };

describe.each(setups)('concurrency: %s', (name, setup) => {
  let root: string;
  let urls: [string, string];
  let close: () => Promise<void>;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'oci-concurrency-'));
    ({ urls, close } = await setup(root));
  });
  afterEach(async () => {
    await close();
    await rm(root, { recursive: true, force: true });
  });

  it.each([
    ['with the same Content-Range', true],
    ['streamed, without Content-Range', false],
  ])('two PATCHes to one session at once: the second gets 416 %s, and only the first one’s bytes are stored', async (_how, withRange) => {
    const [first, second] = urls;
    const location = (await request(`${first}/v2/race/app/blobs/uploads/`, { method: 'POST' })).headers.location!;
    const winner = bytes(400_000, 31);
    const loser = bytes(400_000, 32);
    const patch = openRequest(`${first}${location}`, 'PATCH', { ...octets, 'Content-Length': String(winner.length), 'Content-Range': `0-${winner.length - 1}` });
    await patch.send(winner.subarray(0, 150_000));
    await waitFor('the first PATCH to be under way', () => storedSize(first, location), (size) => size === 150_000);

    const rival = await request(`${second}${location}`, {
      method: 'PATCH',
      headers: withRange ? { ...octets, 'Content-Range': `0-${loser.length - 1}` } : octets,
      body: loser,
    });
    expect(rival.status).toBe(416);
    expect(JSON.parse(rival.body.toString()).errors[0].code).toBe('BLOB_UPLOAD_INVALID');
    expect(rival.headers.range).toMatch(/^0-\d+$/);

    patch.end(winner.subarray(150_000));
    expect((await patch.response).status).toBe(202);
    expect((await request(`${second}${location}?digest=${sha256(winner)}`, { method: 'PUT' })).status).toBe(201);
    const blob = await request(`${first}/v2/race/app/blobs/${sha256(winner)}`, { method: 'GET' });
    expect(Buffer.compare(blob.body, winner)).toBe(0);
  });

  it('many sessions uploading the same blob at once all succeed, with one stored copy', async () => {
    const data = bytes(300_000, 33);
    const uploads = Array.from({ length: 8 }, async (_, index) => {
      const url = urls[index % 2];
      const repository = `same/blob${index % 3}`;
      const location = (await request(`${url}/v2/${repository}/blobs/uploads/`, { method: 'POST' })).headers.location!;
      const patch = await request(`${url}${location}`, { method: 'PATCH', headers: { ...octets, 'Content-Range': '0-149999' }, body: data.subarray(0, 150_000) });
      expect(patch.status).toBe(202);
      const put = await request(`${url}${location}?digest=${sha256(data)}`, {
        method: 'PUT',
        headers: { ...octets, 'Content-Range': `150000-${data.length - 1}` },
        body: data.subarray(150_000),
      });
      return { status: put.status, repository };
    });
    const results = await Promise.all(uploads);
    expect(results.map((result) => result.status)).toEqual(Array(8).fill(201));
    for (const repository of new Set(results.map((result) => result.repository))) {
      const blob = await request(`${urls[1]}/v2/${repository}/blobs/${sha256(data)}`, { method: 'GET' });
      expect(Buffer.compare(blob.body, data)).toBe(0);
    }
    if (name.includes('FileSystemStorage')) {
      const hex = sha256(data).slice('sha256:'.length);
      expect(await readdir(join(root, 'content', 'sha256', hex.slice(0, 2)))).toEqual([hex]);
      expect(await readdir(join(root, 'uploads'))).toEqual([]);
    }
  });

  it('manifest PUTs racing on one tag: the tag ends on one of them, whole', async () => {
    const images = Array.from({ length: 6 }, (_, index) => makeImage('race', { annotations: { contender: String(index) } }));
    // The images share config and layers; push them once.
    for (const blob of [images[0].config, ...images[0].layers]) {
      const res = await request(`${urls[0]}/v2/race/tagged/blobs/uploads/?digest=${sha256(blob)}`, { method: 'POST', headers: octets, body: Buffer.from(blob) });
      expect(res.status).toBe(201);
    }
    for (let round = 0; round < 3; round++) {
      const puts = await Promise.all(
        images.map((image, index) =>
          request(`${urls[index % 2]}/v2/race/tagged/manifests/latest`, { method: 'PUT', headers: { 'Content-Type': OCI_MANIFEST }, body: image.manifest }),
        ),
      );
      expect(puts.map((put) => put.status)).toEqual(Array(images.length).fill(201));
      for (const url of urls) {
        const tagged = await request(`${url}/v2/race/tagged/manifests/latest`, { method: 'GET', headers: { Accept: OCI_MANIFEST } });
        expect(tagged.status).toBe(200);
        const winner = images.find((image) => image.digest === sha256(tagged.body));
        expect(winner).toBeDefined();
        expect(tagged.headers['docker-content-digest']).toBe(winner!.digest);
      }
      const tags = await request(`${urls[1]}/v2/race/tagged/tags/list`, { method: 'GET' });
      expect(JSON.parse(tags.body.toString()).tags).toEqual(['latest']);
    }
  });
});
