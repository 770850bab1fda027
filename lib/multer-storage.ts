/** The multer bridge: a multer storage engine that stores each form file as a registry blob. */
import type { Request } from 'express';
import { pipeline, Transform, type Readable } from 'node:stream';
import { parseDigest } from './digest';
import { RegistryError } from './errors';
import { moduleLogger } from './log';
import { validateName } from './names';
import type { RegistryRouter } from './router';

/** A file as multer hands it to a storage engine (what `@types/multer` calls `Express.Multer.File`, before storage). */
export interface MulterFileStream {
  fieldname: string;
  originalname: string;
  encoding: string;
  mimetype: string;
  stream: Readable;
}

/** What the engine adds to each `req.file` / `req.files` entry: the stored blob's descriptor. */
export interface RegistryFileInfo {
  /** The repository the blob was stored in. */
  repository: string;
  /** `sha256:<hex>` of the file's bytes. */
  digest: string;
  size: number;
  /** The media type to describe the blob with: the part's `Content-Type` unless `mediaType` says otherwise. */
  mediaType: string;
}

/** Options for {@link multerStorage}. */
export interface MulterStorageOptions {
  /**
   * The repository each file is stored in: a name, or a function of the request and file. Text
   * fields sent before the file part are already on `req.body`, so a form can choose it.
   */
  repository: string | ((req: Request, file: MulterFileStream) => string | Promise<string>);
  /** The media type recorded for a file. Default: the part's `Content-Type`, else `application/octet-stream`. */
  mediaType?: (req: Request, file: MulterFileStream) => string;
}

/**
 * A multer storage engine (`_handleFile`/`_removeFile`): structurally a `multer.StorageEngine`,
 * without this package importing multer.
 */
export interface RegistryStorageEngine {
  _handleFile(req: Request, file: MulterFileStream, callback: (error?: unknown, info?: Partial<RegistryFileInfo>) => void): void;
  _removeFile(req: Request, file: MulterFileStream & Partial<RegistryFileInfo>, callback: (error: Error | null) => void): void;
}

const MEDIA_TYPE = /^[A-Za-z0-9][\w!#$&^.+-]*\/[A-Za-z0-9][\w!#$&^.+-]*$/;

/**
 * A multer storage engine that streams each uploaded file of a `multipart/form-data` request
 * into the registry as a blob: through an upload session, the digest computed while the bytes
 * stream in, nothing buffered whole, held to the registry's `maxBlobSize`,
 * `maxUploadsPerRepository` and `bodyIdleTimeout` as a push would be. Each file on `req.file`/`req.files` gets its descriptor
 * (`repository`, `digest`, `size`, `mediaType`). When multer abandons the request (a limit, a
 * later file failing, the client going away) `_removeFile` unlinks the blobs this request added.
 *
 * @example
 * ```ts
 * const registry = createRegistryRouter({ storage });
 * const upload = multer({ storage: multerStorage(registry, { repository: (req) => req.body.repository }) });
 * app.post('/upload', upload.array('files'), (req, res) => res.json(req.files));
 * ```
 */
export function multerStorage(registry: Pick<RegistryRouter, 'store'>, options: MulterStorageOptions): RegistryStorageEngine {
  const { store } = registry;
  const logFor = moduleLogger('multer');
  // Blobs each request linked that were not in their repository before, so removal never
  // unlinks a blob someone else pushed.
  const addedByRequest = new WeakMap<Request, Set<string>>();

  async function handleFile(req: Request, file: MulterFileStream): Promise<RegistryFileInfo> {
    const repository = validateName(typeof options.repository === 'string' ? options.repository : await options.repository(req, file));
    const mediaType = options.mediaType?.(req, file) ?? (MEDIA_TYPE.test(file.mimetype) ? file.mimetype : 'application/octet-stream');
    const log = logFor({ repository });
    // pipeline turns a part that closes without ending (the request torn down) into an error, and
    // a part multer cut at its fileSize limit fails at its end, so neither is stored.
    const body = new Transform({
      transform: (chunk, _encoding, callback) => callback(null, chunk),
      flush: (callback) =>
        callback(
          (file.stream as Readable & { truncated?: boolean }).truncated
            ? new RegistryError('SIZE_INVALID', `${file.originalname.slice(0, 200)} is larger than the upload limit`, { status: 413 })
            : null,
        ),
    });
    pipeline(file.stream, body, () => undefined);
    try {
      const { digest, size, alreadyLinked } = await store.putBlob(repository, body);
      if (!alreadyLinked) {
        const added = addedByRequest.get(req) ?? new Set<string>();
        added.add(`${repository}@${digest.value}`);
        addedByRequest.set(req, added);
      }
      log('stored form file %s as %s (%d bytes)', file.originalname, digest.value, size);
      return { repository, digest: digest.value, size, mediaType };
    } catch (error) {
      log('form file %s failed: %s', file.originalname, (error as Error).message);
      throw error;
    }
  }

  async function removeFile(req: Request, file: Partial<RegistryFileInfo>): Promise<void> {
    if (file.repository === undefined || file.digest === undefined) return;
    const key = `${file.repository}@${file.digest}`;
    if (!addedByRequest.get(req)?.delete(key)) return;
    await store.blobs.unlink(file.repository, parseDigest(file.digest));
    logFor({ repository: file.repository })('removed form file %s of an abandoned request', file.digest);
  }

  return {
    _handleFile(req, file, callback) {
      handleFile(req, file).then(
        (info) => callback(null, info),
        (error: unknown) => {
          // Drain the rest of the part, so that multer can go on to its error handling.
          file.stream.resume();
          callback(error);
        },
      );
    },
    _removeFile(req, file, callback) {
      removeFile(req, file).then(
        () => callback(null),
        (error: Error) => callback(error),
      );
    },
  };
}
