import { requireDeleteEnabled, sendEmpty, sendStream, type RequestContext, type ResourceDispatcher } from '../context';
import { parseDigest } from '../digest';
import { RegistryError } from '../errors';
import type { Log } from '../log';
import type { MirroredBlob } from '../mirror/mirror';
import { parseRequestRange } from '../range';

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
    const headers: Record<string, string> = {
      'Content-Type': 'application/octet-stream',
      'Docker-Content-Digest': digest.value,
      'Accept-Ranges': 'bytes',
      ETag: `"${digest.value}"`,
      // Content is immutable; no-transform also keeps compression middleware away from blobs.
      'Cache-Control': 'max-age=31536000, immutable, no-transform',
    };
    if (range) headers['Content-Range'] = `bytes ${range.start}-${range.end}/${info.size}`;
    const length = range ? range.end - range.start + 1 : info.size;
    res.statusCode = range ? 206 : 200;
    for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
    res.setHeader('Content-Length', length);
    if (!withBody || length === 0) {
      res.end();
      return;
    }
    this.log('sending %s (%d bytes)%s', digest.value, length, info.send ? ' as it arrives from the upstream' : '');
    if (info.send) await info.send(res, range);
    else await sendStream(await store.blobs.open(digest, range), res);
  }

  /** DELETE: unlink the blob from this repository. */
  async delete(): Promise<void> {
    const { store, repository, options, res } = this.context;
    requireDeleteEnabled(options);
    const digest = parseDigest(this.context.params.digest);
    if (!(await store.blobs.unlink(repository, digest))) {
      throw new RegistryError('BLOB_UNKNOWN', `${digest.value} is not in ${repository}`);
    }
    this.log('deleted %s', digest.value);
    sendEmpty(res, 202);
  }
}

/** The blob dispatcher: `/v2/<name>/blobs/<digest>`. */
export const blobDispatcher: ResourceDispatcher = (context, log) => {
  const handler = new BlobHandler(context, log);
  return {
    GET: () => handler.fetch(true),
    HEAD: () => handler.fetch(false),
    DELETE: () => handler.delete(),
  };
};
