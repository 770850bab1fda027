/** Access control: the actions a request needs, the `authorize` hook's types, the 401 challenges, and asking the hook. */
import type { IncomingMessage } from 'node:http';
import { RegistryError } from './errors';

/** What a request may do to a repository. */
export type Action = 'pull' | 'push' | 'delete';

/** What a read needs. */
export const PULL: Action[] = ['pull'];
/** What a push needs: pull too, as in the reference registry, since an upload can mount and probe blobs. */
export const PUSH: Action[] = ['pull', 'push'];
/** What a delete needs. */
export const DELETE: Action[] = ['delete'];

/**
 * One question put to {@link Authorize}: may this request do `actions` on `repository`? The
 * registry root (`/v2/`) and the catalog ask with `repository: ''` and no actions: "may this
 * caller use the registry at all".
 */
export interface AccessRequest {
  repository: string;
  actions: Action[];
  /**
   * Set on the catalog's questions: with `repository: ''`, may this caller list the catalog; with
   * a repository, may the catalog list that name. The token protocol answers both with its
   * `registry:catalog:*` scope; an `authorize` that ignores the flag lists what the caller may pull.
   */
  catalog?: true;
}

/**
 * The answer of {@link Authorize}: `true` allows; `'unauthenticated'` answers 401 `UNAUTHORIZED`
 * with the challenge; `'forbidden'` answers 403 `DENIED`; `false` is 401 when the request carries
 * no `Authorization` header and 403 when it does. The token protocol's refusals are 401s too, with
 * the challenge carrying an RFC 6750 error as the reference registry sends it: `'invalid_token'`
 * (bad signature, expired, another audience) and `'insufficient_scope'` (a valid token that does
 * not grant the action; clients report it as "denied").
 */
export type AuthorizationResult = boolean | 'unauthenticated' | 'forbidden' | BearerError;

/** The RFC 6750 `error` of a Bearer challenge. */
export type BearerError = 'invalid_token' | 'insufficient_scope';

/** Decides whether a request may do what it asks; called before any storage is touched. */
export type Authorize = (req: IncomingMessage, access: AccessRequest) => AuthorizationResult | Promise<AuthorizationResult>;

/**
 * The `WWW-Authenticate` value sent with a 401: a fixed string, or built from what the request
 * asked for (as the Bearer token-service challenge needs for its `scope`) and why it was refused.
 */
export type Challenge = string | ((req: IncomingMessage, access: AccessRequest[], error?: BearerError) => string);

/** A Basic challenge: browsers and `docker login` prompt for a user name and password. */
export function basicChallenge(realm: string): string {
  return `Basic realm=${quote(realm)}`;
}

/**
 * The Bearer challenge of the token-service flow docker, podman and skopeo follow: the client
 * asks `realm` for a token for `service` and `scope`, then retries with `Authorization: Bearer`.
 */
export function bearerChallenge(options: { realm: string; service: string }): Challenge {
  return (_req, access, error) => {
    const scopes = access
      .map(({ repository, actions, catalog }) => (catalog ? CATALOG_SCOPE : repository ? `repository:${repository}:${actions.join(',')}` : ''))
      .filter(Boolean)
      .join(' ');
    const parts = [`realm=${quote(options.realm)}`, `service=${quote(options.service)}`];
    if (scopes) parts.push(`scope=${quote(scopes)}`);
    if (error) parts.push(`error=${quote(error)}`);
    return `Bearer ${parts.join(',')}`;
  };
}

/** The token-protocol scope that lets a caller list the catalog. */
export const CATALOG_SCOPE = 'registry:catalog:*';

/** The default challenge when the host gives none. */
export const DEFAULT_CHALLENGE = basicChallenge('registry');

/**
 * Asks `authorize` about each of `requests` in turn and throws `UNAUTHORIZED` (with the
 * challenge, unless the request says `X-Requested-With: XMLHttpRequest`) or `DENIED` at the first refusal.
 */
export async function enforceAccess(req: IncomingMessage, requests: AccessRequest[], authorize: Authorize, challenge: Challenge): Promise<void> {
  for (const access of requests) {
    const result = await authorize(req, access);
    if (result === true) continue;
    const what = access.repository ? `${access.actions.join(',') || 'access'} on ${access.repository}` : access.catalog ? 'listing the catalog' : 'access to the registry';
    const bearerError = result === 'invalid_token' || result === 'insufficient_scope' ? result : undefined;
    const authenticated = result === 'forbidden' || (result === false && req.headers.authorization !== undefined);
    if (authenticated) throw new RegistryError('DENIED', `${what} is denied`);
    const detail = bearerError === 'insufficient_scope' ? `the token does not grant ${what}` : bearerError ? 'the token is not valid here' : `authentication is required for ${what}`;
    // A page's background request (the registry UI's delete probe) asks for no challenge, so the
    // browser does not pop up a login dialog for a check the user never asked for.
    if (req.headers['x-requested-with'] === 'XMLHttpRequest') throw new RegistryError('UNAUTHORIZED', detail);
    const header = typeof challenge === 'string' ? challenge : challenge(req, requests, bearerError);
    throw new RegistryError('UNAUTHORIZED', detail, { headers: { 'WWW-Authenticate': header } });
  }
}

function quote(value: string): string {
  return `"${value.replace(/["\\]/g, '\\$&')}"`;
}
