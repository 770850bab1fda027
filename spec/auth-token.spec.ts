/**
 * The token protocol in the package: tokenAuthorize over every kind of key and claim, and
 * createTokenService's GET and OAuth2 POST endpoints, each against the other and against tokens
 * signed directly with jose (as other token services sign them).
 */
import express from 'express';
import fc from 'fast-check';
import { createPrivateKey, createPublicKey, generateKeyPairSync, X509Certificate, type KeyObject } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { SignJWT, decodeJwt, decodeProtectedHeader, type JWK } from 'jose';
import supertest from 'supertest';
import type { AccessRequest, AuthorizationResult } from '../lib';
import { createTokenService, grants, keyIds, libtrustKeyId, tokenAuthorize, type ResourceActions, type TokenAuthorizeOptions } from '../lib/auth';
import { describeWithPrograms } from './support/binaries';
import { makeCertificateChain, type CertificateChain } from './support/certificates';
import { useTempDir } from './support/temp-dir';

const SERVICE = 'registry.test';
const ISSUER = 'https://auth.test/token';
const T0 = 1_900_000_000;
const at = (seconds: number) => () => seconds * 1000;
const PULL: AccessRequest = { repository: 'team/app', actions: ['pull'] };

const ec = () => generateKeyPairSync('ec', { namedCurve: 'P-256' });

/** Signs a registry token directly with jose, as any token service would. */
function sign(key: KeyObject, alg: string, claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}, iat = T0): Promise<string> {
  const defaults = { iss: ISSUER, aud: SERVICE, sub: 'alice', iat, nbf: iat, exp: iat + 300, access: [{ type: 'repository', name: 'team/app', actions: ['pull'] }] };
  return new SignJWT({ ...defaults, ...claims }).setProtectedHeader({ alg, typ: 'JWT', ...header }).sign(key);
}

/** Asks `options`' authorize about `access` for a request that carries `token`. */
async function ask(options: Omit<TokenAuthorizeOptions, 'service' | 'issuer'>, token: string, access: AccessRequest = PULL): Promise<AuthorizationResult> {
  const authorize = tokenAuthorize({ service: SERVICE, issuer: ISSUER, now: at(T0 + 10), ...options });
  return authorize({ headers: { authorization: `Bearer ${token}` } } as IncomingMessage, access);
}

