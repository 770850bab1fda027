/** Manifest PUT, GET, HEAD and DELETE: validation, media types, tags and referrers. */
import { Readable } from 'node:stream';
import supertest from 'supertest';
import { MemoryStorage, type StorageAdapter } from '../lib';
import { builtInStorages } from './support/storages';
import { listen, makeApp, request, sha256, sha512 } from './support/http';
import { descriptor, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, makeImage, OCI_INDEX, OCI_MANIFEST, pushBlob, pushImage } from './support/oci';

describe.each(builtInStorages)('manifests over %s', (_name, makeStorage) => {
  let storage: StorageAdapter;
  let cleanup: () => Promise<void>;
  let agent: ReturnType<typeof supertest>;

  beforeEach(async () => {
    ({ storage, cleanup } = await makeStorage());
    agent = supertest(makeApp(storage));
  });
  afterEach(() => cleanup());

  it('PUT by tag answers 201 with Location and Docker-Content-Digest; GET and HEAD by tag and digest serve it', async () => {
    const image = makeImage('basic');
    const put = await pushImage(agent, 'team/app', image, 'v1');
    expect(put.headers.location).toBe(`/v2/team/app/manifests/${image.digest}`);
    expect(put.headers['docker-content-digest']).toBe(image.digest);
    expect(put.headers['oci-subject']).toBeUndefined();
    for (const reference of ['v1', image.digest]) {
      const res = await agent.get(`/v2/team/app/manifests/${reference}`).buffer(true).parse(rawBody).expect(200);
      expect(Buffer.compare(res.body, image.manifest)).toBe(0);
      expect(res.headers['content-type']).toBe(OCI_MANIFEST);
      expect(res.headers['docker-content-digest']).toBe(image.digest);
      expect(res.headers['content-length']).toBe(String(image.manifest.length));
      expect(res.headers.etag).toBe(`"${image.digest}"`);
      const head = await agent.head(`/v2/team/app/manifests/${reference}`).expect(200);
      expect(head.headers['content-type']).toBe(OCI_MANIFEST);
      expect(head.headers['content-length']).toBe(String(image.manifest.length));
      expect(head.headers['docker-content-digest']).toBe(image.digest);
    }
  });

  it('stores the exact bytes, whitespace and key order included', async () => {
    const image = makeImage('bytes');
    const parsed = JSON.parse(image.manifest.toString());
    const odd = Buffer.from(`{\n  "layers": ${JSON.stringify(parsed.layers)},\n\t"schemaVersion":2, "config": ${JSON.stringify(parsed.config, null, 3)} }\n`);
    for (const blob of [image.config, ...image.layers]) await pushBlob(agent, 'team/app', blob);
    const put = await agent.put('/v2/team/app/manifests/odd').set('Content-Type', OCI_MANIFEST).send(odd.toString()).expect(201);
    expect(put.headers['docker-content-digest']).toBe(sha256(odd));
    const res = await agent.get('/v2/team/app/manifests/odd').buffer(true).parse(rawBody).expect(200);
    expect(Buffer.compare(res.body, odd)).toBe(0);
  });

  it('a new process over the same storage serves what an earlier one stored', async () => {
    const image = makeImage('restart');
    await pushImage(agent, 'team/app', image, 'v1');
    const again = supertest(makeApp(storage));
    const res = await again.get('/v2/team/app/manifests/v1').buffer(true).parse(rawBody).expect(200);
    expect(Buffer.compare(res.body, image.manifest)).toBe(0);
    expect((await again.get('/v2/team/app/tags/list').expect(200)).body.tags).toEqual(['v1']);
  });

  it('DELETE by tag removes only that tag', async () => {
    const image = makeImage('tagdelete');
    await pushImage(agent, 'team/app', image, 'v1');
    await agent.put('/v2/team/app/manifests/latest').set('Content-Type', OCI_MANIFEST).send(image.manifest.toString()).expect(201);
    await agent.delete('/v2/team/app/manifests/v1').expect(202);
    expect((await agent.get('/v2/team/app/manifests/v1').expect(404)).body.errors[0].code).toBe('MANIFEST_UNKNOWN');
    await agent.head('/v2/team/app/manifests/latest').expect(200);
    await agent.head(`/v2/team/app/manifests/${image.digest}`).expect(200);
    expect((await agent.get('/v2/team/app/tags/list').expect(200)).body.tags).toEqual(['latest']);
    expect((await agent.delete('/v2/team/app/manifests/v1').expect(404)).body.errors[0].code).toBe('MANIFEST_UNKNOWN');
  });

  it('DELETE by digest removes the manifest and every tag naming it, and nothing else', async () => {
    const image = makeImage('digestdelete');
    const other = makeImage('kept');
    await pushImage(agent, 'team/app', image, 'v1');
    await agent.put('/v2/team/app/manifests/latest').set('Content-Type', OCI_MANIFEST).send(image.manifest.toString()).expect(201);
    await pushImage(agent, 'team/app', other, 'v2');
    await pushImage(agent, 'team/mirror', image, 'v1');
    await agent.delete(`/v2/team/app/manifests/${image.digest}`).expect(202);
    for (const reference of ['v1', 'latest', image.digest]) {
      expect((await agent.get(`/v2/team/app/manifests/${reference}`).expect(404)).body.errors[0].code).toBe('MANIFEST_UNKNOWN');
    }
    expect((await agent.get('/v2/team/app/tags/list').expect(200)).body.tags).toEqual(['v2']);
    await agent.head('/v2/team/app/manifests/v2').expect(200);
    await agent.head('/v2/team/mirror/manifests/v1').expect(200);
    expect((await agent.delete(`/v2/team/app/manifests/${image.digest}`).expect(404)).body.errors[0].code).toBe('MANIFEST_UNKNOWN');
  });

  it('DELETE by digest spares a tag that has moved on to another manifest', async () => {
    const first = makeImage('moved-from');
    const second = makeImage('moved-to');
    await pushImage(agent, 'team/app', first, 'v1');
    await agent.put('/v2/team/app/manifests/stable').set('Content-Type', OCI_MANIFEST).send(first.manifest.toString()).expect(201);
    await pushImage(agent, 'team/app', second, 'v1');
    await agent.delete(`/v2/team/app/manifests/${first.digest}`).expect(202);
    expect((await agent.head('/v2/team/app/manifests/v1').expect(200)).headers['docker-content-digest']).toBe(second.digest);
    await agent.head('/v2/team/app/manifests/stable').expect(404);
    await agent.delete(`/v2/team/app/manifests/${second.digest}`).expect(202);
    expect((await agent.get('/v2/team/app/tags/list').expect(200)).body.tags).toEqual([]);
  });

  it('DELETE of a blob leaves manifests and tags as they were', async () => {
    const image = makeImage('blobdelete');
    await pushImage(agent, 'team/app', image, 'v1');
    await agent.delete(`/v2/team/app/blobs/${sha256(image.layers[0])}`).expect(202);
    await agent.head('/v2/team/app/manifests/v1').expect(200);
    expect((await agent.get('/v2/team/app/tags/list').expect(200)).body.tags).toEqual(['v1']);
  });

  it('deleting can be turned off: 405 UNSUPPORTED and nothing removed', async () => {
    const readOnly = supertest(makeApp(storage, { deleteEnabled: false }));
    const image = makeImage('readonly');
    await pushImage(readOnly, 'team/app', image, 'v1');
    for (const reference of ['v1', image.digest]) {
      expect((await readOnly.delete(`/v2/team/app/manifests/${reference}`).expect(405)).body.errors[0].code).toBe('UNSUPPORTED');
    }
    await readOnly.head('/v2/team/app/manifests/v1').expect(200);
  });
});

