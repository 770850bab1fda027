/** HTTP Basic credentials: reading them from a request, and an `authorize` that verifies each header once. */
import type { IncomingMessage } from 'node:http';
import type { AccessRequest, AuthorizationResult, Authorize } from './access';

/** The user name and password of a Basic `Authorization` header. */
export interface BasicCredentials {
  user: string;
  password: string;
}

/** The credentials of the request's Basic `Authorization` header, or undefined when it has none or a malformed one. */
export function basicCredentials(req: IncomingMessage): BasicCredentials | undefined {
  const match = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(req.headers.authorization ?? '');
  if (!match) return undefined;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** Options for {@link basicAuthorize}. */
export interface BasicAuthorizeOptions {
  /** Whether `password` is the password of `user`. */
  verify(user: string, password: string): boolean | Promise<boolean>;
  /** What a verified user may do; default: everything. */
  allow?(user: string, access: AccessRequest): AuthorizationResult;
}

/** Headers remembered as verified before the memory is cleared. */
const VERIFIED_HEADERS = 1000;

/**
 * An `authorize` for Basic credentials: a request without valid ones is asked to sign in (401).
 * Password hashes are slow on purpose, so a verified header is remembered: one push makes many
 * requests with the same header.
 */
export function basicAuthorize(options: BasicAuthorizeOptions): Authorize {
  const verified = new Map<string, string>();
  const allow = options.allow ?? (() => true);
  return async (req, access) => {
    const header = req.headers.authorization ?? '';
    let user = verified.get(header);
    if (user === undefined) {
      const credentials = basicCredentials(req);
      if (!credentials || !(await options.verify(credentials.user, credentials.password))) return 'unauthenticated';
      user = credentials.user;
      if (verified.size >= VERIFIED_HEADERS) verified.clear();
      verified.set(header, user);
    }
    return allow(user, access);
  };
}