describe('tokenAuthorize', () => {
  it.each([
    ['RS256', () => generateKeyPairSync('rsa', { modulusLength: 2048 })],
    ['ES256', ec],
    ['EdDSA', () => generateKeyPairSync('ed25519')],
  ] as const)('accepts %s tokens with the key as a JWKS entry, a PEM public key, or a key object', async (alg, generate) => {
    const { privateKey, publicKey } = generate();
    const other = ec().publicKey;
    const jwks = { keys: [{ ...(publicKey.export({ format: 'jwk' }) as JWK), kid: 'signer-1' }, { ...(other.export({ format: 'jwk' }) as JWK), kid: 'other' }] };
    expect(await ask({ keys: { jwks } }, await sign(privateKey, alg, {}, { kid: 'signer-1' }))).toBe(true);
    expect(await ask({ keys: { jwks } }, await sign(privateKey, alg, {}, { kid: 'other' }))).toBe('invalid_token');
    const pem = publicKey.export({ type: 'spki', format: 'pem' }) as string;
    // One key: a token without kid is checked against it; several: the kid (here the RFC 7638 thumbprint) picks one.
    expect(await ask({ keys: { publicKeys: [pem] } }, await sign(privateKey, alg))).toBe(true);
    expect(await ask({ keys: { publicKeys: [other, publicKey] } }, await sign(privateKey, alg))).toBe('invalid_token');
    const [thumbprint] = await keyIds(publicKey);
    expect(await ask({ keys: { publicKeys: [other, publicKey] } }, await sign(privateKey, alg, {}, { kid: thumbprint }))).toBe(true);
    expect(await ask({ keys: { publicKeys: [other] } }, await sign(privateKey, alg))).toBe('invalid_token');
  });

  it('checks iss, aud, and exp, nbf and iat with 60 s of skew; a failing token is invalid_token, no token asks for one', async () => {
    const { privateKey, publicKey } = ec();
    const keys = { publicKeys: [publicKey] };
    const token = await sign(privateKey, 'ES256');
    expect(await ask({ keys }, token)).toBe(true);
    expect(await ask({ keys }, await sign(privateKey, 'ES256', { iss: 'https://other.test' }))).toBe('invalid_token');
    expect(await ask({ keys }, await sign(privateKey, 'ES256', { aud: 'other-registry' }))).toBe('invalid_token');
    expect(await ask({ keys, now: at(T0 + 300 + 59) }, token)).toBe(true);
    expect(await ask({ keys, now: at(T0 + 300 + 61) }, token)).toBe('invalid_token');
    expect(await ask({ keys, now: at(T0 - 59) }, token)).toBe(true);
    expect(await ask({ keys, now: at(T0 - 61) }, token)).toBe('invalid_token');
    expect(await ask({ keys, clockSkew: 0, now: at(T0 + 301) }, token)).toBe('invalid_token');
    // iat in the future (nbf in force) and a token without exp.
    expect(await ask({ keys }, await sign(privateKey, 'ES256', { nbf: T0, iat: T0 + 200 }))).toBe('invalid_token');
    const noExpiry = await new SignJWT({ access: [] }).setProtectedHeader({ alg: 'ES256' }).setIssuer(ISSUER).setAudience(SERVICE).sign(privateKey);
    expect(await ask({ keys }, noExpiry, { repository: '', actions: [] })).toBe('invalid_token');
    const authorize = tokenAuthorize({ service: SERVICE, issuer: ISSUER, keys });
    expect(await authorize({ headers: {} } as IncomingMessage, PULL)).toBe('unauthenticated');
    expect(await authorize({ headers: { authorization: 'Basic dTpw' } } as IncomingMessage, PULL)).toBe('unauthenticated');
  });

  it('refuses HS256 signed with the public key, alg none, a malformed access claim, and garbage', async () => {
    const { privateKey, publicKey } = ec();
    const keys = { publicKeys: [publicKey] };
    const secret = Buffer.from(publicKey.export({ type: 'spki', format: 'pem' }) as string);
    const hs = await new SignJWT({ access: [] }).setProtectedHeader({ alg: 'HS256' }).setIssuer(ISSUER).setAudience(SERVICE).setIssuedAt(T0).setExpirationTime(T0 + 300).sign(secret);
    expect(await ask({ keys }, hs)).toBe('invalid_token');
    expect(await ask({ keys, algorithms: ['HS256', 'ES256'] }, hs)).toBe('invalid_token');
    const [, payload] = (await sign(privateKey, 'ES256')).split('.');
    expect(await ask({ keys }, `${Buffer.from('{"alg":"none"}').toString('base64url')}.${payload}.`)).toBe('invalid_token');
    expect(await ask({ keys }, await sign(privateKey, 'ES256', { access: [{ type: 'repository', name: 'team/app', actions: 'pull' }] }))).toBe('invalid_token');
    expect(await ask({ keys }, 'not.a.token')).toBe('invalid_token');
    expect(await ask({ keys }, await sign(privateKey, 'ES256', { token_use: 'refresh' }))).toBe('invalid_token');
  });

  it('grants per repository and action, * for every action, and the catalog only with registry:catalog:*', async () => {
    const { privateKey, publicKey } = ec();
    const keys = { publicKeys: [publicKey] };
    const token = await sign(privateKey, 'ES256', {
      access: [
        { type: 'repository', name: 'team/app', actions: ['pull', 'push'] },
        { type: 'repository', name: 'alice/app', actions: ['*'] },
        { type: 'repository', name: 'bob/app', actions: [] },
      ],
    });
    expect(await ask({ keys }, token, { repository: 'team/app', actions: ['pull', 'push'] })).toBe(true);
    expect(await ask({ keys }, token, { repository: 'team/app', actions: ['delete'] })).toBe('insufficient_scope');
    expect(await ask({ keys }, token, { repository: 'alice/app', actions: ['delete'] })).toBe(true);
    expect(await ask({ keys }, token, { repository: 'bob/app', actions: ['pull'] })).toBe('insufficient_scope');
    expect(await ask({ keys }, token, { repository: 'team/app/sub', actions: ['pull'] })).toBe('insufficient_scope');
    expect(await ask({ keys }, token, { repository: '', actions: [] })).toBe(true);
    expect(await ask({ keys }, token, { repository: '', actions: [], catalog: true })).toBe('insufficient_scope');
    const lister = await sign(privateKey, 'ES256', { access: [{ type: 'registry', name: 'catalog', actions: ['*'] }] });
    expect(await ask({ keys }, lister, { repository: '', actions: [], catalog: true })).toBe(true);
    expect(await ask({ keys }, lister, { repository: 'any/name', actions: ['pull'], catalog: true })).toBe(true);
    expect(await ask({ keys }, lister, { repository: 'any/name', actions: ['pull'] })).toBe('insufficient_scope');
  });

  describeWithPrograms(['openssl'], 'with root certificates', () => {
    const dir = useTempDir('oci-certs-');
    let chain: CertificateChain;
    let stranger: CertificateChain;
    beforeEach(async () => {
      [chain, stranger] = await Promise.all([makeCertificateChain(dir(), 'trusted'), makeCertificateChain(dir(), 'stranger')]);
    });
    const der = (pem: string) => new X509Certificate(pem).raw.toString('base64');

    it('accepts an ES256 token whose x5c chain leads to a root, as the reference registry does, and refuses others', async () => {
      const key = createPrivateKey(chain.leafKeyPem);
      const now = Math.floor(Date.now() / 1000);
      const keys = { rootCertificates: chain.caPem };
      const options = { keys, now: Date.now };
      const signed = (x5c: string[], signer = key) => sign(signer, 'ES256', {}, { x5c }, now);
      expect(await ask(options, await signed([der(chain.leafPem), der(chain.caPem)]))).toBe(true);
      expect(await ask(options, await signed([der(chain.leafPem)]))).toBe(true);
      // A leaf of another CA, a chain whose leaf did not sign, a CA presented as its own leaf with another key.
      const strangerKey = createPrivateKey(stranger.leafKeyPem);
      expect(await ask(options, await signed([der(stranger.leafPem), der(stranger.caPem)], strangerKey))).toBe('invalid_token');
      expect(await ask(options, await signed([der(chain.leafPem)], strangerKey))).toBe('invalid_token');
      expect(await ask(options, await signed([der(stranger.leafPem), der(chain.caPem)], strangerKey))).toBe('invalid_token');
      expect(await ask(options, await signed(['bm90IGEgY2VydGlmaWNhdGU=']))).toBe('invalid_token');
      // Out of force: three days on, the two-day certificates have expired (the token itself is fresh then).
      const later = now + 3 * 24 * 3600;
      const lateToken = await sign(key, 'ES256', {}, { x5c: [der(chain.leafPem)] }, later);
      expect(await ask({ keys, now: at(later + 10) }, lateToken)).toBe('invalid_token');
      // A root bundle with several certificates in one string, as rootcertbundle holds them.
      expect(await ask({ keys: { rootCertificates: stranger.caPem + chain.caPem }, now: Date.now }, await signed([der(chain.leafPem)]))).toBe(true);
    });

    it('a kid in libtrust form or as a thumbprint names a root certificate key, as Distribution 2.x token services send it', async () => {
      const key = createPrivateKey(chain.leafKeyPem);
      const now = Math.floor(Date.now() / 1000);
      const kid = libtrustKeyId(createPublicKey(key));
      expect(kid).toMatch(/^([A-Z2-7]{4}:){11}[A-Z2-7]{4}$/);
      expect(await ask({ keys: { rootCertificates: [stranger.caPem, chain.leafPem] }, now: Date.now }, await sign(key, 'ES256', {}, { kid }, now))).toBe(true);
      expect(await ask({ keys: { rootCertificates: [stranger.caPem] }, now: Date.now }, await sign(key, 'ES256', {}, { kid }, now))).toBe('invalid_token');
    });
  });
});

