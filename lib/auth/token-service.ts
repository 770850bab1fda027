/** `createTokenService`: the token endpoint of the distribution token spec (GET with Basic credentials, OAuth2 POST). */
import express, { Router, type Request, type Response } from 'express';
import { createPrivateKey, createPublicKey, randomUUID, X509Certificate, type KeyObject } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { jwtVerify, SignJWT } from 'jose';
import { basicCredentials } from '../basic-auth';
import { moduleLogger } from '../log';
import { keyIds, splitPem } from './keys';
import { narrow, parseScopes, formatScopes, type ResourceActions } from './scopes';

const log = moduleLogger('token-service');

/** Options for {@link createTokenService}. */
export interface TokenServiceOptions {
  /** The registry the tokens are for (their `aud`); a request naming another `service` is refused. */
  service: string;
  /** This service's name in tokens (`iss`); registries trust tokens by it. */
  issuer: string;
  /** The private key tokens are signed with: PEM (PKCS#8, SEC1 or PKCS#1) or a key object. RSA signs RS256, P-256 ES256, P-384 ES384, Ed25519 EdDSA. */
  signingKey: string | KeyObject;
  /** The signing key's certificate, PEM, optionally followed by its issuers: sent as the tokens' `x5c`, for registries that trust a root certificate. */
  certificate?: string;
  /** The tokens' `kid`. Default the public key's RFC 7638 thumbprint. */
  keyId?: string;
  /**
   * Checks a user's credentials, with your own user store (a users file, LDAP, an API-key table).
   * Resolves to the token's subject (`true` means `user`), or `false`/`undefined` to refuse.
   */
  authenticate: (req: IncomingMessage, user: string, password: string) => string | boolean | undefined | Promise<string | boolean | undefined>;
  /**
   * What `subject` (undefined: an anonymous caller) may do of what it asked for. The token holds
   * only actions both asked for and returned here (`*` on either side stands for the other's).
   */
  grant: (subject: string | undefined, requested: ResourceActions[]) => ResourceActions[] | Promise<ResourceActions[]>;
  /** Whether callers without credentials get tokens (for what `grant(undefined, …)` allows). Default false. */
  anonymous?: boolean;
  /** Seconds an access token is valid. Default 300. */
  expiresIn?: number;
  /** Seconds a refresh token (asked for with `offline_token=true` or `access_type=offline`) is valid. Default 30 days. */
  refreshExpiresIn?: number;
  /** The current time. Default `Date.now`. */
  now?: () => number;
}

/** A refused token request: its HTTP status and its OAuth2 error code. */
class TokenRequestError extends Error {
  constructor(
    readonly status: number,
    readonly oauthError: string,
    message: string,
  ) {
    super(message);
  }
}

interface Signer {
  key: KeyObject;
  alg: string;
  kid: string;
  x5c?: string[];
}

/**
 * An Express router serving the token endpoint at `/token`, for the `realm` of a
 * `bearerChallenge`: `GET /token?service=…&scope=…&account=…` with Basic credentials (or none,
 * with `anonymous`), as docker, podman and skopeo ask, answering `{ token, access_token,
 * expires_in, issued_at }`; and `POST /token` with a form of `grant_type=password` (`username`,
 * `password`) or `grant_type=refresh_token` (`refresh_token`), plus `service` and `scope`, as
 * `docker login` and containerd ask. Tokens are JWTs per the distribution token spec, signed with
 * `signingKey`, carrying `kid` (and `x5c` with a `certificate`) so that any registry can verify
 * them; {@link tokenAuthorize} does so for this package's registry.
 */
