import { sendJson, type ResourceDispatcher } from '../context';
import { parseDigest } from '../digest';
import { OCI_INDEX } from '../manifest';

/**
 * `/v2/<name>/referrers/<digest>`: an image index of the manifests whose `subject` is the digest
 * (empty, never a 404, when there are none), optionally filtered by `?artifactType=`.
 */
export const referrersDispatcher: ResourceDispatcher = ({ store, repository, params, query, res }, log) => ({
  GET: async () => {
    const subject = parseDigest(params.digest);
    const artifactType = query.get('artifactType') ?? undefined;
    const descriptors = await store.manifests.referrers(repository, subject, artifactType);
    log('%d referrers of %s%s', descriptors.length, subject.value, artifactType === undefined ? '' : ` of type ${artifactType}`);
    sendJson(
      res,
      200,
      { schemaVersion: 2, mediaType: OCI_INDEX, manifests: descriptors },
      { 'Content-Type': OCI_INDEX, ...(artifactType === undefined ? {} : { 'OCI-Filters-Applied': 'artifactType' }) },
    );
  },
});
