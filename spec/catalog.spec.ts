/** The catalog: listing, paging and what the caller may pull. */
import supertest from 'supertest';
import { MemoryStorage, type StorageAdapter } from '../lib';
import { builtInStorages } from './support/storages';
import { makeApp, sha256 } from './support/http';
import { makeImage, pushBlob, pushImage } from './support/oci';

// Names chosen so that the names' order differs from the order of their storage keys.
const repositories = ['team/app', 'team/app/nested', 'team/app-x', 'team/app.y', 'alpha', 'zeta/one'];

describe.each(builtInStorages)('_catalog over %s', (_name, makeStorage) => {
  let agent: ReturnType<typeof supertest>;
  let storage: StorageAdapter;
  let cleanup: () => Promise<void>;

  beforeEach(async () => {
    ({ storage, cleanup } = await makeStorage());
    agent = supertest(makeApp(storage));
    const image = makeImage('catalog');
    for (const [index, repository] of repositories.entries()) {
      // Some get a whole image, some only a blob, one only a mounted blob: each counts as a repository.
      if (index % 3 === 0) await pushImage(agent, repository, image, 'v1');
      else if (index % 3 === 1) await pushBlob(agent, repository, `blob of ${repository}`);
      else await agent.post(`/v2/${repository}/blobs/uploads/?mount=${sha256(image.config)}&from=team/app`).expect(201);
    }
  });
  afterEach(() => cleanup());

  it('lists every repository sorted, and nothing that was never pushed to', async () => {
    const res = await agent.get('/v2/_catalog').expect(200);
    expect(res.body).toEqual({ repositories: [...repositories].sort() });
    expect(res.headers.link).toBeUndefined();
  });

  it('pages with n and last and a Link header', async () => {
    const sorted = [...repositories].sort();
    const first = await agent.get('/v2/_catalog?n=4').expect(200);
    expect(first.body.repositories).toEqual(sorted.slice(0, 4));
    expect(first.headers.link).toBe(`</v2/_catalog?n=4&last=${encodeURIComponent(sorted[3])}>; rel="next"`);
    const next = /^<([^>]+)>/.exec(first.headers.link)![1];
    const second = await agent.get(next).expect(200);
    expect(second.body.repositories).toEqual(sorted.slice(4));
    expect(second.headers.link).toBeUndefined();
    expect((await agent.get('/v2/_catalog?n=0').expect(200)).body.repositories).toEqual([]);
  });

  it('a new process over the same storage sees the same catalog', async () => {
    const again = supertest(makeApp(storage));
    expect((await again.get('/v2/_catalog').expect(200)).body.repositories).toEqual([...repositories].sort());
  });
});

describe('_catalog routing', () => {
  it('is not taken for a repository, and only GET is served', async () => {
    const agent = supertest(makeApp(new MemoryStorage(), { prefix: '/r' }));
    expect((await agent.get('/r/v2/_catalog').expect(200)).body).toEqual({ repositories: [] });
    const res = await agent.post('/r/v2/_catalog').expect(405);
    expect(res.headers.allow).toBe('GET');
    expect((await agent.get('/r/v2/_catalog/tags/list').expect(400)).body.errors[0].code).toBe('NAME_INVALID');
  });
});
