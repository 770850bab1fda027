/** `/v2/<name>/blobs/uploads/[<id>]`: the push protocol's upload sessions, mounts and monolithic uploads. */
import { PULL, PUSH } from '../access';
import { hasBody, requestBody } from '../body';
import type { MethodTable, RequestContext } from '../context';
import { isDigest, parseAlgorithm, parseDigest, type Digest, type DigestAlgorithm } from '../digest';
import { RegistryError } from '../errors';
import type { Log } from '../log';
import { isName } from '../names';
import { parseChunkRange, rangeError, uploadRangeHeader } from '../range';
import { sendEmpty } from '../respond';
import type { UploadSession } from '../store';

/** One request against `/v2/<name>/blobs/uploads/[<id>]`. */
class UploadHandler {
  constructor(
    private readonly context: RequestContext,
    private readonly log: Log,
  ) {}

  /**
   * POST: mount an existing blob, take a whole blob in one request, or open a session. A mount
   * that cannot be done (nothing to mount, or a malformed `mount` or `from`, such as the
   * `from=<repository>:<tag>` some clients send) opens a session, as the spec asks.
   */
  async start(): Promise<void> {
    const { store, repository, query, options } = this.context;
    const mount = query.get('mount');
    const from = query.get('from');
    const monolithicDigest = mount === null && query.has('digest') ? parseDigest(query.get('digest')) : undefined;
    const algorithm = this.sessionAlgorithm(monolithicDigest);
    if (mount !== null && isDigest(mount) && (from === null || isName(from))) {
      const digest = parseDigest(mount);
      const mounted = await store.blobs.mount(repository, digest, from ?? undefined, options.mountFromAnyRepository);
      if (mounted) {
        this.log('mounted %s from %s', digest.value, from ?? 'the shared store');
        this.sendBlobCreated(digest);
        return;
      }
    } else if (mount !== null) {
      this.log('cannot mount %s from %s: opening a session', mount.slice(0, 80), from?.slice(0, 80) ?? 'the shared store');
    }
    const session = await store.uploads.start(repository, algorithm);
    this.log('started upload %s', session.id);
    if (monolithicDigest) {
      try {
        await this.appendBody(session, monolithicDigest);
        await store.uploads.complete(session, monolithicDigest);
      } catch (error) {
        // The client never learnt this session's id, so nothing can resume it.
        await store.uploads.cancel(session);
        throw error;
      }
      this.sendBlobCreated(monolithicDigest);
      return;
    }
    const minimum = store.uploads.minChunkSize;
    sendEmpty(this.context.res, 202, {
      ...this.sessionHeaders(session, 0),
      ...(minimum ? { 'OCI-Chunk-Min-Length': minimum } : {}),
    });
  }

  /**
   * What a new session hashes its bytes with: `?digest-algorithm=` (checked before anything is
   * stored), else a monolithic upload's digest algorithm, else sha256.
   */
  private sessionAlgorithm(monolithicDigest: Digest | undefined): DigestAlgorithm {
    const requested = this.context.query.get('digest-algorithm');
    if (requested === null) return monolithicDigest?.algorithm ?? 'sha256';
    const algorithm = parseAlgorithm(requested);
    if (monolithicDigest && monolithicDigest.algorithm !== algorithm) {
      throw new RegistryError('DIGEST_INVALID', `digest-algorithm=${algorithm} disagrees with the digest ${monolithicDigest.value}`);
    }
    return algorithm;
  }

  /** GET/HEAD: how much of the session is stored. */
  async status(): Promise<void> {
    const session = await this.findSession();
    sendEmpty(this.context.res, 204, this.sessionHeaders(session, await this.context.store.uploads.size(session)));
  }

  /** PATCH: append a chunk (with Content-Range) or a streamed body (without). */
  async append(): Promise<void> {
    const session = await this.findSession();
    const size = await this.appendBody(session);
    sendEmpty(this.context.res, 202, this.sessionHeaders(session, size));
  }

