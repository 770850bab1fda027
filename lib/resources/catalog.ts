/** `/v2/_catalog`: every repository that holds something and that the caller may see, in lexical order, paged by `n` and `last`. */
import type { MethodTable, RequestContext } from '../context';
import type { Log } from '../log';
import { finishPage, pageListOptions, parsePageRequest } from '../paging';
import { sendJson } from '../respond';

async function listRepositories({ store, query, res, baseUrl, mayList }: RequestContext, log: Log): Promise<void> {
  const page = parsePageRequest(query);
  const { after, limit } = pageListOptions(page);
  // Filter before paging, so a page holds `n` names the caller may see whenever that many exist.
  const visible: string[] = [];
  for (const name of await store.blobs.listRepositories({ after })) {
    if (limit !== undefined && visible.length >= limit) break;
    if (await mayList(name)) visible.push(name);
  }
  const { names, headers } = finishPage(visible, page, `${baseUrl}/v2/_catalog`);
  log('listed %d repositories', names.length);
  sendJson(res, 200, { repositories: names }, headers);
}

/** The methods of `/v2/_catalog`: it asks for no action itself, then lists only what the caller may see. */
export const catalogMethods: MethodTable = {
  GET: { actions: [], catalog: true, handle: listRepositories },
};