describe('manifest PUT validation', () => {
  let agent: ReturnType<typeof supertest>;
  beforeEach(() => {
    agent = supertest(makeApp(new MemoryStorage()));
  });

  it('PUT by digest checks the digest', async () => {
    const image = makeImage('bydigest');
    await pushImage(agent, 'team/app', image);
    const wrong = await agent.put(`/v2/team/app/manifests/${sha256('something else')}`).set('Content-Type', OCI_MANIFEST).send(image.manifest.toString()).expect(400);
    expect(wrong.body.errors[0].code).toBe('DIGEST_INVALID');
    await agent.head(`/v2/team/app/manifests/${sha256('something else')}`).expect(404);
  });

  it('accepts a sha512 digest reference', async () => {
    const image = makeImage('sha512');
    for (const blob of [image.config, ...image.layers]) await pushBlob(agent, 'team/app', blob);
    const digest = sha512(image.manifest);
    const put = await agent.put(`/v2/team/app/manifests/${digest}`).set('Content-Type', OCI_MANIFEST).send(image.manifest.toString()).expect(201);
    expect(put.headers['docker-content-digest']).toBe(digest);
    const res = await agent.get(`/v2/team/app/manifests/${digest}`).buffer(true).parse(rawBody).expect(200);
    expect(Buffer.compare(res.body, image.manifest)).toBe(0);
  });

  it('PUT by tag moves the tag', async () => {
    const first = makeImage('first');
    const second = makeImage('second');
    await pushImage(agent, 'team/app', first, 'v1');
    await pushImage(agent, 'team/app', second, 'v1');
    expect((await agent.head('/v2/team/app/manifests/v1').expect(200)).headers['docker-content-digest']).toBe(second.digest);
    await agent.head(`/v2/team/app/manifests/${first.digest}`).expect(200);
  });

  it('every referenced blob must be in this repository: MANIFEST_BLOB_UNKNOWN', async () => {
    const image = makeImage('missing');
    await pushBlob(agent, 'team/app', image.config);
    await pushBlob(agent, 'team/app', image.layers[0]);
    await pushBlob(agent, 'team/other', image.layers[1]);
    const res = await agent.put('/v2/team/app/manifests/v1').set('Content-Type', OCI_MANIFEST).send(image.manifest.toString()).expect(400);
    expect(res.body.errors[0].code).toBe('MANIFEST_BLOB_UNKNOWN');
    expect(JSON.stringify(res.body.errors[0].detail)).toContain(sha256(image.layers[1]));
    await agent.head('/v2/team/app/manifests/v1').expect(404);
    const noConfig = makeImage('noconfig');
    for (const layer of noConfig.layers) await pushBlob(agent, 'team/app', layer);
    expect((await agent.put('/v2/team/app/manifests/v1').set('Content-Type', OCI_MANIFEST).send(noConfig.manifest.toString()).expect(400)).body.errors[0].code).toBe(
      'MANIFEST_BLOB_UNKNOWN',
    );
  });

  it('an index needs its manifests in this repository: 400 MANIFEST_BLOB_UNKNOWN, then 201', async () => {
    const amd = makeImage('amd64');
    const arm = makeImage('arm64');
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: [
          { ...descriptor(OCI_MANIFEST, amd.manifest), platform: { architecture: 'amd64', os: 'linux' } },
          { ...descriptor(OCI_MANIFEST, arm.manifest), platform: { architecture: 'arm64', os: 'linux' } },
        ],
      }),
    );
    await pushImage(agent, 'team/app', amd);
    const missing = await agent.put('/v2/team/app/manifests/multi').set('Content-Type', OCI_INDEX).send(index.toString()).expect(400);
    expect(missing.body.errors[0].code).toBe('MANIFEST_BLOB_UNKNOWN');
    await pushImage(agent, 'team/app', arm);
    await agent.put('/v2/team/app/manifests/multi').set('Content-Type', OCI_INDEX).send(index.toString()).expect(201);
    const res = await agent.get('/v2/team/app/manifests/multi').buffer(true).parse(rawBody).expect(200);
    expect(res.headers['content-type']).toBe(OCI_INDEX);
    expect(Buffer.compare(res.body, index)).toBe(0);
  });

  it('accepts Docker schema 2 manifests and manifest lists and serves their types back', async () => {
    const config = '{"docker":true}';
    const layer = 'docker layer';
    await pushBlob(agent, 'team/docker', config);
    await pushBlob(agent, 'team/docker', layer);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: DOCKER_MANIFEST,
        config: descriptor('application/vnd.docker.container.image.v1+json', config),
        layers: [descriptor('application/vnd.docker.image.rootfs.diff.tar.gzip', layer)],
      }),
    );
    await agent.put('/v2/team/docker/manifests/v1').set('Content-Type', DOCKER_MANIFEST).send(manifest.toString()).expect(201);
    const list = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: DOCKER_MANIFEST_LIST, manifests: [descriptor(DOCKER_MANIFEST, manifest)] }));
    await agent.put('/v2/team/docker/manifests/list').set('Content-Type', DOCKER_MANIFEST_LIST).send(list.toString()).expect(201);
    expect((await agent.head('/v2/team/docker/manifests/v1').expect(200)).headers['content-type']).toBe(DOCKER_MANIFEST);
    expect((await agent.head('/v2/team/docker/manifests/list').expect(200)).headers['content-type']).toBe(DOCKER_MANIFEST_LIST);
  });

  it('accepts an artifact manifest with artifactType and the empty config, and answers OCI-Subject', async () => {
    const subject = makeImage('subject');
    await pushImage(agent, 'team/app', subject, 'v1');
    const empty = '{}';
    await pushBlob(agent, 'team/app', empty);
    const artifact = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        artifactType: 'application/vnd.example.sbom.v1',
        config: descriptor('application/vnd.oci.empty.v1+json', empty),
        layers: [],
        subject: descriptor(OCI_MANIFEST, subject.manifest),
      }),
    );
    const put = await agent.put(`/v2/team/app/manifests/${sha256(artifact)}`).set('Content-Type', OCI_MANIFEST).send(artifact.toString()).expect(201);
    expect(put.headers['oci-subject']).toBe(subject.digest);
  });

  it('ignores Content-Type parameters and takes the type from the body when the header is absent', async () => {
    const image = makeImage('params');
    await pushImage(agent, 'team/app', image);
    await agent.put('/v2/team/app/manifests/a').set('Content-Type', `${OCI_MANIFEST}; charset=utf-8`).send(image.manifest.toString()).expect(201);
    const server = await listen(makeApp(new MemoryStorage()));
    try {
      const res = await request(`${server.url}/v2/team/app/manifests/b`, { method: 'PUT', body: image.manifest });
      // No blobs in that registry: the manifest was parsed as the body's type and then checked.
      expect(JSON.parse(res.body.toString()).errors[0].code).toBe('MANIFEST_BLOB_UNKNOWN');
    } finally {
      await server.close();
    }
  });

  it.each([
    ['a body that is not JSON', OCI_MANIFEST, 'not json'],
    ['a JSON array', OCI_MANIFEST, '[]'],
    ['schemaVersion 1', OCI_MANIFEST, JSON.stringify({ schemaVersion: 1, mediaType: OCI_MANIFEST, config: {}, layers: [] })],
    ['a body mediaType that differs from Content-Type', OCI_INDEX, makeImage('mismatch').manifest.toString()],
    ['an unsupported media type', 'application/vnd.example.thing+json', JSON.stringify({ schemaVersion: 2, layers: [] })],
    ['an image manifest without layers', OCI_MANIFEST, JSON.stringify({ schemaVersion: 2, config: descriptor('a/b', 'x') })],
    ['an index without manifests', OCI_INDEX, JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX })],
    ['a descriptor with a malformed digest', OCI_MANIFEST, JSON.stringify({ schemaVersion: 2, config: { mediaType: 'a/b', size: 1, digest: 'sha256:xyz' }, layers: [] })],
    ['a descriptor without size', OCI_MANIFEST, JSON.stringify({ schemaVersion: 2, config: { mediaType: 'a/b', digest: sha256('x') }, layers: [] })],
    ['a deeply nested body', OCI_MANIFEST, `${'['.repeat(200_000)}${']'.repeat(200_000)}`],
    ['a deeply nested descriptor', OCI_MANIFEST, `{"schemaVersion":2,"layers":[],"config":${'{"x":'.repeat(100_000)}1${'}'.repeat(100_000)}}`],
    ['non-string annotations', OCI_MANIFEST, JSON.stringify({ schemaVersion: 2, config: descriptor('a/b', 'x'), layers: [], annotations: { a: 1 } })],
  ])('rejects %s with 400 MANIFEST_INVALID', async (_case, contentType, body) => {
    const res = await agent.put('/v2/team/app/manifests/v1').set('Content-Type', contentType).send(body).expect(400);
    expect(res.body.errors[0].code).toBe('MANIFEST_INVALID');
    await agent.head('/v2/team/app/manifests/v1').expect(404);
  });

  it('accepts a 4 MiB manifest and answers a larger one with 413', async () => {
    const image = makeImage('large');
    for (const blob of [image.config, ...image.layers]) await pushBlob(agent, 'team/app', blob);
    const padded = (size: number) => {
      const base = JSON.parse(image.manifest.toString());
      const skeleton = Buffer.byteLength(JSON.stringify({ ...base, annotations: { pad: '' } }));
      return Buffer.from(JSON.stringify({ ...base, annotations: { pad: 'x'.repeat(size - skeleton) } }));
    };
    const limit = 4 * 1024 * 1024;
    const fits = padded(limit);
    expect(fits.length).toBe(limit);
    await agent.put('/v2/team/app/manifests/big').set('Content-Type', OCI_MANIFEST).send(fits.toString()).expect(201);
    const res = await agent.put('/v2/team/app/manifests/huge').set('Content-Type', OCI_MANIFEST).send(padded(limit + 1).toString()).expect(413);
    expect(res.body.errors[0].code).toBe('MANIFEST_INVALID');
    await agent.head('/v2/team/app/manifests/huge').expect(404);
  });

  it('stops reading a streamed body past maxManifestSize', async () => {
    const server = await listen(makeApp(new MemoryStorage(), { maxManifestSize: 1000 }));
    try {
      const parts = Array.from({ length: 50 }, () => Buffer.alloc(100, 0x20));
      const res = await request(`${server.url}/v2/team/app/manifests/v1`, {
        method: 'PUT',
        headers: { 'Content-Type': OCI_MANIFEST },
        body: Readable.from(parts),
      });
      expect(res.status).toBe(413);
      expect(JSON.parse(res.body.toString()).errors[0].code).toBe('MANIFEST_INVALID');
    } finally {
      await server.close();
    }
  });

  it('a PUT to a malformed tag is TAG_INVALID, to a malformed digest DIGEST_INVALID; a GET of either, or of an unknown reference, is 404', async () => {
    const image = makeImage('refs');
    for (const blob of [image.config, ...image.layers]) await pushBlob(agent, 'team/app', blob);
    for (const bad of ['-leading-dash', '.dot', 'x'.repeat(129)]) {
      const res = await agent.put(`/v2/team/app/manifests/${bad}`).set('Content-Type', OCI_MANIFEST).send(image.manifest.toString()).expect(400);
      expect(res.body.errors[0].code).toBe('TAG_INVALID');
    }
    for (const bad of ['sha256:short', `sha1:${'0'.repeat(40)}`, 'sha256%3Azz']) {
      expect((await agent.get(`/v2/team/app/manifests/${bad}`).expect(404)).body.errors[0].code).toBe('MANIFEST_UNKNOWN');
      expect((await agent.put(`/v2/team/app/manifests/${bad}`).set('Content-Type', OCI_MANIFEST).send(image.manifest.toString()).expect(400)).body.errors[0].code).toBe(
        'DIGEST_INVALID',
      );
    }
    expect((await agent.get('/v2/team/app/manifests/nope').expect(404)).body.errors[0].code).toBe('MANIFEST_UNKNOWN');
    expect((await agent.get(`/v2/team/app/manifests/${sha256('nope')}`).expect(404)).body.errors[0].code).toBe('MANIFEST_UNKNOWN');
    await agent.head('/v2/never/pushed/manifests/latest').expect(404);
  });

  it('works behind the host app\'s JSON and form body parsers', async () => {
    const parsed = supertest(makeApp(new MemoryStorage(), { bodyParsers: true }));
    const image = makeImage('parsers');
    await pushImage(parsed, 'team/app', image, 'v1');
    const res = await parsed.get('/v2/team/app/manifests/v1').buffer(true).parse(rawBody).expect(200);
    expect(Buffer.compare(res.body, image.manifest)).toBe(0);
  });

  it('a manifest pushed to one repository is unknown in another', async () => {
    const image = makeImage('isolated');
    await pushImage(agent, 'team/app', image, 'v1');
    await agent.head(`/v2/team/other/manifests/${image.digest}`).expect(404);
    await agent.head('/v2/team/other/manifests/v1').expect(404);
  });

  it('other methods get 405 with Allow, whatever the reference', async () => {
    for (const reference of ['v1', '-not-a-tag']) {
      const res = await agent.post(`/v2/team/app/manifests/${reference}`).expect(405);
      expect(res.headers.allow).toBe('GET, HEAD, PUT, DELETE');
      expect(res.body.errors[0].code).toBe('UNSUPPORTED');
    }
  });

  it('Location carries the mount prefix', async () => {
    const prefixed = supertest(makeApp(new MemoryStorage(), { prefix: '/registry' }));
    const image = makeImage('prefix');
    for (const blob of [image.config, ...image.layers]) {
      await prefixed.post(`/registry/v2/team/app/blobs/uploads/?digest=${sha256(blob)}`).set('Content-Type', 'application/octet-stream').send(Buffer.from(blob)).expect(201);
    }
    const put = await prefixed.put('/registry/v2/team/app/manifests/v1').set('Content-Type', OCI_MANIFEST).send(image.manifest.toString()).expect(201);
    expect(put.headers.location).toBe(`/registry/v2/team/app/manifests/${image.digest}`);
  });
});