  /** PUT: take an optional last chunk, verify the digest, publish the blob. */
  async complete(): Promise<void> {
    const digest = parseDigest(this.context.query.get('digest'));
    const session = await this.findSession();
    if (hasBody(this.context.req)) await this.appendBody(session, digest);
    const { size } = await this.context.store.uploads.complete(session, digest);
    this.log('committed %s (%d bytes)', digest.value, size);
    this.sendBlobCreated(digest);
  }

  /** DELETE: cancel the session. */
  async cancel(): Promise<void> {
    const session = await this.findSession();
    await this.context.store.uploads.cancel(session);
    this.log('cancelled');
    sendEmpty(this.context.res, 204);
  }

  private findSession(): Promise<UploadSession> {
    return this.context.store.uploads.find(this.context.repository, this.context.params.uploadId);
  }

  /**
   * Appends the request body, applying the spec's chunk rules: a Content-Range must start at the
   * stored size and agree with Content-Length; without one the body is appended as it streams.
   * `digest` is the blob's, when the request names it.
   */
  private async appendBody(session: UploadSession, digest?: Digest): Promise<number> {
    const { req, store } = this.context;
    const size = await store.uploads.size(session);
    const contentRange = req.headers['content-range'];
    const contentLength = req.headers['content-length'];
    let declaredLength: number | undefined;
    if (contentRange !== undefined) {
      const range = parseChunkRange(contentRange, size);
      declaredLength = range.end - range.start + 1;
      if (range.start !== size) {
        throw rangeError(size, `the chunk starts at ${range.start}, but ${size} bytes are stored`);
      }
      if (contentLength !== undefined && Number(contentLength) !== declaredLength) {
        throw rangeError(size, `Content-Length ${contentLength} does not match Content-Range ${contentRange}`);
      }
    }
    const newSize = await store.uploads.append(session, size, requestBody(req, 'BLOB_UPLOAD_INVALID'), {
      declaredLength,
      announcedLength: contentLength === undefined ? undefined : Number(contentLength),
      digest,
    });
    if (declaredLength !== undefined && newSize - size !== declaredLength) {
      throw rangeError(newSize, `the chunk declared ${declaredLength} bytes but ${newSize - size} arrived`);
    }
    this.log('appended %d bytes, now %d', newSize - size, newSize);
    return newSize;
  }

  private sessionHeaders(session: UploadSession, size: number): Record<string, string> {
    const { baseUrl, repository } = this.context;
    return {
      Location: `${baseUrl}/v2/${repository}/blobs/uploads/${session.id}`,
      Range: uploadRangeHeader(size),
      'Docker-Upload-UUID': session.id,
    };
  }

  private sendBlobCreated(digest: Digest): void {
    const { baseUrl, repository, res } = this.context;
    sendEmpty(res, 201, {
      Location: `${baseUrl}/v2/${repository}/blobs/${digest.value}`,
      'Docker-Content-Digest': digest.value,
    });
  }
}

/** The methods of `/v2/<name>/blobs/uploads/`: a mount from another repository also needs pull there. */
export const uploadStartMethods: MethodTable = {
  POST: {
    actions: PUSH,
    // A malformed `from` mounts nothing (the request opens a session in its own repository), so it needs no access.
    extraAccess: (query) => {
      const from = query.get('mount') !== null ? query.get('from') : null;
      return from !== null && isName(from) ? [{ repository: from, actions: PULL }] : [];
    },
    handle: (context, log) => new UploadHandler(context, log).start(),
  },
};

/** The methods of `/v2/<name>/blobs/uploads/<id>`. */
export const uploadSessionMethods: MethodTable = {
  GET: { actions: PUSH, handle: (context, log) => new UploadHandler(context, log).status() },
  HEAD: { actions: PUSH, handle: (context, log) => new UploadHandler(context, log).status() },
  PATCH: { actions: PUSH, handle: (context, log) => new UploadHandler(context, log).append() },
  PUT: { actions: PUSH, handle: (context, log) => new UploadHandler(context, log).complete() },
  DELETE: { actions: PUSH, handle: (context, log) => new UploadHandler(context, log).cancel() },
};
