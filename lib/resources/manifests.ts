/** `/v2/<name>/manifests/<reference>`: manifests by tag or digest, pushed, fetched and deleted. */
import { DELETE, PULL, PUSH } from '../access';
import { readWholeBody } from '../body';
import type { MethodTable, RequestContext } from '../context';
import { RegistryError } from '../errors';
import type { Log } from '../log';
import { MAX_TAGS_PER_PUSH, parseReference, type ManifestReference } from '../manifest';
import { bodyIdleLimit } from '../meter';
import { validateTag } from '../names';
import { sendEmpty, sendManifest } from '../respond';

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

  /**
   * The reference of a GET, HEAD or DELETE: one that is neither a tag nor a digest names no
   * manifest, so it is 404 `MANIFEST_UNKNOWN` (the spec's answer for a manifest not found).
   */
  private get storedReference(): ManifestReference {
    try {
      return this.reference;
    } catch (error) {
      if (!(error instanceof RegistryError)) throw error;
      throw new RegistryError('MANIFEST_UNKNOWN', `no manifest is named ${this.context.params.reference.slice(0, 200)}: ${String(error.detail)}`);
    }
  }

  /** GET/HEAD: the manifest's exact bytes, typed as it was pushed. */
  async fetch(withBody: boolean): Promise<void> {
    const { store, mirror, repository, res } = this.context;
    const { manifests } = store;
    const reference = this.storedReference;
    const manifest = mirror ? await mirror.manifest(repository, reference) : await manifests.resolve(repository, reference);
    if (!manifest) throw unknown(reference, repository);
    sendManifest(res, manifest, withBody ? await manifests.read(manifest) : undefined);
  }

  /**
   * PUT: validate and store a manifest, moving the tag when the reference is one; a push by
   * digest may set tags with `tag` query parameters, each confirmed by an `OCI-Tag` header.
   */
  async put(): Promise<void> {
    const { store, repository, req, res, baseUrl } = this.context;
    const { manifests } = store;
    const reference = this.reference;
    const tags = this.queryTags(reference);
    const body = await this.readBody();
    const { digest, manifest } = await manifests.put(repository, reference, body, req.headers['content-type'], tags);
    this.log('stored %s as %s (%d bytes)%s', manifest.mediaType, digest.value, body.length, reference.tag ? ` tagged ${reference.tag}` : tags.length ? ` tagged ${tags.join(', ')}` : '');
    sendEmpty(res, 201, {
      Location: `${baseUrl}/v2/${repository}/manifests/${digest.value}`,
      'Docker-Content-Digest': digest.value,
      ...(manifest.subject ? { 'OCI-Subject': manifest.subject.value } : {}),
      ...(tags.length ? { 'OCI-Tag': tags } : {}),
    });
  }

  /** The distinct, valid `tag` query parameters of a push by digest (none may come with a push by tag). */
  private queryTags(reference: ManifestReference): string[] {
    const tags = [...new Set(this.context.query.getAll('tag'))];
    if (tags.length === 0) return tags;
    if (reference.tag !== undefined) {
      throw new RegistryError('TAG_INVALID', `tag query parameters go with a push by digest; this push names tag ${reference.tag} in its path`);
    }
    if (tags.length > MAX_TAGS_PER_PUSH) {
      throw new RegistryError('TAG_INVALID', `at most ${MAX_TAGS_PER_PUSH} tags can be set by one push, not ${tags.length}`, { status: 414 });
    }
    return tags.map(validateTag);
  }

  /** DELETE: by digest removes the manifest and its tags; by tag removes only the tag. */
  async delete(): Promise<void> {
    const { store, repository, res } = this.context;
    const { manifests } = store;
    const reference = this.storedReference;
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

/** The methods of `/v2/<name>/manifests/<reference>`. */
export const manifestMethods: MethodTable = {
  GET: { actions: PULL, handle: (context, log) => new ManifestHandler(context, log).fetch(true) },
  HEAD: { actions: PULL, handle: (context, log) => new ManifestHandler(context, log).fetch(false) },
  PUT: { actions: PUSH, handle: (context, log) => new ManifestHandler(context, log).put() },
  DELETE: { actions: DELETE, deletes: true, handle: (context, log) => new ManifestHandler(context, log).delete() },
};
