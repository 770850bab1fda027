/** `/v2/<name>/tags/list`: the repository's tags in lexical order, paged by `n` and `last`. */
import { PULL } from '../access';
import type { MethodTable, RequestContext } from '../context';
import type { Log } from '../log';
import { finishPage, pageListOptions, parsePageRequest } from '../paging';
import { sendJson } from '../respond';

async function listTags({ store, repository, query, res, baseUrl }: RequestContext, log: Log): Promise<void> {
  const page = parsePageRequest(query);
  const listed = await store.manifests.listTags(repository, pageListOptions(page));
  const { names, headers } = finishPage(listed, page, `${baseUrl}/v2/${repository}/tags/list`);
  log('listed %d tags', names.length);
  sendJson(res, 200, { name: repository, tags: names }, headers);
}

/** The methods of `/v2/<name>/tags/list`. */
export const tagsMethods: MethodTable = {
  GET: { actions: PULL, handle: listTags },
};
