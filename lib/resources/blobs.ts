/** `/v2/<name>/blobs/<digest>`: a blob's bytes, whole or a range, and unlinking it from the repository. */
import { DELETE, PULL } from '../access';
import type { MethodTable, RequestContext } from '../context';
import { parseDigest } from '../digest';
import { RegistryError } from '../errors';
import type { Log } from '../log';
import type { MirroredBlob } from '../mirror/mirror';
import { parseRequestRange } from '../range';
import { sendBlob, sendEmpty } from '../respond';

/** One request against `/v2/<name>/blobs/<digest>`. */
class BlobHandler {
  constructor(
    private readonly context: RequestContext,
    private readonly log: Log,
  ) {}

  /** GET/HEAD: the blob's bytes (whole or a range) and its metadata. */
  async fetch(withBody: boolean): Promise<void> {
    const { store, mirror, repository, req, res } = this.context;
    const digest = parseDigest(this.context.params.digest);
    const info: MirroredBlob | undefined = mirror ? await mirror.blob(repository, digest, withBody) : await store.blobs.info(repository, digest);
    if (!info) throw new RegistryError('BLOB_UNKNOWN', `${digest.value} is not in ${repository}`);
    const range = parseRequestRange(req.headers.range, info.size);
    if (range === 'unsatisfiable') {
      throw new RegistryError('RANGE_INVALID', `${req.headers.range} is outside ${info.size} bytes`, {
        headers: { 'Content-Range': `bytes */${info.size}` },
      });
    }
    const url = withBody && !info.send ? await store.blobs.url(digest) : undefined;
    if (url) {
      this.log('redirecting to the storage for %s', digest.value);
      sendEmpty(res, 307, { Location: url, 'Docker-Content-Digest': digest.value });
      return;
    }
    if (withBody) this.log('sending %s (%d bytes)%s', digest.value, range ? range.end - range.start + 1 : info.size, info.send ? ' as it arrives from the upstream' : '');
    await sendBlob(res, { digest, size: info.size }, range, withBody ? () => store.blobs.open(digest, range) : undefined, info.send);
  }

  /** DELETE: unlink the blob from this repository. */
  async delete(): Promise<void> {
    const { store, repository, res } = this.context;
    const digest = parseDigest(this.context.params.digest);
    if (!(await store.blobs.unlink(repository, digest))) {
      throw new RegistryError('BLOB_UNKNOWN', `${digest.value} is not in ${repository}`);
    }
    this.log('deleted %s', digest.value);
    sendEmpty(res, 202);
  }
}

/** The methods of `/v2/<name>/blobs/<digest>`. */
export const blobMethods: MethodTable = {
  GET: { actions: PULL, handle: (context, log) => new BlobHandler(context, log).fetch(true) },
  HEAD: { actions: PULL, handle: (context, log) => new BlobHandler(context, log).fetch(false) },
  DELETE: { actions: DELETE, deletes: true, handle: (context, log) => new BlobHandler(context, log).delete() },
};
