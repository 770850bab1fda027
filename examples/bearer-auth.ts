/**
 * The registry behind the token protocol that docker, podman and skopeo follow, with its token
 * service in the same app:
 *
 * 1. The client's request is refused with 401 and
 *    `WWW-Authenticate: Bearer realm="<PUBLIC_URL>/token",service="example-registry",scope="repository:<name>:pull,push"`.
 * 2. It asks the realm for a token for that scope, with the user's Basic credentials (or none).
 * 3. It retries with `Authorization: Bearer <token>`: a JWT the registry verifies.
 *
 * Users come from a users file as in `basic-auth.ts`. Signed-in users may pull everything and list
 * the catalog, and push and delete under their own name (`alice/…`); with `ANONYMOUS_PULL=1`
 * anyone may pull and list. Tokens are signed with the PEM private key in `TOKEN_KEY_FILE` (an
 * EC P-256 key is generated at start when unset); with `TOKEN_CERT_FILE` (its certificate, PEM,
 * optionally followed by its CA) tokens carry it as `x5c`, so that another registry trusting the
 * CA (the reference registry's `rootcertbundle`) accepts them too.
 *
 *   openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out token-key.pem
 *   USERS_FILE=users.txt TOKEN_KEY_FILE=token-key.pem PUBLIC_URL=http://127.0.0.1:5000 node dist/examples/bearer-auth.js
 */
import express from 'express';
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { resolve } from 'node:path';
import { bearerChallenge, createRegistryRouter, FileSystemStorage } from '../lib';
import { ANY_ACTION, createTokenService, tokenAuthorize, type ResourceActions } from '../lib/auth';
import { checkPassword, parseUsers } from './basic-auth';

/** The registry's name in tokens and challenges. */
export const SERVICE = 'example-registry';

/** Options for {@link createBearerAuthApp}. */
export interface BearerAuthAppOptions {
  root: string;
  usersText: string;
  /** The key tokens are signed with. */
  signingKey: KeyObject;
  /** The signing key's certificate chain, PEM, sent as the tokens' `x5c`. */
  certificate?: string;
  /** The URL clients reach the app at; the token realm is `<publicUrl>/token`. */
  publicUrl: string;
  /** Whether callers without credentials may pull and list the catalog. */
  anonymousPull?: boolean;
  /** Seconds a token is valid. Default 300. */
  expiresIn?: number;
}

/**
 * What `subject` may do of `requested`: everyone signed in (and, with `anonymousPull`, everyone)
 * pulls any repository and lists the catalog; a user does anything under `<user>/`.
 */
export function exampleGrant(subject: string | undefined, requested: ResourceActions[], anonymousPull: boolean): ResourceActions[] {
  const reader = subject !== undefined || anonymousPull;
  return requested.map(({ type, name }) => {
    const own = subject !== undefined && type === 'repository' && name.startsWith(`${subject}/`);
    const actions = own ? [ANY_ACTION] : reader && type === 'repository' ? ['pull'] : reader && type === 'registry' && name === 'catalog' ? [ANY_ACTION] : [];
    return { type, name, actions };
  });
}

/** The app: `/token` issues tokens, `/v2` is the registry that accepts them. */
export function createBearerAuthApp(options: BearerAuthAppOptions): express.Express {
  const users = parseUsers(options.usersText);
  const issuer = `${options.publicUrl}/token`;
  const app = express();
  app.disable('x-powered-by');
  app.use(
    createTokenService({
      service: SERVICE,
      issuer,
      signingKey: options.signingKey,
      certificate: options.certificate,
      expiresIn: options.expiresIn,
      anonymous: options.anonymousPull,
      authenticate: (_req, user, password) => checkPassword(users, user, password),
      grant: (subject, requested) => exampleGrant(subject, requested, options.anonymousPull ?? false),
    }),
  );
  app.use(
    createRegistryRouter({
      storage: new FileSystemStorage({ root: options.root }),
      authorize: tokenAuthorize({ service: SERVICE, issuer, keys: { publicKeys: [createPublicKey(options.signingKey)] } }),
      challenge: bearerChallenge({ realm: issuer, service: SERVICE }),
    }),
  );
  return app;
}

if (require.main === module) {
  const port = Number(process.env.PORT ?? 5000);
  const host = process.env.HOST ?? '127.0.0.1';
  const keyFile = process.env.TOKEN_KEY_FILE;
  const signingKey = keyFile ? createPrivateKey(readFileSync(resolve(keyFile), 'utf8')) : generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const certFile = process.env.TOKEN_CERT_FILE;
  const server = createServer();
  // The realm names the port, which is known only once listening when PORT=0.
  server.listen(port, host, () => {
    const actualPort = (server.address() as { port: number }).port;
    const publicUrl = process.env.PUBLIC_URL ?? `http://${host}:${actualPort}`;
    const app = createBearerAuthApp({
      root: resolve(process.env.DATA_DIR ?? 'registry-data'),
      usersText: readFileSync(resolve(process.env.USERS_FILE ?? 'users.txt'), 'utf8'),
      signingKey,
      certificate: certFile ? readFileSync(resolve(certFile), 'utf8') : undefined,
      publicUrl,
      anonymousPull: process.env.ANONYMOUS_PULL === '1',
    });
    server.on('request', app);
    console.log(`registry with Bearer tokens listening on http://${host}:${actualPort} (tokens at ${publicUrl}/token${keyFile ? '' : ', signed with a key generated at start'})`);
  });
}
