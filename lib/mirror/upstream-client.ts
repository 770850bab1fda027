/** Requests to one upstream registry: failover across its URLs, redirects, and anonymous, Basic or Bearer-token auth. */
import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import https from 'node:https';
import { moduleLogger } from '../log';

/** Credentials the mirror presents to an upstream: as Basic auth, or to its token realm. */
export interface UpstreamCredentials {
  username: string;
  password: string;
}

/** Settings of an {@link UpstreamClient}. */
export interface UpstreamClientOptions {
  /** Base URLs of the same registry, tried in order. */
  urls: string[];
  credentials?: UpstreamCredentials;
  /** Milliseconds to wait for a connection, a response, or the next byte of a body. */
  timeout: number;
}

/** An upstream's answer; its body must be read or destroyed by the caller. */
export interface UpstreamResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: IncomingMessage;
}

/** No URL of the upstream gave an answer the mirror can use (down, timed out, or failing with 5xx). */
export class UpstreamUnavailableError extends Error {
  constructor(
    message: string,
    /** Whether an upstream answered at all (with a 5xx) rather than being unreachable. */
    readonly answered: boolean,
  ) {
    super(message);
    this.name = 'UpstreamUnavailableError';
  }
}

/** A token realm that refused the mirror or answered without a token. */
export class UpstreamAuthError extends Error {
  override name = 'UpstreamAuthError';
}

interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

interface Token {
  token: string;
  /** Milliseconds since the epoch after which it is not used. */
  expires: number;
}

const REDIRECTS = [301, 302, 303, 307, 308];
const MAX_REDIRECTS = 5;
/** Tokens are dropped this long before the expiry the realm gave, so none expires in flight. */
const TOKEN_MARGIN = 5_000;
/** Realms that give no `expires_in` issue tokens valid this long (the token spec's default). */
const DEFAULT_TOKEN_SECONDS = 60;
const MAX_TOKEN_RESPONSE = 1024 * 1024;
const MAX_CACHED_TOKENS = 1000;

const log = moduleLogger('upstream');

/**
 * One upstream registry. Tokens are cached per scope until shortly before they expire; once an
 * upstream has asked for Basic auth, credentials are sent with every later request. The URL that
 * last answered is tried first.
 */
