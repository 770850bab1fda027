/** The auth examples (Basic from a users file, Bearer through the token service), pushed and pulled through as a client would. */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import supertest from 'supertest';
import { createBasicAuthApp, userLine } from '../examples/basic-auth';
import { createBearerAuthApp } from '../examples/bearer-auth';
import { sha256 } from './support/http';

const USERS = [userLine('alice', 'alice secret'), '# a comment', '', userLine('bob', 'bob secret')].join('\n');
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
const ALICE = basic('alice', 'alice secret');
const BOB = basic('bob', 'bob secret');

describe('example: Basic auth with a users file', () => {
  let root: string;
  let agent: ReturnType<typeof supertest>;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'oci-basic-'));
    agent = supertest(createBasicAuthApp(root, USERS));
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  it('asks for credentials, refuses wrong ones, and lets users push only under their own name', async () => {
    const anonymous = await agent.get('/v2/').expect(401);
    expect(anonymous.headers['www-authenticate']).toBe('Basic realm="example registry"');
    expect(anonymous.body.errors[0].code).toBe('UNAUTHORIZED');
    await agent.get('/v2/').set('Authorization', basic('alice', 'wrong')).expect(401);
    await agent.get('/v2/').set('Authorization', basic('mallory', 'alice secret')).expect(401);
    await agent.get('/v2/').set('Authorization', ALICE).expect(200);

    const data = Buffer.from('alice layer');
    const push = (repository: string, auth: string) =>
      agent.post(`/v2/${repository}/blobs/uploads/?digest=${sha256(data)}`).set('Authorization', auth).set('Content-Type', 'application/octet-stream').send(data);
    await push('alice/app', ALICE).expect(201);
    const denied = await push('alice/app', BOB).expect(403);
    expect(denied.body.errors[0].code).toBe('DENIED');
    await agent.get(`/v2/alice/app/blobs/${sha256(data)}`).set('Authorization', BOB).expect(200);
    await agent.delete(`/v2/alice/app/blobs/${sha256(data)}`).set('Authorization', BOB).expect(403);
    await agent.delete(`/v2/alice/app/blobs/${sha256(data)}`).set('Authorization', ALICE).expect(202);
  });
});

