/** Access control: every route × method asks `authorize` for exactly its actions, before storage is touched. */
import type { IncomingMessage } from 'node:http';
import supertest from 'supertest';
import { bearerChallenge, MemoryStorage, type AccessRequest, type Action, type AuthorizationResult } from '../lib';
import type { HttpMethod } from '../lib/context';
import { makeApp, sha256 } from './support/http';
import { watchedStorage } from './support/watched-storage';

const METHODS: HttpMethod[] = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'];
const SESSION = '00000000-0000-4000-8000-000000000000';
const DIGEST = sha256('x');

/**
 * Every endpoint × method → the actions it must ask for on the path's repository; a method
 * missing from a row must be answered 405 without asking. One sample path per route.
 */
const ACCESS_TABLE: { path: string; repository: string; catalog?: true; actions: Partial<Record<HttpMethod, Action[]>> }[] = [
  { path: '/v2/', repository: '', actions: { GET: [], HEAD: [] } },
  { path: '/v2/team/app/blobs/uploads/', repository: 'team/app', actions: { POST: ['pull', 'push'] } },
  {
    path: `/v2/team/app/blobs/uploads/${SESSION}`,
    repository: 'team/app',
    actions: { GET: ['pull', 'push'], HEAD: ['pull', 'push'], PATCH: ['pull', 'push'], PUT: ['pull', 'push'], DELETE: ['pull', 'push'] },
  },
  { path: `/v2/team/app/blobs/${DIGEST}`, repository: 'team/app', actions: { GET: ['pull'], HEAD: ['pull'], DELETE: ['delete'] } },
  { path: '/v2/team/app/manifests/latest', repository: 'team/app', actions: { GET: ['pull'], HEAD: ['pull'], PUT: ['pull', 'push'], DELETE: ['delete'] } },
  { path: '/v2/team/app/tags/list', repository: 'team/app', actions: { GET: ['pull'] } },
  { path: `/v2/team/app/referrers/${DIGEST}`, repository: 'team/app', actions: { GET: ['pull'] } },
  { path: '/v2/_catalog', repository: '', catalog: true, actions: { GET: [] } },
];

function recordingAuthorize(result: AuthorizationResult) {
  const asked: AccessRequest[] = [];
  const authorize = async (_req: IncomingMessage, access: AccessRequest) => {
    asked.push(access);
    return result;
  };
  return { asked, authorize };
}