/** Collects a response body as bytes whatever its type (supertest would parse JSON-like types). */
const rawBody: Parameters<supertest.Test['parse']>[0] = (res, callback) => {
  const stream = res as unknown as NodeJS.ReadableStream;
  const chunks: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => chunks.push(chunk));
  stream.on('end', () => callback(null, Buffer.concat(chunks)));
  stream.on('error', (error: Error) => callback(error, undefined));
};

describe('manifest reference checks', () => {
  /** A MemoryStorage that counts document reads under `prefix` and the most of them running at once. */
  function countingStorage(prefix: string) {
    const storage = new MemoryStorage();
    const stats = { reads: 0, running: 0, most: 0 };
    const getDocument = storage.getDocument.bind(storage);
    storage.getDocument = async (key) => {
      if (!key.startsWith(prefix)) return getDocument(key);
      stats.reads++;
      stats.most = Math.max(stats.most, ++stats.running);
      try {
        // One turn of the event loop, so that look-ups started together overlap.
        await new Promise<void>((resolve) => setImmediate(resolve));
        return await getDocument(key);
      } finally {
        stats.running--;
      }
    };
    return { storage, stats };
  }

  it('looks up a layer listed 25,000 times once', async () => {
    const { storage, stats } = countingStorage('repositories/repo/_blobs/');
    const agent = supertest(makeApp(storage));
    const image = makeImage('many');
    for (const blob of [image.config, ...image.layers]) await pushBlob(agent, 'repo', blob);
    const layer = descriptor('application/vnd.oci.image.layer.v1.tar', image.layers[0]);
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: descriptor('application/vnd.oci.image.config.v1+json', image.config),
      layers: Array.from({ length: 25_000 }, () => layer),
    });
    stats.reads = 0;
    await agent.put('/v2/repo/manifests/many').set('Content-Type', OCI_MANIFEST).send(manifest).expect(201);
    // The config and the one layer, each once before the manifest is stored and once after (the check against a collection).
    expect(stats.reads).toBe(4);
  });

  it('checks the children of an index a bounded number at a time, and names the first one missing', async () => {
    const { storage, stats } = countingStorage('repositories/repo/_manifests/');
    const agent = supertest(makeApp(storage));
    const children: string[] = [];
    for (let index = 0; index < 60; index++) {
      const image = makeImage('child', { annotations: { index: String(index) } }, 1);
      if (index === 0) for (const blob of [image.config, ...image.layers]) await pushBlob(agent, 'repo', blob);
      await agent.put(`/v2/repo/manifests/${image.digest}`).set('Content-Type', OCI_MANIFEST).send(image.manifest.toString()).expect(201);
      children.push(image.manifest.toString());
    }
    const index = (manifests: string[]) =>
      JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: manifests.map((child) => descriptor(OCI_MANIFEST, child)) });
    stats.reads = 0;
    await agent.put('/v2/repo/manifests/all').set('Content-Type', OCI_INDEX).send(index([...children, ...children])).expect(201);
    // Each child twice (before storing, and after, against a collection), and the index's own revision twice.
    expect(stats.reads).toBe(2 * 60 + 2);
    expect(stats.most).toBeGreaterThan(1);
    expect(stats.most).toBeLessThanOrEqual(16);
    const missing = [makeImage('absent-1').manifest.toString(), makeImage('absent-2').manifest.toString()];
    const refused = await agent.put('/v2/repo/manifests/broken').set('Content-Type', OCI_INDEX).send(index([...children.slice(0, 30), ...missing, ...children.slice(30)])).expect(400);
    expect(refused.body.errors[0].code).toBe('MANIFEST_BLOB_UNKNOWN');
    expect(refused.body.errors[0].detail).toContain(sha256(missing[0]));
  });
});
