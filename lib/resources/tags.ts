import { sendJson, type ResourceDispatcher } from '../context';
import { finishPage, pageListOptions, parsePageRequest } from '../paging';

/** `/v2/<name>/tags/list`: the repository's tags in lexical order, paged by `n` and `last`. */
export const tagsDispatcher: ResourceDispatcher = ({ store, repository, query, res, baseUrl }, log) => ({
  GET: async () => {
    const page = parsePageRequest(query);
    const listed = await store.manifests.listTags(repository, pageListOptions(page));
    const { names, headers } = finishPage(listed, page, `${baseUrl}/v2/${repository}/tags/list`);
    log('listed %d tags', names.length);
    sendJson(res, 200, { name: repository, tags: names }, headers);
  },
});
