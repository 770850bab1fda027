/** Tag listing and paging. */
import supertest from 'supertest';
import { MemoryStorage } from '../lib';
import { makeApp, sha256 } from './support/http';
import { makeImage, OCI_MANIFEST, pushBlob, pushImage } from './support/oci';

describe('tags/list', () => {
  let agent: ReturnType<typeof supertest>;
  const image = makeImage('tagged');
  // Deliberately out of order, with cases and characters whose byte order differs from a naive sort.
  const tags = ['v2', 'latest', 'V1', '1.0', '1.0-rc', '_private', 'v10', 'a.b_c-d'];

  beforeEach(async () => {
    agent = supertest(makeApp(new MemoryStorage()));
    await pushImage(agent, 'team/app', image);
    for (const tag of tags) await agent.put(`/v2/team/app/manifests/${tag}`).set('Content-Type', OCI_MANIFEST).send(image.manifest.toString()).expect(201);
  });

  it('lists every tag sorted in code unit order', async () => {
    const res = await agent.get('/v2/team/app/tags/list').expect(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.body).toEqual({ name: 'team/app', tags: [...tags].sort() });
    expect(res.headers.link).toBeUndefined();
  });

  it('pages with n and last, following the Link header to the end', async () => {
    const seen: string[] = [];
    let url: string | undefined = '/v2/team/app/tags/list?n=3';
    let pages = 0;
    while (url) {
      const res = await agent.get(url).expect(200);
      expect(res.body.tags.length).toBeLessThanOrEqual(3);
      seen.push(...res.body.tags);
      const link = res.headers.link as string | undefined;
      url = link ? /^<([^>]+)>; rel="next"$/.exec(link)![1] : undefined;
      pages++;
    }
    expect(seen).toEqual([...tags].sort());
    expect(pages).toBe(3);
  });

  it('n alone gives the first n; last alone gives all after it; n=0 gives none and no Link', async () => {
    const sorted = [...tags].sort();
    const first = await agent.get('/v2/team/app/tags/list?n=2').expect(200);
    expect(first.body.tags).toEqual(sorted.slice(0, 2));
    expect(first.headers.link).toBe(`</v2/team/app/tags/list?n=2&last=${encodeURIComponent(sorted[1])}>; rel="next"`);
    expect((await agent.get(`/v2/team/app/tags/list?last=${sorted[4]}`).expect(200)).body.tags).toEqual(sorted.slice(5));
    const none = await agent.get('/v2/team/app/tags/list?n=0').expect(200);
    expect(none.body.tags).toEqual([]);
    expect(none.headers.link).toBeUndefined();
    const exact = await agent.get(`/v2/team/app/tags/list?n=${tags.length}`).expect(200);
    expect(exact.body.tags).toEqual(sorted);
    expect(exact.headers.link).toBeUndefined();
  });

  it('rejects a malformed n with a 400', async () => {
    for (const bad of ['-1', 'abc', '1.5']) await agent.get(`/v2/team/app/tags/list?n=${bad}`).expect(400);
  });

  it('an unknown repository is 404 NAME_UNKNOWN; a repository with blobs only has no tags', async () => {
    const res = await agent.get('/v2/team/nothing/tags/list').expect(404);
    expect(res.body.errors[0].code).toBe('NAME_UNKNOWN');
    await pushBlob(agent, 'team/blobs-only', 'some bytes');
    expect((await agent.get('/v2/team/blobs-only/tags/list').expect(200)).body).toEqual({ name: 'team/blobs-only', tags: [] });
  });

  it('tags of a repository are not mixed with those of a nested one', async () => {
    await pushImage(agent, 'team/app/nested', image, 'nested-only');
    expect((await agent.get('/v2/team/app/tags/list').expect(200)).body.tags).not.toContain('nested-only');
    expect((await agent.get('/v2/team/app/nested/tags/list').expect(200)).body.tags).toEqual(['nested-only']);
  });

  it('the Link carries the mount prefix', async () => {
    const prefixed = supertest(makeApp(new MemoryStorage(), { prefix: '/registry' }));
    for (const blob of [image.config, ...image.layers]) {
      await prefixed.post(`/registry/v2/team/app/blobs/uploads/?digest=${sha256(blob)}`).set('Content-Type', 'application/octet-stream').send(Buffer.from(blob)).expect(201);
    }
    for (const tag of ['a', 'b']) await prefixed.put(`/registry/v2/team/app/manifests/${tag}`).set('Content-Type', OCI_MANIFEST).send(image.manifest.toString()).expect(201);
    const res = await prefixed.get('/registry/v2/team/app/tags/list?n=1').expect(200);
    expect(res.headers.link).toBe('</registry/v2/team/app/tags/list?n=1&last=a>; rel="next"');
    expect((await prefixed.get('/registry/v2/team/app/tags/list?n=1&last=a').expect(200)).body.tags).toEqual(['b']);
  });
});