export class UpstreamClient {
  private preferred = 0;
  private sendBasic = false;
  private readonly tokens = new Map<string, Promise<Token>>();
  private readonly agents = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };

  constructor(private readonly options: UpstreamClientOptions) {}

  /** The URL tried first, for log lines and events. */
  get url(): string {
    return this.options.urls[this.preferred];
  }

  /**
   * Sends `method path` (path from `/v2/…`) to the first URL that answers below 500, with the
   * auth `scope` (`repository:<name>:pull`) needs. 401s are answered by authenticating and
   * retrying once; what comes back may still be a 401 or 403 when the upstream refuses.
   */
  async request(method: 'GET' | 'HEAD', path: string, scope: string, headers: Record<string, string> = {}): Promise<UpstreamResponse> {
    const { urls } = this.options;
    const failures: string[] = [];
    let answered = false;
    for (let attempt = 0; attempt < urls.length; attempt++) {
      const index = (this.preferred + attempt) % urls.length;
      const url = new URL(path, urls[index]);
      try {
        const response = await this.authorized(method, url, scope, headers);
        if (response.status < 500) {
          this.preferred = index;
          return response;
        }
        answered = true;
        response.body.resume();
        failures.push(`${urls[index]} answered ${response.status}`);
      } catch (error) {
        if (error instanceof UpstreamAuthError) throw error;
        failures.push(`${urls[index]}: ${(error as Error).message}`);
      }
    }
    log({ scope })('%s %s failed: %s', method, path, failures.join('; '));
    throw new UpstreamUnavailableError(failures.join('; '), answered);
  }

  /** One request with the auth the upstream wants, learning it from a 401 when not known yet. */
  private async authorized(method: string, url: URL, scope: string, headers: Record<string, string>): Promise<UpstreamResponse> {
    const cached = await this.cachedToken(scope);
    const first = await this.send(method, url, { ...headers, ...this.authHeader(cached) });
    if (first.status !== 401) return first;
    const challenge = parseChallenge(first.headers['www-authenticate']);
    const { credentials } = this.options;
    let retryAuth: Record<string, string>;
    if (challenge?.scheme === 'bearer' && challenge.params.realm) {
      // A cached token that got a 401 is no good any more.
      if (cached) this.tokens.delete(scope);
      retryAuth = this.authHeader(await this.token(challenge, scope));
    } else if (challenge?.scheme === 'basic' && credentials && !this.sendBasic) {
      this.sendBasic = true;
      retryAuth = this.authHeader(undefined);
    } else {
      return first;
    }
    first.body.resume();
    return this.send(method, url, { ...headers, ...retryAuth });
  }

  private authHeader(token: Token | undefined): Record<string, string> {
    if (token) return { Authorization: `Bearer ${token.token}` };
    const { credentials } = this.options;
    if (this.sendBasic && credentials) return { Authorization: basicAuth(credentials) };
    return {};
  }

  /** The unexpired token cached for `scope`, if any. */
  private async cachedToken(scope: string): Promise<Token | undefined> {
    const pending = this.tokens.get(scope);
    if (!pending) return undefined;
    const token = await pending.catch(() => undefined);
    if (token && token.expires > Date.now()) return token;
    if (this.tokens.get(scope) === pending) this.tokens.delete(scope);
    return undefined;
  }

  /** A token for `scope` from the challenge's realm; concurrent requests for one scope share one fetch. */
  private token(challenge: Challenge, scope: string): Promise<Token> {
    const pending = this.tokens.get(scope);
    if (pending) return pending;
    const fetched = this.fetchToken(challenge, scope);
    if (this.tokens.size >= MAX_CACHED_TOKENS) this.tokens.clear();
    this.tokens.set(scope, fetched);
    fetched.catch(() => {
      if (this.tokens.get(scope) === fetched) this.tokens.delete(scope);
    });
    return fetched;
  }

  private async fetchToken(challenge: Challenge, scope: string): Promise<Token> {
    const realm = new URL(challenge.params.realm);
    if (challenge.params.service) realm.searchParams.set('service', challenge.params.service);
    realm.searchParams.set('scope', challenge.params.scope ?? scope);
    const { credentials } = this.options;
    const response = await this.send('GET', realm, credentials ? { Authorization: basicAuth(credentials) } : {});
    const text = (await readBody(response.body, MAX_TOKEN_RESPONSE)).toString('utf8');
    if (response.status !== 200) throw new UpstreamAuthError(`the token realm ${realm.origin}${realm.pathname} answered ${response.status}`);
    let body: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      throw new UpstreamAuthError(`the token realm ${realm.origin}${realm.pathname} answered without JSON`);
    }
    const token = typeof body.token === 'string' ? body.token : body.access_token;
    if (typeof token !== 'string' || !token) throw new UpstreamAuthError(`the token realm ${realm.origin}${realm.pathname} gave no token`);
    const seconds = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : DEFAULT_TOKEN_SECONDS;
    log({ scope })('got a token from %s for %d s', realm.origin, seconds);
    return { token, expires: Date.now() + seconds * 1000 - TOKEN_MARGIN };
  }

  /** One HTTP exchange, following redirects (credentials go only to the same origin). */
  private send(method: string, url: URL, headers: Record<string, string>, redirects = MAX_REDIRECTS): Promise<UpstreamResponse> {
    return new Promise((resolve, reject) => {
      const secure = url.protocol === 'https:';
      const req = (secure ? https : http).request(
        url,
        { method, headers: { 'User-Agent': 'express-oci-registry-mirror', ...headers }, agent: secure ? this.agents.https : this.agents.http, timeout: this.options.timeout },
        (res) => {
          const status = res.statusCode ?? 0;
          const location = res.headers.location;
          if (REDIRECTS.includes(status) && location && redirects > 0) {
            res.resume();
            const next = new URL(location, url);
            const { Authorization: _dropped, ...anonymous } = headers;
            resolve(this.send(method, next, next.origin === url.origin ? headers : anonymous, redirects - 1));
            return;
          }
          resolve({ status, headers: res.headers, body: res });
        },
      );
      // The socket's idle timer covers connecting, waiting for the answer and each gap in its body.
      req.on('timeout', () => req.destroy(new Error(`no answer for ${this.options.timeout} ms`)));
      req.on('error', reject);
      req.end();
    });
  }
}

function basicAuth({ username, password }: UpstreamCredentials): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
}

/** Parses `Bearer realm="…",service="…",scope="…"` (or `Basic realm="…"`). */
export function parseChallenge(header: string | undefined): Challenge | undefined {
  const match = header && /^\s*(\w+)\s*(.*)$/.exec(header);
  if (!match) return undefined;
  const params: Record<string, string> = {};
  for (const param of match[2].matchAll(/(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))/g)) {
    params[param[1].toLowerCase()] = param[2] !== undefined ? param[2].replace(/\\(.)/g, '$1') : param[3];
  }
  return { scheme: match[1].toLowerCase(), params };
}

/** Reads a small body whole, failing past `limit` bytes. */
export async function readBody(body: IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      body.destroy();
      throw new Error(`the upstream's answer is larger than ${limit} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}
