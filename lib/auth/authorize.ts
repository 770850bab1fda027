/** `tokenAuthorize`: the registry's `authorize` for Docker registry tokens (JWTs of the distribution token spec). */
import type { IncomingMessage } from 'node:http';
import { decodeProtectedHeader, errors, jwtVerify } from 'jose';
import type { Authorize } from '../access';
import { moduleLogger } from '../log';
import { KeyRing, type TokenKeys } from './keys';
import { ANY_ACTION, formatScopes, grants, requiredScopes, type ResourceActions } from './scopes';

const log = moduleLogger('auth');

/** The signature algorithms accepted by default: every asymmetric one the token spec's services use. */
export const DEFAULT_TOKEN_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];

/** Options for {@link tokenAuthorize}. */
export interface TokenAuthorizeOptions {
  /** This registry's name in tokens: their `aud` must be it (the challenge's `service`). */
  service: string;
  /** Who signs the tokens: their `iss` must be it. */
  issuer: string;
  /** The keys that may have signed them. */
  keys: TokenKeys;
  /** Signature algorithms accepted. Default {@link DEFAULT_TOKEN_ALGORITHMS}; symmetric ones and `none` never are. */
  algorithms?: string[];
  /** Seconds of clock skew allowed on `exp`, `nbf` and `iat`. Default 60, as the reference registry. */
  clockSkew?: number;
  /** The current time. Default `Date.now`. */
  now?: () => number;
}

/** The verified claims of a registry token (declared here so that the package's types need none of jose's). */
export interface RegistryTokenClaims {
  iss?: string;
  sub?: string;
  aud?: string | string[];
  exp?: number;
  nbf?: number;
  iat?: number;
  jti?: string;
  access?: ResourceActions[];
  [claim: string]: unknown;
}

/**
 * An `authorize` for the token protocol, to pair with `bearerChallenge`: the request's
 * `Authorization: Bearer` token must be a JWT signed by a trusted key, issued by `issuer` for
 * `service`, in force (`exp`, `nbf`, `iat` within `clockSkew`), and its `access` claim must grant
 * every action the request needs (`*` grants all; the catalog needs `registry:catalog:*`, which also
 * lets it list every repository). Without a token the answer is 401 with the challenge; a token
 * that fails is 401 `error="invalid_token"`; a valid one without the scope is 401
 * `error="insufficient_scope"`, as the reference registry answers.
 *
 * @example
 * ```ts
 * createRegistryRouter({
 *   storage,
 *   authorize: tokenAuthorize({ service: 'registry.example.com', issuer: 'auth.example.com', keys: { rootCertificates: pem } }),
 *   challenge: bearerChallenge({ realm: 'https://auth.example.com/token', service: 'registry.example.com' }),
 * });
 * ```
 */
export function tokenAuthorize(options: TokenAuthorizeOptions): Authorize {
  const ring = KeyRing.load(options.keys);
  // A key-loading failure surfaces on the first request as a 500, and here for the host's logs.
  ring.catch((error: unknown) => log({})('the token keys could not be loaded: %O', error));
  const now = options.now ?? Date.now;
  const clockSkew = options.clockSkew ?? 60;
  const algorithms = (options.algorithms ?? DEFAULT_TOKEN_ALGORITHMS).filter((alg) => !/^(HS|none)/i.test(alg));

  async function verify(token: string, repository: string | undefined): Promise<RegistryTokenClaims | undefined> {
    const keys = await ring;
    const currentDate = new Date(now());
    try {
      const header = decodeProtectedHeader(token);
      const key = keys.resolve({ kid: header.kid, x5c: header.x5c }, currentDate);
      if (key instanceof Error) throw key;
      const { payload } = await jwtVerify<RegistryTokenClaims>(token, key, {
        issuer: options.issuer,
        audience: options.service,
        algorithms,
        clockTolerance: clockSkew,
        currentDate,
        requiredClaims: ['exp'],
      });
      if (payload.iat !== undefined && payload.iat > currentDate.getTime() / 1000 + clockSkew) throw new Error('the token is issued in the future');
      if (payload.token_use === 'refresh') throw new Error('a refresh token is no access token');
      if (payload.access !== undefined && !validAccess(payload.access)) throw new Error('the access claim is malformed');
      return payload;
    } catch (error) {
      const reason = error instanceof errors.JOSEError ? error.code : error instanceof Error ? error.message : String(error);
      log({ repository })('token refused: %s', reason);
      return undefined;
    }
  }

  // One request asks several questions (a mount's source, each name the catalog lists): verify once.
  const verified = new WeakMap<IncomingMessage, Promise<RegistryTokenClaims | undefined>>();
  return async (req: IncomingMessage, access) => {
    const match = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
    if (!match) return 'unauthenticated';
    let claims$ = verified.get(req);
    if (!claims$) verified.set(req, (claims$ = verify(match[1], access.repository || undefined)));
    const claims = await claims$;
    if (!claims) return 'invalid_token';
    const granted = claims.access ?? [];
    // The catalog scope lets the catalog list every name, as the reference registry lists them all.
    if (access.catalog && access.repository && grants(granted, 'registry', 'catalog', ANY_ACTION)) return true;
    const needed = requiredScopes(access);
    const allowed = needed.every(({ type, name, actions }) => actions.every((action) => grants(granted, type, name, action)));
    if (!allowed) log({ repository: access.repository || undefined })('token of %s lacks %s', claims.sub ?? 'an anonymous caller', formatScopes(needed));
    return allowed ? true : 'insufficient_scope';
  };
}

function validAccess(access: unknown): access is ResourceActions[] {
  return (
    Array.isArray(access) &&
    access.every(
      (entry: Partial<ResourceActions> | null) =>
        typeof entry?.type === 'string' && typeof entry.name === 'string' && Array.isArray(entry.actions) && entry.actions.every((action) => typeof action === 'string'),
    )
  );
}