describe('access control', () => {
  it.each(ACCESS_TABLE.flatMap((row) => METHODS.map((method) => [method, row.path, row] as const)))(
    '%s %s asks authorize for exactly its actions before touching storage',
    async (method, path, row) => {
      const { storage, calls } = watchedStorage();
      const { asked, authorize } = recordingAuthorize('unauthenticated');
      const agent = supertest(makeApp(storage, { authorize }));
      const res = await agent[method.toLowerCase() as 'get'](path);
      const expected = row.actions[method];
      if (expected === undefined) {
        expect(res.status).toBe(405);
        expect(asked).toEqual([]);
      } else {
        expect(res.status).toBe(401);
        if (method !== 'HEAD') expect(res.body.errors[0].code).toBe('UNAUTHORIZED');
        expect(res.headers['www-authenticate']).toBe('Basic realm="registry"');
        expect(asked).toEqual([{ repository: row.repository, actions: expected, ...(row.catalog && { catalog: true }) }]);
      }
      expect(calls).toEqual([]);
    },
  );

  it('a cross-repository mount asks for pull on the source as well as push on the target', async () => {
    const { storage, calls } = watchedStorage();
    const { asked, authorize } = recordingAuthorize(true);
    const agent = supertest(makeApp(storage, { authorize }));
    await agent.post(`/v2/team/target/blobs/uploads/?mount=${DIGEST}&from=team/source`).expect(202);
    expect(asked).toEqual([
      { repository: 'team/target', actions: ['pull', 'push'] },
      { repository: 'team/source', actions: ['pull'] },
    ]);
    expect(calls.length).toBeGreaterThan(0);

    const refusing = recordingAuthorize('forbidden');
    const watched = watchedStorage();
    const denied = await supertest(makeApp(watched.storage, { authorize: (req, access) => (access.repository === 'team/source' ? refusing.authorize(req, access) : true) }))
      .post(`/v2/team/target/blobs/uploads/?mount=${DIGEST}&from=team/source`)
      .expect(403);
    expect(denied.body.errors[0].code).toBe('DENIED');
    expect(watched.calls).toEqual([]);
  });

  it('with authorize set, a mount without from does not reach into other repositories', async () => {
    const storage = new MemoryStorage();
    const agent = supertest(makeApp(storage, { authorize: () => true }));
    const data = Buffer.from('private');
    await agent.post(`/v2/a/blobs/uploads/?digest=${sha256(data)}`).set('Content-Type', 'application/octet-stream').send(data).expect(201);
    await agent.post(`/v2/b/blobs/uploads/?mount=${sha256(data)}`).expect(202);
    await agent.head(`/v2/b/blobs/${sha256(data)}`).expect(404);
  });

  it('false is 401 without credentials and 403 DENIED with them', async () => {
    const agent = supertest(makeApp(new MemoryStorage(), { authorize: () => false }));
    const anonymous = await agent.get(`/v2/team/app/blobs/${DIGEST}`).expect(401);
    expect(anonymous.body.errors[0].code).toBe('UNAUTHORIZED');
    const withCredentials = await agent.get(`/v2/team/app/blobs/${DIGEST}`).set('Authorization', 'Basic dTpw').expect(403);
    expect(withCredentials.body.errors[0].code).toBe('DENIED');
    expect(withCredentials.headers['www-authenticate']).toBeUndefined();
  });

  it("'unauthenticated' is 401 even with credentials (a wrong password)", async () => {
    const agent = supertest(makeApp(new MemoryStorage(), { authorize: () => 'unauthenticated' }));
    const res = await agent.get('/v2/').set('Authorization', 'Basic dTp3cm9uZw==').expect(401);
    expect(res.body.errors[0].code).toBe('UNAUTHORIZED');
  });

  it('sends the Bearer token-service challenge with the scope the request needs', async () => {
    const challenge = bearerChallenge({ realm: 'https://auth.example/token', service: 'registry.example' });
    const agent = supertest(makeApp(new MemoryStorage(), { authorize: () => false, challenge }));
    const root = await agent.get('/v2/').expect(401);
    expect(root.headers['www-authenticate']).toBe('Bearer realm="https://auth.example/token",service="registry.example"');
    const push = await agent.post(`/v2/team/app/blobs/uploads/?mount=${DIGEST}&from=team/base`).expect(401);
    expect(push.headers['www-authenticate']).toBe(
      'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:team/app:pull,push repository:team/base:pull"',
    );
  });

  it('a page script\'s background request (X-Requested-With: XMLHttpRequest) gets its 401 without a challenge', async () => {
    const agent = supertest(makeApp(new MemoryStorage(), { authorize: () => false }));
    const probe = await agent.delete(`/v2/team/app/manifests/${DIGEST}`).set('X-Requested-With', 'XMLHttpRequest').expect(401);
    expect(probe.body.errors[0].code).toBe('UNAUTHORIZED');
    expect(probe.headers['www-authenticate']).toBeUndefined();
    const plain = await agent.delete(`/v2/team/app/manifests/${DIGEST}`).expect(401);
    expect(plain.headers['www-authenticate']).toBe('Basic realm="registry"');
  });

  it('allowed requests are served as usual, and a custom string challenge is sent as is', async () => {
    const agent = supertest(
      makeApp(new MemoryStorage(), {
        authorize: async (req) => req.headers.authorization === 'Basic dTpw',
        challenge: 'Basic realm="my registry"',
      }),
    );
    const data = Buffer.from('layer');
    const refused = await agent.post(`/v2/team/app/blobs/uploads/?digest=${sha256(data)}`).send(data).expect(401);
    expect(refused.headers['www-authenticate']).toBe('Basic realm="my registry"');
    expect(refused.headers.connection).toBe('close');
    await agent.post(`/v2/team/app/blobs/uploads/?digest=${sha256(data)}`).set('Authorization', 'Basic dTpw').set('Content-Type', 'application/octet-stream').send(data).expect(201);
    const blob = await agent.get(`/v2/team/app/blobs/${sha256(data)}`).set('Authorization', 'Basic dTpw').buffer(true).expect(200);
    expect(blob.body.toString()).toBe('layer');
  });

  it('the catalog lists only the repositories the caller may pull, and pages over those', async () => {
    const storage = new MemoryStorage();
    const open = supertest(makeApp(storage));
    const data = Buffer.from('layer');
    for (const repository of ['alpha', 'secret/one', 'beta', 'secret/two', 'gamma']) {
      await open.post(`/v2/${repository}/blobs/uploads/?digest=${sha256(data)}`).set('Content-Type', 'application/octet-stream').send(data).expect(201);
    }
    const { asked, authorize } = recordingAuthorize(true);
    const agent = supertest(makeApp(storage, { authorize: (req, access) => (access.repository.startsWith('secret/') ? false : authorize(req, access)) }));
    const all = await agent.get('/v2/_catalog').expect(200);
    expect(all.body.repositories).toEqual(['alpha', 'beta', 'gamma']);
    expect(asked[0]).toEqual({ repository: '', actions: [], catalog: true });
    expect(asked.slice(1).every((access) => access.actions.join() === 'pull' && access.catalog)).toBe(true);
    const first = await agent.get('/v2/_catalog?n=2').expect(200);
    expect(first.body.repositories).toEqual(['alpha', 'beta']);
    expect(first.headers.link).toBe('</v2/_catalog?n=2&last=beta>; rel="next"');
    const second = await agent.get('/v2/_catalog?n=2&last=beta').expect(200);
    expect(second.body.repositories).toEqual(['gamma']);
    expect(second.headers.link).toBeUndefined();
  });

  it('an authorize that throws answers 500 without touching storage', async () => {
    const { storage, calls } = watchedStorage();
    const agent = supertest(
      makeApp(storage, {
        authorize: () => {
          throw new Error('auth backend down');
        },
      }),
    );
    const res = await agent.get(`/v2/team/app/blobs/${DIGEST}`).expect(500);
    expect(res.body.errors[0].code).toBe('UNKNOWN');
    expect(calls).toEqual([]);
  });
});
