import { randomBytes } from 'node:crypto';
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
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'oci-bearer-'));
    agent = supertest(createBearerAuthApp({ root, usersText: USERS, secret: randomBytes(32), publicUrl: 'http://registry.test' }));
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  /** Follows a 401's Bearer challenge as docker does: asks the realm for a token for the scope. */
  async function tokenFor(challenge: string, auth: string): Promise<string> {
    const fields = Object.fromEntries([...challenge.matchAll(/(\w+)="([^"]*)"/g)].map((match) => [match[1], match[2]]));
    expect(challenge.startsWith('Bearer ')).toBe(true);
    const realm = new URL(fields.realm);
    const res = await agent.get(realm.pathname).query({ service: fields.service, ...(fields.scope ? { scope: fields.scope } : {}) }).set('Authorization', auth).expect(200);
    expect(res.body.token).toBe(res.body.access_token);
    return res.body.token as string;
  }

  it('401 with a challenge, a token from the realm, then the request succeeds; scopes are checked per repository and action', async () => {
    const root401 = await agent.get('/v2/').expect(401);
    expect(root401.headers['www-authenticate']).toBe('Bearer realm="http://registry.test/token",service="example-registry"');
    const loginToken = await tokenFor(root401.headers['www-authenticate'], ALICE);
    await agent.get('/v2/').set('Authorization', `Bearer ${loginToken}`).expect(200);

    // A push needs a token with pull,push on the repository: the first try says which scope.
    const refused = await agent.post('/v2/alice/app/blobs/uploads/').set('Authorization', `Bearer ${loginToken}`).expect(401);
    expect(refused.headers['www-authenticate']).toContain('scope="repository:alice/app:pull,push"');
    const pushToken = await tokenFor(refused.headers['www-authenticate'], ALICE);
    const data = Buffer.from('bearer layer');
    await agent.post(`/v2/alice/app/blobs/uploads/?digest=${sha256(data)}`).set('Authorization', `Bearer ${pushToken}`).set('Content-Type', 'application/octet-stream').send(data).expect(201);
    // The token is for alice/app only.
    await agent.post('/v2/alice/other/blobs/uploads/').set('Authorization', `Bearer ${pushToken}`).expect(401);

    // Bob may pull alice/app but the token service does not grant him push there.
    const bobToken = await tokenFor(refused.headers['www-authenticate'], BOB);
    await agent.get(`/v2/alice/app/blobs/${sha256(data)}`).set('Authorization', `Bearer ${bobToken}`).expect(200);
    await agent.post('/v2/alice/app/blobs/uploads/').set('Authorization', `Bearer ${bobToken}`).expect(401);

    // A forged or tampered token is no token.
    const [payload, signature] = pushToken.split('.');
    const forged = `${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), sub: 'bob' })).toString('base64url')}.${signature}`;
    await agent.get(`/v2/alice/app/blobs/${sha256(data)}`).set('Authorization', `Bearer ${forged}`).expect(401);
    await agent.get('/token').expect(401);
  });
});
