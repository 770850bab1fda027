import { sendJson, type ResourceDispatcher } from '../context';
import { finishPage, pageListOptions, parsePageRequest } from '../paging';

/** `/v2/_catalog`: every repository that holds something, in lexical order, paged by `n` and `last`. */
export const catalogDispatcher: ResourceDispatcher = ({ store, query, res, baseUrl }, log) => ({
  GET: async () => {
    const page = parsePageRequest(query);
    const listed = await store.listRepositories(pageListOptions(page));
    const { names, headers } = finishPage(listed, page, `${baseUrl}/v2/_catalog`);
    log('listed %d repositories', names.length);
    sendJson(res, 200, { repositories: names }, headers);
  },
});
