import { readWholeBody } from '../body';
import { requireDeleteEnabled, sendEmpty, type RequestContext, type ResourceDispatcher } from '../context';
import { RegistryError } from '../errors';
import type { Log } from '../log';
import { parseReference, type ManifestReference } from '../manifest';
import { bodyIdleLimit } from '../meter';

/** One request against `/v2/<name>/manifests/<reference>`, the reference being a tag or a digest. */
class ManifestHandler {
  constructor(
    private readonly context: RequestContext,
    private readonly log: Log,
  ) {}

  /** The tag or digest in the path, parsed when a handler runs so that other methods get their 405. */
  private get reference(): ManifestReference {
    return parseReference(this.context.params.reference);
  }

  /** GET/HEAD: the manifest's exact bytes, typed as it was pushed. */
  async fetch(withBody: boolean): Promise<void> {
    const { store, repository, res } = this.context;
    const { manifests } = store;
    const reference = this.reference;
    const manifest = await manifests.resolve(repository, reference);
    if (!manifest) throw unknown(reference, repository);
    const body = withBody ? await manifests.read(manifest) : undefined;
    res.statusCode = 200;
    res.setHeader('Content-Type', manifest.mediaType);
    res.setHeader('Docker-Content-Digest', manifest.digest.value);
    res.setHeader('ETag', `"${manifest.digest.value}"`);
    res.setHeader('Content-Length', manifest.size);
    res.end(body);
  }

  /** PUT: validate and store a manifest, moving the tag when the reference is one. */
  async put(): Promise<void> {
    const { store, repository, req, res, baseUrl } = this.context;
    const { manifests } = store;
    const reference = this.reference;
    const body = await this.readBody();
    const { digest, manifest } = await manifests.put(repository, reference, body, req.headers['content-type']);
    this.log('stored %s as %s (%d bytes)%s', manifest.mediaType, digest.value, body.length, reference.tag ? ` tagged ${reference.tag}` : '');
    sendEmpty(res, 201, {
      Location: `${baseUrl}/v2/${repository}/manifests/${digest.value}`,
      'Docker-Content-Digest': digest.value,
      ...(manifest.subject ? { 'OCI-Subject': manifest.subject.value } : {}),
    });
  }

  /** DELETE: by digest removes the manifest and its tags; by tag removes only the tag. */
  async delete(): Promise<void> {
    const { store, repository, options, res } = this.context;
    const { manifests } = store;
    requireDeleteEnabled(options);
    const reference = this.reference;
    const { tag, digest } = reference;
    const deleted = tag !== undefined ? await manifests.deleteTag(repository, tag) : await manifests.delete(repository, digest);
    if (!deleted) throw unknown(reference, repository);
    this.log('deleted %s', tag ?? digest.value);
    sendEmpty(res, 202);
  }

  /** The body, whole, refusing more than `maxManifestSize` bytes without reading them all. */
  private readBody(): Promise<Buffer> {
    const { req, options, store } = this.context;
    const limit = options.maxManifestSize;
    return readWholeBody(req, {
      code: 'MANIFEST_INVALID',
      limit,
      overLimit: () => new RegistryError('MANIFEST_INVALID', `manifests are limited to ${limit} bytes`, { status: 413 }),
      idle: bodyIdleLimit(store.limits.bodyIdleTimeout, 'MANIFEST_INVALID'),
      ended: () => new RegistryError('MANIFEST_INVALID', 'the body ended early: the client closed the connection'),
    });
  }
}

function unknown({ tag, digest }: ManifestReference, repository: string): RegistryError {
  return new RegistryError('MANIFEST_UNKNOWN', `${tag !== undefined ? `tag ${tag}` : digest.value} is not in ${repository}`);
}

/** The manifest dispatcher: `/v2/<name>/manifests/<reference>`. */
export const manifestDispatcher: ResourceDispatcher = (context, log) => {
  const handler = new ManifestHandler(context, log);
  return {
    GET: () => handler.fetch(true),
    HEAD: () => handler.fetch(false),
    PUT: () => handler.put(),
    DELETE: () => handler.delete(),
  };
};
