/**
 * The registry behind the Bearer token-service flow that docker, podman and skopeo follow:
 *
 * 1. The client's request is refused with 401 and
 *    `WWW-Authenticate: Bearer realm="<url>/token",service="…",scope="repository:<name>:pull,push"`.
 * 2. It asks the realm for a token for that scope, with the user's Basic credentials.
 * 3. It retries with `Authorization: Bearer <token>`.
 *
 * The token service lives in the same app here (`GET /token`); in production it is often another
 * service that shares the signing secret. Tokens are HMAC-signed JSON with an expiry. Users come
 * from a users file as in `basic-auth.ts`, with the same rule: pull anything, push and delete
 * under your own name.
 *
 *   USERS_FILE=users.txt TOKEN_SECRET=… PUBLIC_URL=http://127.0.0.1:5000 node dist/examples/bearer-auth.js
 */
import express from 'express';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { bearerChallenge, createRegistryRouter, FileSystemStorage, type Action, type Authorize } from '../lib';
import { basicUser, mayAccess, parseUsers } from './basic-auth';

const SERVICE = 'example-registry';
const TOKEN_LIFETIME_SECONDS = 300;

/** What a token grants: per repository, the actions. */
export interface TokenClaims {
  sub: string;
  access: { type: 'repository'; name: string; actions: Action[] }[];
  /** Expiry, in seconds since the epoch. */
  exp: number;
}

/** Signs `claims` as `<payload>.<signature>`, both base64url. */
export function signToken(claims: TokenClaims, secret: Buffer): string {
  const payload = Buffer.from(JSON.stringify(claims)).toString('base64url');
  return `${payload}.${createHmac('sha256', secret).update(payload).digest('base64url')}`;
}

/** The claims of a valid, unexpired token, or undefined. */
export function verifyToken(token: string, secret: Buffer): TokenClaims | undefined {
  const [payload, signature] = token.split('.');
  if (!payload || !signature) return undefined;
  const expected = createHmac('sha256', secret).update(payload).digest();
  const given = Buffer.from(signature, 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as TokenClaims;
  return claims.exp > Date.now() / 1000 ? claims : undefined;
}

/** The `authorize` option: the bearer token must grant every action the request needs. */
export function bearerAuthorize(secret: Buffer): Authorize {
  return (req, access) => {
    const match = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
    const claims = match ? verifyToken(match[1], secret) : undefined;
    if (!claims) return 'unauthenticated';
    if (!access.repository) return true;
    const granted = claims.access.find((entry) => entry.type === 'repository' && entry.name === access.repository)?.actions ?? [];
    // Missing scope is a 401, as in the reference registry: the client asks the token service again.
    return access.actions.every((action) => granted.includes(action)) ? true : 'unauthenticated';
  };
}

/** The app: `GET /token` issues tokens, `/v2` is the registry that accepts them. */
export function createBearerAuthApp(options: { root: string; usersText: string; secret: Buffer; publicUrl: string }): express.Express {
  const users = parseUsers(options.usersText);
  const app = express();
  app.disable('x-powered-by');
  app.get('/token', (req, res) => {
    const user = basicUser(req, users);
    if (!user) {
      res.status(401).set('WWW-Authenticate', 'Basic realm="example registry tokens"').json({ error: 'credentials required' });
      return;
    }
    const scopes = ([] as unknown[]).concat(req.query.scope ?? []).map(String);
    const access: TokenClaims['access'] = [];
    for (const scope of scopes.flatMap((each) => each.split(' '))) {
      const [type, name, actions] = scope.split(':');
      if (type !== 'repository' || !name || !actions) continue;
      const granted = actions.split(',').filter((action): action is Action => ['pull', 'push', 'delete'].includes(action) && mayAccess(user, { repository: name, actions: [action as Action] }));
      access.push({ type: 'repository', name, actions: granted });
    }
    const token = signToken({ sub: user, access, exp: Math.floor(Date.now() / 1000) + TOKEN_LIFETIME_SECONDS }, options.secret);
    res.json({ token, access_token: token, expires_in: TOKEN_LIFETIME_SECONDS, issued_at: new Date().toISOString() });
  });
  app.use(
    createRegistryRouter({
      storage: new FileSystemStorage({ root: options.root }),
      authorize: bearerAuthorize(options.secret),
      challenge: bearerChallenge({ realm: `${options.publicUrl}/token`, service: SERVICE }),
    }),
  );
  return app;
}

if (require.main === module) {
  const port = Number(process.env.PORT ?? 5000);
  const host = process.env.HOST ?? '127.0.0.1';
  const app = createBearerAuthApp({
    root: resolve(process.env.DATA_DIR ?? 'registry-data'),
    usersText: readFileSync(resolve(process.env.USERS_FILE ?? 'users.txt'), 'utf8'),
    secret: process.env.TOKEN_SECRET ? Buffer.from(process.env.TOKEN_SECRET) : randomBytes(32),
    publicUrl: process.env.PUBLIC_URL ?? `http://${host}:${port}`,
  });
  const server = app.listen(port, host, () => {
    console.log(`registry with Bearer tokens listening on port ${(server.address() as { port: number }).port}`);
  });
}
