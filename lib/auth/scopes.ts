/** The token protocol's scopes and `access` claims: parsing, matching with the `*` action, and narrowing. */
import type { AccessRequest } from '../access';

/**
 * One entry of a token's `access` claim, and one requested scope: `actions` on the resource
 * `type:name` (`repository:team/app:pull,push`, `registry:catalog:*`). `*` stands for every action.
 */
export interface ResourceActions {
  type: string;
  name: string;
  actions: string[];
}

/** The action that stands for every action. */
export const ANY_ACTION = '*';

/**
 * Parses `scope` parameters (each may hold several space-separated scopes) into resources.
 * The name is everything between the first and the last colon, since a name may carry a
 * `host:port/` part; a `type(class)` keeps only its type. Malformed scopes are dropped.
 */
export function parseScopes(scopes: Iterable<string>): ResourceActions[] {
  const parsed: ResourceActions[] = [];
  for (const scope of [...scopes].flatMap((each) => each.split(' '))) {
    const first = scope.indexOf(':');
    const last = scope.lastIndexOf(':');
    if (first <= 0 || last === first) continue;
    const type = scope.slice(0, first).replace(/\(.*\)$/, '');
    const name = scope.slice(first + 1, last);
    const actions = scope
      .slice(last + 1)
      .split(',')
      .filter(Boolean);
    if (type && name && actions.length) parsed.push({ type, name, actions: [...new Set(actions)] });
  }
  return merge(parsed);
}

/** Formats resources as one `scope` value. */
export function formatScopes(resources: ResourceActions[]): string {
  return resources.map(({ type, name, actions }) => `${type}:${name}:${actions.join(',')}`).join(' ');
}

/** Whether `access` grants `action` on `type:name`, where a granted `*` covers every action. */
export function grants(access: readonly ResourceActions[], type: string, name: string, action: string): boolean {
  return access.some((entry) => entry.type === type && entry.name === name && (entry.actions.includes(ANY_ACTION) || entry.actions.includes(action)));
}

/**
 * What a token may hold for `requested` when the host granted `granted`: per requested resource,
 * the actions both name (`*` on one side yields the other side's actions). Resources left with no
 * action are kept, empty, as the reference token services answer a refused scope.
 */
export function narrow(requested: ResourceActions[], granted: readonly ResourceActions[]): ResourceActions[] {
  return merge(requested).map(({ type, name, actions }) => {
    const allowed = new Set(granted.filter((entry) => entry.type === type && entry.name === name).flatMap((entry) => entry.actions));
    const kept = allowed.has(ANY_ACTION) ? actions : actions.includes(ANY_ACTION) ? [...allowed] : actions.filter((action) => allowed.has(action));
    return { type, name, actions: kept };
  });
}

/** The scopes a registry question needs, as the router's {@link AccessRequest} puts it. */
export function requiredScopes(access: AccessRequest): ResourceActions[] {
  if (!access.repository) return access.catalog ? [{ type: 'registry', name: 'catalog', actions: [ANY_ACTION] }] : [];
  return [{ type: 'repository', name: access.repository, actions: access.actions }];
}

/** Joins entries for the same resource, keeping each action once. */
function merge(resources: ResourceActions[]): ResourceActions[] {
  const byKey = new Map<string, ResourceActions>();
  for (const { type, name, actions } of resources) {
    const key = `${type}:${name}`;
    const entry = byKey.get(key) ?? { type, name, actions: [] };
    entry.actions = [...new Set([...entry.actions, ...actions])];
    byKey.set(key, entry);
  }
  return [...byKey.values()];
}
