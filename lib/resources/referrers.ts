/**
 * `/v2/<name>/referrers/<digest>`: an image index of the manifests whose `subject` is the digest
 * (empty, never a 404, when there are none), optionally filtered by `?artifactType=`. A long list
 * comes in pages (see {@link REFERRERS_PAGE_SIZE}), each linking the next with `?last=<digest>`.
 */
import { PULL } from '../access';
import type { MethodTable, RequestContext } from '../context';
import { parseDigest } from '../digest';
import type { Log } from '../log';
import { OCI_INDEX } from '../manifest';
import { fitPage, REFERRERS_PAGE_SIZE } from '../paging';
import { sendJson } from '../respond';

async function listReferrers({ store, repository, params, query, res, baseUrl, options }: RequestContext, log: Log): Promise<void> {
  const subject = parseDigest(params.digest);
  const artifactType = query.get('artifactType') ?? undefined;
  const last = query.get('last');
  const after = last === null ? undefined : parseDigest(last);
  // One more than a page, to learn whether more remain.
  const listed = await store.manifests.referrers(repository, subject, artifactType, { after, limit: REFERRERS_PAGE_SIZE + 1 });
  const index = { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] as typeof listed };
  index.manifests = fitPage(listed, REFERRERS_PAGE_SIZE, index, options.maxManifestSize);
  const headers: Record<string, string> = { 'Content-Type': OCI_INDEX };
  if (artifactType !== undefined) headers['OCI-Filters-Applied'] = 'artifactType';
  if (index.manifests.length < listed.length) {
    const filter = artifactType === undefined ? '' : `&artifactType=${encodeURIComponent(artifactType)}`;
    const next = `${baseUrl}/v2/${repository}/referrers/${subject.value}?last=${encodeURIComponent(index.manifests[index.manifests.length - 1].digest)}${filter}`;
    headers.Link = `<${next}>; rel="next"`;
  }
  log('%d referrers of %s%s%s', index.manifests.length, subject.value, artifactType === undefined ? '' : ` of type ${artifactType}`, headers.Link ? ', more follow' : '');
  sendJson(res, 200, index, headers);
}

/** The methods of `/v2/<name>/referrers/<digest>`. */
export const referrersMethods: MethodTable = {
  GET: { actions: PULL, handle: listReferrers },
};