export function createTokenService(options: TokenServiceOptions): Router {
  const signer = loadSigner(options);
  // A bad key or certificate fails every request; say why once, where the host's logs see it.
  signer.catch((error: unknown) => log({})('the signing key could not be loaded: %O', error));
  const expiresIn = options.expiresIn ?? 300;
  const refreshExpiresIn = options.refreshExpiresIn ?? 30 * 24 * 60 * 60;
  const now = () => Math.floor((options.now ?? Date.now)() / 1000);

  async function issue(subject: string | undefined, scopes: string[], offline: boolean, via: string) {
    const requested = parseScopes(scopes);
    const access = narrow(requested, requested.length ? await options.grant(subject, requested) : []);
    const { key, alg, kid, x5c } = await signer;
    const issuedAt = now();
    const sign = (claims: Record<string, unknown>, lifetime: number, audience: string) => {
      const jwt = new SignJWT(claims).setProtectedHeader({ alg, typ: 'JWT', kid, ...(x5c && { x5c }) }).setIssuer(options.issuer).setAudience(audience);
      if (subject !== undefined) jwt.setSubject(subject);
      return jwt.setIssuedAt(issuedAt).setNotBefore(issuedAt).setExpirationTime(issuedAt + lifetime).setJti(randomUUID()).sign(key);
    };
    const token = await sign({ access }, expiresIn, options.service);
    // A refresh token names the token service as its audience, so no registry takes it for access.
    const refreshToken = offline && subject !== undefined ? await sign({ token_use: 'refresh', service: options.service }, refreshExpiresIn, options.issuer) : undefined;
    log({ subject })('issued a token by %s for %s%s', via, formatScopes(access) || 'no scope', refreshToken ? ', and a refresh token' : '');
    return { token, access, issuedAt, refreshToken };
  }

  /** The subject a Basic header proves, undefined for an anonymous caller the service serves. */
  async function subjectOf(req: Request, account: string | undefined): Promise<string | undefined> {
    const credentials = basicCredentials(req);
    if (!credentials) {
      if (options.anonymous) return undefined;
      throw new TokenRequestError(401, 'invalid_client', 'credentials are required');
    }
    if (account !== undefined && account !== credentials.user) throw new TokenRequestError(401, 'invalid_client', 'the account is not the user of the credentials');
    return checkPassword(req, credentials.user, credentials.password);
  }

  async function checkPassword(req: Request, user: string, password: string): Promise<string> {
    const result = await options.authenticate(req, user, password);
    if (!result) throw new TokenRequestError(401, 'invalid_grant', 'the user name or password is wrong');
    return result === true ? user : result;
  }

  async function refreshSubject(refreshToken: string): Promise<string> {
    const { key } = await signer;
    try {
      const { payload } = await jwtVerify(refreshToken, createPublicKey(key), { issuer: options.issuer, audience: options.issuer, currentDate: new Date(now() * 1000), requiredClaims: ['exp', 'sub'] });
      if (payload.token_use !== 'refresh' || payload.service !== options.service) throw new Error('not a refresh token for this service');
      return payload.sub!;
    } catch {
      throw new TokenRequestError(400, 'invalid_grant', 'the refresh token is not valid');
    }
  }

  function checkService(service: unknown): void {
    if (service !== undefined && service !== options.service) throw new TokenRequestError(400, 'invalid_request', `this service issues tokens for ${options.service} only`);
  }

  const router = Router();
  router.get('/token', (req, res) =>
    answer(res, false, async () => {
      checkService(req.query.service);
      const account = typeof req.query.account === 'string' ? req.query.account : undefined;
      const subject = await subjectOf(req, account);
      const issued = await issue(subject, queryValues(req.query.scope), req.query.offline_token === 'true', subject === undefined ? 'GET, anonymously' : 'GET');
      return { token: issued.token, access_token: issued.token, expires_in: expiresIn, issued_at: new Date(issued.issuedAt * 1000).toISOString(), ...(issued.refreshToken && { refresh_token: issued.refreshToken }) };
    }),
  );
  router.post('/token', express.urlencoded({ extended: false, limit: '64kb' }), (req, res) =>
    answer(res, true, async () => {
      const form = (req.body ?? {}) as Record<string, unknown>;
      checkService(form.service);
      const field = (name: string) => (typeof form[name] === 'string' ? (form[name] as string) : undefined);
      let subject: string;
      let offline: boolean;
      if (form.grant_type === 'password') {
        const [user, password] = [field('username'), field('password')];
        if (user === undefined || password === undefined) throw new TokenRequestError(400, 'invalid_request', 'username and password are required');
        subject = await checkPassword(req, user, password);
        offline = form.access_type === 'offline';
      } else if (form.grant_type === 'refresh_token') {
        subject = await refreshSubject(field('refresh_token') ?? '');
        offline = false;
      } else {
        throw new TokenRequestError(400, 'unsupported_grant_type', 'grant_type is password or refresh_token');
      }
      const issued = await issue(subject, queryValues(form.scope), offline, `the ${form.grant_type} grant`);
      return {
        access_token: issued.token,
        token: issued.token,
        scope: formatScopes(issued.access),
        expires_in: expiresIn,
        issued_at: new Date(issued.issuedAt * 1000).toISOString(),
        ...(issued.refreshToken && { refresh_token: issued.refreshToken }),
      };
    }),
  );
  return router;
}

/**
 * Sends what `produce` resolves to as JSON, or its failure: OAuth2's `{ error,
 * error_description }` for the POST form, the registry's error body for GET (which docker,
 * podman and skopeo show), and a Basic challenge on 401.
 */
async function answer(res: Response, oauth: boolean, produce: () => Promise<object>): Promise<void> {
  try {
    const body = await produce();
    res.set('Cache-Control', 'no-store').json(body);
  } catch (error) {
    const failure = error instanceof TokenRequestError ? error : new TokenRequestError(500, 'server_error', 'the token could not be issued');
    if (!(error instanceof TokenRequestError)) log({})('token request failed: %O', error);
    if (failure.status === 401) res.set('WWW-Authenticate', 'Basic realm="token service"');
    const code = failure.status === 401 ? 'UNAUTHORIZED' : failure.status === 500 ? 'UNKNOWN' : 'DENIED';
    res
      .status(failure.status)
      .json(oauth ? { error: failure.oauthError, error_description: failure.message } : { errors: [{ code, message: failure.message, detail: null }] });
  }
}

/** A query or form field given once or several times, as strings. */
function queryValues(value: unknown): string[] {
  return [value ?? []].flat().filter((each): each is string => typeof each === 'string');
}

async function loadSigner(options: TokenServiceOptions): Promise<Signer> {
  const key = typeof options.signingKey === 'string' ? createPrivateKey(options.signingKey) : options.signingKey;
  const alg = signingAlgorithm(key);
  const certificates = options.certificate ? splitPem(options.certificate).map((pem) => new X509Certificate(pem)) : undefined;
  if (certificates && !certificates[0]?.checkPrivateKey(key)) throw new Error('the certificate is not for the signing key');
  const kid = options.keyId ?? (await keyIds(key))[0];
  return { key, alg, kid, x5c: certificates?.map((cert) => cert.raw.toString('base64')) };
}

/** The JWS algorithm for a private key. */
function signingAlgorithm(key: KeyObject): string {
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (key.asymmetricKeyType === 'rsa') return 'RS256';
  if (key.asymmetricKeyType === 'ec' && curve === 'prime256v1') return 'ES256';
  if (key.asymmetricKeyType === 'ec' && curve === 'secp384r1') return 'ES384';
  if (key.asymmetricKeyType === 'ed25519') return 'EdDSA';
  throw new Error(`no token signing algorithm for a ${key.asymmetricKeyType ?? key.type} key${curve ? ` on ${curve}` : ''}`);
}