describe('example: the Bearer token-service flow', () => {
  let root: string;
  let agent: ReturnType<typeof supertest>;
  const signingKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const start = (anonymousPull: boolean) => {
    agent = supertest(createBearerAuthApp({ root, usersText: USERS, signingKey, publicUrl: 'http://registry.test', anonymousPull }));
  };
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'oci-bearer-'));
    start(false);
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  /** Follows a 401's Bearer challenge as docker does: asks the realm for a token for the scope. */
  async function tokenFor(challenge: string, auth?: string): Promise<string> {
    const fields = Object.fromEntries([...challenge.matchAll(/(\w+)="([^"]*)"/g)].map((match) => [match[1], match[2]]));
    expect(challenge.startsWith('Bearer ')).toBe(true);
    const realm = new URL(fields.realm);
    const request = agent.get(realm.pathname).query({ service: fields.service, ...(fields.scope ? { scope: fields.scope } : {}) });
    const res = await (auth ? request.set('Authorization', auth) : request).expect(200);
    expect(res.body.token).toBe(res.body.access_token);
    return res.body.token as string;
  }
  const bearer = (token: string) => `Bearer ${token}`;

  it('401 with a challenge, a token from the realm, then the request succeeds; scopes are checked per repository and action', async () => {
    const root401 = await agent.get('/v2/').expect(401);
    expect(root401.headers['www-authenticate']).toBe('Bearer realm="http://registry.test/token",service="example-registry"');
    const loginToken = await tokenFor(root401.headers['www-authenticate'], ALICE);
    await agent.get('/v2/').set('Authorization', bearer(loginToken)).expect(200);

    // A push needs a token with pull,push on the repository: the first try says which scope, and that the token lacks it.
    const refused = await agent.post('/v2/alice/app/blobs/uploads/').set('Authorization', bearer(loginToken)).expect(401);
    expect(refused.headers['www-authenticate']).toBe(
      'Bearer realm="http://registry.test/token",service="example-registry",scope="repository:alice/app:pull,push",error="insufficient_scope"',
    );
    const pushToken = await tokenFor(refused.headers['www-authenticate'], ALICE);
    const data = Buffer.from('bearer layer');
    await agent.post(`/v2/alice/app/blobs/uploads/?digest=${sha256(data)}`).set('Authorization', bearer(pushToken)).set('Content-Type', 'application/octet-stream').send(data).expect(201);
    // The token is for alice/app only.
    await agent.post('/v2/alice/other/blobs/uploads/').set('Authorization', bearer(pushToken)).expect(401);

    // Bob may pull alice/app but the token service does not grant him push or delete there.
    const bobToken = await tokenFor(refused.headers['www-authenticate'], BOB);
    await agent.get(`/v2/alice/app/blobs/${sha256(data)}`).set('Authorization', bearer(bobToken)).expect(200);
    await agent.post('/v2/alice/app/blobs/uploads/').set('Authorization', bearer(bobToken)).expect(401);
    const bobAll = await tokenFor('Bearer realm="http://registry.test/token",service="example-registry",scope="repository:alice/app:*"', BOB);
    await agent.delete(`/v2/alice/app/blobs/${sha256(data)}`).set('Authorization', bearer(bobAll)).expect(401);

    // `*` (what skopeo and podman ask for to delete) grants delete under one's own name.
    const aliceAll = await tokenFor('Bearer realm="http://registry.test/token",service="example-registry",scope="repository:alice/app:*"', ALICE);
    await agent.delete(`/v2/alice/app/blobs/${sha256(data)}`).set('Authorization', bearer(aliceAll)).expect(202);

    // A tampered token is no token.
    const [header, payload, signature] = pushToken.split('.');
    const claims = { ...JSON.parse(Buffer.from(payload, 'base64url').toString()), sub: 'bob' };
    const forged = `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${signature}`;
    const invalid = await agent.get(`/v2/alice/app/blobs/${sha256(data)}`).set('Authorization', bearer(forged)).expect(401);
    expect(invalid.headers['www-authenticate']).toContain('error="invalid_token"');
    await agent.get('/token').expect(401);
    await agent.get('/token').set('Authorization', basic('alice', 'wrong')).expect(401);
  });

  it('lists the catalog with the registry:catalog:* scope, and pulls anonymously only with anonymousPull', async () => {
    const data = Buffer.from('listed layer');
    const pushToken = await tokenFor('Bearer realm="http://registry.test/token",service="example-registry",scope="repository:alice/app:pull,push"', ALICE);
    await agent.post(`/v2/alice/app/blobs/uploads/?digest=${sha256(data)}`).set('Authorization', bearer(pushToken)).set('Content-Type', 'application/octet-stream').send(data).expect(201);

    const catalog401 = await agent.get('/v2/_catalog').set('Authorization', bearer(pushToken)).expect(401);
    expect(catalog401.headers['www-authenticate']).toContain('scope="registry:catalog:*",error="insufficient_scope"');
    const listToken = await tokenFor(catalog401.headers['www-authenticate'], BOB);
    expect((await agent.get('/v2/_catalog').set('Authorization', bearer(listToken)).expect(200)).body.repositories).toEqual(['alice/app']);

    // Without anonymousPull a caller without credentials gets no token.
    await agent.get('/token').query({ service: 'example-registry', scope: `repository:alice/app:pull` }).expect(401);
    start(true);
    const blob401 = await agent.get(`/v2/alice/app/blobs/${sha256(data)}`).expect(401);
    const anonymous = await tokenFor(blob401.headers['www-authenticate']);
    await agent.get(`/v2/alice/app/blobs/${sha256(data)}`).set('Authorization', bearer(anonymous)).expect(200);
    const anonymousPush = await tokenFor('Bearer realm="http://registry.test/token",service="example-registry",scope="repository:alice/app:pull,push"');
    await agent.post('/v2/alice/app/blobs/uploads/').set('Authorization', bearer(anonymousPush)).expect(401);
    const anonymousList = await tokenFor('Bearer realm="http://registry.test/token",service="example-registry",scope="registry:catalog:*"');
    expect((await agent.get('/v2/_catalog').set('Authorization', bearer(anonymousList)).expect(200)).body.repositories).toEqual(['alice/app']);
  });
});
