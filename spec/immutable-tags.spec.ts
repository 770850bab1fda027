/** Immutable tags over each built-in adapter: pushes and deletes that would move one are refused; the same manifest goes again. */
import supertest from 'supertest';
import { FileSystemStorage, type StorageAdapter } from '../lib';
import { makeApp } from './support/http';
import { makeImage, OCI_MANIFEST, pushImage } from './support/oci';
import { builtInStorages } from './support/storages';
import { useTempDir } from './support/temp-dir';

const put = (agent: ReturnType<typeof supertest>, repository: string, reference: string, manifest: Buffer) =>
  agent.put(`/v2/${repository}/manifests/${reference}`).set('Content-Type', OCI_MANIFEST).send(manifest.toString());

describe.each(builtInStorages)('immutable tags over %s', (_name, makeStorage) => {
  let storage: StorageAdapter;
  let cleanup: () => Promise<void>;
  const one = makeImage('one');
  const two = makeImage('two');

  beforeEach(async () => ({ storage, cleanup } = await makeStorage()));
  afterEach(() => cleanup());

  it('refuses to move a matching tag with 403 DENIED saying where it points, and takes the same manifest again', async () => {
    const agent = supertest(makeApp(storage, { immutableTags: /^v\d+$/ }));
    await pushImage(agent, 'app', one, 'v1');
    await pushImage(agent, 'app', two);
    const refused = await put(agent, 'app', 'v1', two.manifest).expect(403);
    expect(refused.body.errors).toEqual([
      {
        code: 'DENIED',
        message: `tag v1 in app is immutable: it names ${one.digest} and cannot be moved to ${two.digest}`,
        detail: { reason: 'immutable tag', repository: 'app', tag: 'v1', digest: one.digest },
      },
    ]);
    expect((await agent.head('/v2/app/manifests/v1').expect(200)).headers['docker-content-digest']).toBe(one.digest);
    await put(agent, 'app', 'v1', one.manifest).expect(201);
    // Tags the expression does not match move freely.
    await put(agent, 'app', 'latest', one.manifest).expect(201);
    await put(agent, 'app', 'latest', two.manifest).expect(201);
  });

  it('refuses to delete the tag, or the manifest it names by digest; other tags and manifests go', async () => {
    const agent = supertest(makeApp(storage, { immutableTags: (repository, tag) => repository.startsWith('release/') && tag !== 'latest' }));
    await pushImage(agent, 'release/app', one, '1.0');
    await put(agent, 'release/app', 'latest', one.manifest).expect(201);
    const tagDelete = await agent.delete('/v2/release/app/manifests/1.0').expect(403);
    expect(tagDelete.body.errors[0].message).toBe('tag 1.0 in release/app is immutable and cannot be deleted');
    const manifestDelete = await agent.delete(`/v2/release/app/manifests/${one.digest}`).expect(403);
    expect(manifestDelete.body.errors[0].code).toBe('DENIED');
    // The refused manifest delete removed nothing, not even the mutable tag.
    expect((await agent.get('/v2/release/app/tags/list').expect(200)).body.tags).toEqual(['1.0', 'latest']);
    await agent.delete('/v2/release/app/manifests/latest').expect(202);
    await pushImage(agent, 'dev/app', one, '1.0');
    await agent.delete(`/v2/dev/app/manifests/${one.digest}`).expect(202);
  });
});

describe('immutable tags across instances', () => {
  const root = useTempDir('oci-immutable-');

  it('of pushes racing through two routers to set a new tag, one wins and the tag never moves after', async () => {
    const images = Array.from({ length: 6 }, (_, index) => makeImage(`racer ${index}`));
    const routers = [0, 1].map(() => supertest(makeApp(new FileSystemStorage({ root: root() }), { immutableTags: /^release$/ })));
    for (const image of images) await pushImage(routers[0], 'app', image);
    const statuses = await Promise.all(images.map((image, index) => put(routers[index % 2], 'app', 'release', image.manifest).then((res) => res.status)));
    expect(statuses.filter((status) => status === 201)).toHaveLength(1);
    expect(statuses.filter((status) => status === 403)).toHaveLength(images.length - 1);
    const winner = images[statuses.indexOf(201)];
    for (const agent of routers) expect((await agent.head('/v2/app/manifests/release').expect(200)).headers['docker-content-digest']).toBe(winner.digest);
  });
});