describe('createTokenService', () => {
  const USERS: Record<string, string> = { alice: 'alice secret', bob: 'bob secret' };
  const { privateKey, publicKey } = ec();
  const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
  let clock = T0;
  const grantsOf: { subject: string | undefined; requested: ResourceActions[] }[] = [];

  function app(options: { anonymous?: boolean; certificate?: string; signingKey?: KeyObject } = {}) {
    const host = express();
    host.use(
      createTokenService({
        service: SERVICE,
        issuer: ISSUER,
        signingKey: options.signingKey ?? privateKey,
        certificate: options.certificate,
        anonymous: options.anonymous,
        now: () => clock * 1000,
        authenticate: (_req, user, password) => USERS[user] === password,
        grant: (subject, requested) => {
          grantsOf.push({ subject, requested });
          return requested.map(({ type, name }) => ({ type, name, actions: subject && name.startsWith(`${subject}/`) ? ['*'] : ['pull'] }));
        },
      }),
    );
    return supertest(host);
  }
  beforeEach(() => {
    clock = T0;
    grantsOf.length = 0;
  });
  const verify = (token: string, access: AccessRequest = PULL, now = clock + 1) => ask({ keys: { publicKeys: [publicKey] }, now: at(now) }, token, access);

  it('GET /token with Basic credentials: a JWT of the distribution token spec for the granted part of the scopes', async () => {
    const res = await app()
      .get('/token')
      .query({ service: SERVICE, scope: ['repository:alice/app:pull,push', 'repository:team/app:pull,push'], account: 'alice' })
      .set('Authorization', basic('alice', 'alice secret'))
      .expect(200);
    expect(res.body).toEqual({ token: expect.any(String), access_token: res.body.token, expires_in: 300, issued_at: new Date(T0 * 1000).toISOString() });
    expect(res.headers['cache-control']).toBe('no-store');
    expect(grantsOf).toEqual([{ subject: 'alice', requested: [{ type: 'repository', name: 'alice/app', actions: ['pull', 'push'] }, { type: 'repository', name: 'team/app', actions: ['pull', 'push'] }] }]);
    const header = decodeProtectedHeader(res.body.token);
    expect(header).toEqual({ alg: 'ES256', typ: 'JWT', kid: (await keyIds(publicKey))[0] });
    expect(decodeJwt(res.body.token)).toEqual({
      iss: ISSUER,
      aud: SERVICE,
      sub: 'alice',
      iat: T0,
      nbf: T0,
      exp: T0 + 300,
      jti: expect.any(String),
      access: [
        { type: 'repository', name: 'alice/app', actions: ['pull', 'push'] },
        { type: 'repository', name: 'team/app', actions: ['pull'] },
      ],
    });
    expect(await verify(res.body.token, { repository: 'alice/app', actions: ['pull', 'push'] })).toBe(true);
    expect(await verify(res.body.token, { repository: 'team/app', actions: ['pull', 'push'] })).toBe('insufficient_scope');
    expect(await verify(res.body.token, PULL, T0 + 400)).toBe('invalid_token');
  });

  it('refuses wrong credentials and another account with 401, another service with 400, and no credentials unless anonymous', async () => {
    const refused = await app().get('/token').query({ service: SERVICE }).set('Authorization', basic('alice', 'wrong')).expect(401);
    expect(refused.body.errors[0].code).toBe('UNAUTHORIZED');
    expect(refused.headers['www-authenticate']).toMatch(/^Basic /);
    await app().get('/token').set('Authorization', basic('mallory', 'alice secret')).expect(401);
    await app().get('/token').query({ account: 'bob' }).set('Authorization', basic('alice', 'alice secret')).expect(401);
    const other = await app().get('/token').query({ service: 'other-registry' }).set('Authorization', basic('alice', 'alice secret')).expect(400);
    expect(other.body.errors[0].code).toBe('DENIED');
    await app().get('/token').query({ scope: 'repository:team/app:pull' }).expect(401);
    const anonymous = await app({ anonymous: true }).get('/token').query({ scope: 'repository:team/app:pull,push' }).expect(200);
    expect(decodeJwt(anonymous.body.token)).toMatchObject({ access: [{ type: 'repository', name: 'team/app', actions: ['pull'] }] });
    expect(decodeJwt(anonymous.body.token).sub).toBeUndefined();
    expect(grantsOf.at(-1)?.subject).toBeUndefined();
    expect(await verify(anonymous.body.token)).toBe(true);
  });

  it('OAuth2 POST: the password grant (offline: with a refresh token), the refresh_token grant, and their refusals', async () => {
    const agent = app();
    const form = (fields: Record<string, string>) => agent.post('/token').type('form').send(fields);
    const login = await form({ grant_type: 'password', username: 'alice', password: 'alice secret', service: SERVICE, scope: 'repository:alice/app:pull,push', client_id: 'test', access_type: 'offline' }).expect(200);
    expect(login.body).toMatchObject({ access_token: expect.any(String), scope: 'repository:alice/app:pull,push', expires_in: 300, refresh_token: expect.any(String) });
    expect(await verify(login.body.access_token, { repository: 'alice/app', actions: ['push'] })).toBe(true);
    // A refresh token is for the token service only: no registry takes it for access.
    expect(await verify(login.body.refresh_token, { repository: '', actions: [] })).toBe('invalid_token');

    // An hour on, the access token has expired; the refresh token gets a new one, for any scope grant allows.
    clock = T0 + 3600;
    expect(await verify(login.body.access_token)).toBe('invalid_token');
    const refreshed = await form({ grant_type: 'refresh_token', refresh_token: login.body.refresh_token, service: SERVICE, scope: 'repository:alice/app:*' }).expect(200);
    expect(refreshed.body.refresh_token).toBeUndefined();
    expect(decodeJwt(refreshed.body.access_token)).toMatchObject({ sub: 'alice', iat: T0 + 3600, access: [{ type: 'repository', name: 'alice/app', actions: ['*'] }] });
    expect(await verify(refreshed.body.access_token, { repository: 'alice/app', actions: ['delete'] })).toBe(true);

    const withoutOffline = await form({ grant_type: 'password', username: 'alice', password: 'alice secret' }).expect(200);
    expect(withoutOffline.body.refresh_token).toBeUndefined();
    expect((await form({ grant_type: 'password', username: 'alice', password: 'wrong' }).expect(401)).body.error).toBe('invalid_grant');
    expect((await form({ grant_type: 'refresh_token', refresh_token: login.body.access_token }).expect(400)).body.error).toBe('invalid_grant');
    expect((await form({ grant_type: 'refresh_token', refresh_token: login.body.refresh_token, service: 'other-registry' }).expect(400)).body.error).toBe('invalid_request');
    expect((await form({ grant_type: 'client_credentials' }).expect(400)).body.error).toBe('unsupported_grant_type');
    expect((await form({ grant_type: 'password', username: 'alice' }).expect(400)).body.error).toBe('invalid_request');
    clock = T0 + 31 * 24 * 3600;
    expect((await form({ grant_type: 'refresh_token', refresh_token: login.body.refresh_token }).expect(400)).body.error).toBe('invalid_grant');
  });

  describeWithPrograms(['openssl'], 'with a certificate', () => {
    const dir = useTempDir('oci-certs-');
    it('tokens carry the chain as x5c and pass a registry that trusts its CA; a certificate of another key is refused', async () => {
      const chain = await makeCertificateChain(dir(), 'issuer');
      clock = Math.floor(Date.now() / 1000);
      const agent = app({ signingKey: createPrivateKey(chain.leafKeyPem), certificate: chain.leafPem + chain.caPem });
      const res = await agent.get('/token').query({ scope: 'repository:team/app:pull' }).set('Authorization', basic('bob', 'bob secret')).expect(200);
      const header = decodeProtectedHeader(res.body.token);
      expect(header.x5c).toEqual([chain.leafPem, chain.caPem].map((pem) => new X509Certificate(pem).raw.toString('base64')));
      expect(await ask({ keys: { rootCertificates: chain.caPem }, now: Date.now }, res.body.token)).toBe(true);
      const mismatched = await app({ certificate: chain.leafPem }).get('/token').set('Authorization', basic('bob', 'bob secret')).expect(500);
      expect(mismatched.body.errors[0].code).toBe('UNKNOWN');
    });
  });

  it('a token never grants more than grant returned, nor more than was asked (property)', async () => {
    const names = fc.constantFrom('team/app', 'alice/app', 'bob/x', 'catalog');
    const actions = fc.subarray(['pull', 'push', 'delete', '*'], { minLength: 1 });
    const resources = fc.array(fc.record({ type: fc.constantFrom('repository', 'registry'), name: names, actions }), { maxLength: 4 });
    const questions = fc.array(fc.record({ repository: names, action: fc.constantFrom('pull', 'push', 'delete'), catalog: fc.boolean() }), { minLength: 1, maxLength: 6 });
    await fc.assert(
      fc.asyncProperty(resources, resources, questions, async (requested, granted, asked) => {
        const host = express();
        host.use(createTokenService({ service: SERVICE, issuer: ISSUER, signingKey: privateKey, now: () => T0 * 1000, anonymous: true, authenticate: () => true, grant: () => granted }));
        const scope = requested.map(({ type, name, actions: each }) => `${type}:${name}:${each.join(',')}`);
        const res = await supertest(host).get('/token').query({ scope }).expect(200);
        const access = (decodeJwt(res.body.token).access ?? []) as ResourceActions[];
        for (const entry of access) {
          for (const action of entry.actions) {
            // Every action the token names, `*` included, was both asked for and granted (each side's `*` covering it).
            expect(grants(granted, entry.type, entry.name, action)).toBe(true);
            expect(grants(requested, entry.type, entry.name, action)).toBe(true);
          }
        }
        for (const { repository, action, catalog } of asked) {
          const question: AccessRequest = catalog ? { repository: '', actions: [], catalog: true } : { repository, actions: [action] };
          const result = await ask({ keys: { publicKeys: [publicKey] }, now: at(T0) }, res.body.token, question);
          const [type, name, needed] = catalog ? ['registry', 'catalog', '*'] : ['repository', repository, action];
          if (result === true) expect(grants(granted, type, name, needed) && grants(requested, type, name, needed)).toBe(true);
        }
      }),
      { numRuns: 60 },
    );
  });
});
