/** The types a resource's method table is written in: the request as the router sees it, its context, and how a method is answered. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AccessRequest, Action } from './access';
import type { Log } from './log';
import type { Mirror } from './mirror/mirror';
import type { RegistryStore } from './store';

/** The HTTP methods a resource's method table may answer. */
export type HttpMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** The request as the router sees it: Node's request plus what Express adds in every version. */
export interface RegistryRequest extends IncomingMessage {
  baseUrl: string;
  path: string;
}

/** Settings every resource reads, with defaults filled in. */
export interface ResolvedOptions {
  mountFromAnyRepository: boolean;
  deleteEnabled: boolean;
  maxManifestSize: number;
}

/** Everything a resource's handlers need for one request. */
export interface RequestContext {
  req: RegistryRequest;
  res: ServerResponse;
  /** Uploads, blobs, manifests, tags and referrers over the router's storage, with its limits. */
  store: RegistryStore;
  /** The mirror, when `repository` is under one of its prefixes. */
  mirror?: Mirror;
  options: ResolvedOptions;
  /** Where the router is mounted (`''` or e.g. `/r`), for building `Location` URLs. */
  baseUrl: string;
  /** The validated repository name, for routes that have one. */
  repository: string;
  /** Route parameters after the repository name (upload id, digest, reference), percent-decoded where safe. */
  params: Record<string, string>;
  query: URLSearchParams;
  /** Whether the catalog may list `repository` to the caller (always true without an `authorize` option). */
  mayList: (repository: string) => Promise<boolean>;
}

/** How a resource answers one HTTP method: the access it needs, and its handler. */
export interface MethodSpec {
  /** The actions the request needs on the route's repository (none: "may this caller use the registry"). */
  actions: Action[];
  /** Set when the method asks as the catalog does (see {@link AccessRequest.catalog}). */
  catalog?: true;
  /** Access needed beyond the route's repository (a mount's source), read from the query. */
  extraAccess?: (query: URLSearchParams) => AccessRequest[];
  /** Whether the method deletes, so that it gets 405 `UNSUPPORTED` while `deleteEnabled` is false. */
  deletes?: boolean;
  handle(context: RequestContext, log: Log): Promise<void>;
}

/** A resource's methods; a method that is absent gets a 405 with `Allow` listing the others. */
export type MethodTable = Partial<Record<HttpMethod, MethodSpec>>;
