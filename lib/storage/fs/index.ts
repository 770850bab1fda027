/** FileSystemStorage: the registry in a folder, the embedded default. */
import { randomUUID } from 'node:crypto';
import { close, constants, open as openCallback, read } from 'node:fs';
import { link, mkdir, open, readdir, readlink, rename, rm, rmdir, stat, statfs, symlink, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import type { ByteRange } from '../../range';
import {
  asStorageFault,
  assertSafeKey,
  NotFoundError,
  pageNames,
  StorageFullError,
  UploadConflictError,
  type ContentInfo,
  type ListOptions,
  type PutDocumentOptions,
  type StorageAdapter,
} from '../adapter';
import { alignedBlocks } from './aligned-blocks';
import { FileAppender, UploadFlusher } from './file-appender';
import { FileReader } from './file-reader';

/** Options for {@link FileSystemStorage}. */
export interface FileSystemStorageOptions {
  /** Folder that holds everything; created when missing. */
  root: string;
  /**
   * Write uploads past the page cache (`O_DIRECT`) in 2 MiB blocks where the file system allows
   * it (default true). Uploads reach the disk before they are committed either way; direct
   * writes skip filling memory with pages the upload will not need again, which is much faster on
   * a virtual machine whose host takes free memory back (docs/performance.md has the figures). A
   * blob pushed this way is not in the page cache, so its first pull reads it from disk.
   */
  directWrites?: boolean;
  /**
   * Read blobs of {@link DIRECT_READ_MIN} bytes or more past the page cache (`O_DIRECT`), in 2 MiB
   * blocks with several in flight, where the file system allows it (default false). A blob pushed
   * with direct writes is not in the page cache, so its first pull reads the disk either way: past
   * the cache at the disk's speed, through it at the speed of filling fresh cache pages, which is
   * far slower on a virtual machine whose host takes free memory back. But a blob read past the
   * cache is read from the disk every time, where one read through it is served from memory from
   * the second pull on. Turn it on where blobs are mostly pulled once, soon after their push (a CI
   * cache); docs/performance.md has the figures for both. Each such read holds up to eight blocks
   * in flight and two waiting for the socket (20 MiB) while it runs.
   */
  directReads?: boolean;
}

/** Blobs this large or larger are read past the page cache when `directReads` is on. */
export const DIRECT_READ_MIN = 8 << 20;

/**
 * Stores the registry in a folder: the embedded default.
 *
 * Layout under `root`: `uploads/<id>/data` (an upload's bytes, appended in place) with
 * `uploads/<id>/lock` while a request writes it; `content/<key>` (committed content, moved there
 * by an atomic rename after an fsync); `documents/<key>`; `tmp/` for documents being written.
 *
 * The lock is a symbolic link whose target names its owner, created in one atomic step that fails
 * when it exists, so appends are conditional across every process sharing the folder on one
 * machine; a lock left by a process that died is taken over. Folders are created only when an
 * operation finds them missing, which keeps the file-system calls per request few.
 */
export class FileSystemStorage implements StorageAdapter {
  /** The folder the storage lives in. */
  readonly root: string;
  private readonly lockOwner = `${hostname()} ${process.pid}`;
  /** The background flushes of each upload this process has appended to. */
  private readonly flushers = new Map<string, UploadFlusher>();
  /** Cleared when the file system refuses a direct write. */
  private directWrites: boolean;
  /** Cleared when the file system refuses a direct open for reading. */
  private directReads: boolean;

  constructor(options: FileSystemStorageOptions) {
    this.root = options.root;
    this.directWrites = options.directWrites ?? true;
    this.directReads = (options.directReads ?? false) && constants.O_DIRECT !== undefined && alignedBlocks.available;
  }

  async createUpload(id: string): Promise<void> {
    assertSafeKey(id);
    await withParents(this.uploadDir(id), (dir) => mkdir(dir)).catch(throwFault);
    try {
      await writeFile(this.uploadData(id), '', { flag: 'wx' });
    } catch (error) {
      // A failed create (a full disk) leaves no folder behind; an existing upload stays as it is.
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') await rm(this.uploadDir(id), { recursive: true, force: true });
      throwFault(error);
    }
  }

  async appendUpload(id: string, expectedSize: number, body: Readable): Promise<number> {
    return this.appendLocked(id, expectedSize, body).catch(throwFault);
  }

  private async appendLocked(id: string, expectedSize: number, body: Readable): Promise<number> {
    const release = await this.lockUpload(id);
    try {
      const size = await this.requireUploadSize(id);
      if (size !== expectedSize) throw new UploadConflictError(size);
      await this.failIfFlushFailed(id, false);
      let flusher = this.flushers.get(id);
      if (!flusher) this.flushers.set(id, (flusher = new UploadFlusher(this.uploadData(id))));
      const file = await FileAppender.open(this.uploadData(id), expectedSize, flusher, this.directWrites);
      try {
        await pipeline(body, file);
      } finally {
        // Writes already issued land before the lock lets another append in, so after a failure
        // the size is final; the bytes written so far stay in the upload.
        await file.close();
        if (file.directRefused) this.directWrites = false;
        // A flusher that never started a flush holds nothing a later append needs, so a session
        // abandoned after small appends keeps no memory here.
        if (flusher.flushedUpTo === 0 && !flusher.failure) this.flushers.delete(id);
      }
      // Every byte went in under the lock, so the new size is known without another stat.
      return expectedSize + file.bytesWritten;
    } finally {
      await release();
    }
  }

  async uploadSize(id: string): Promise<number | undefined> {
    assertSafeKey(id);
    return (await statOrUndefined(this.uploadData(id)))?.size;
  }

  async uploadBusy(id: string): Promise<boolean> {
    assertSafeKey(id);
    const lockPath = join(this.uploadDir(id), 'lock');
    const locked = await readlink(lockPath).then(
      () => true,
      () => false,
    );
    return locked && !(await this.isStaleLock(lockPath));
  }

  async readUpload(id: string): Promise<Readable> {
    assertSafeKey(id);
    return openForReading(this.uploadData(id), `upload ${id}`);
  }

  async commitUpload(id: string, expectedSize: number, contentKey: string): Promise<void> {
    assertSafeKey(contentKey);
    return this.commitLocked(id, expectedSize, contentKey).catch(throwFault);
  }

  private async commitLocked(id: string, expectedSize: number, contentKey: string): Promise<void> {
    const release = await this.lockUpload(id);
    try {
      const size = await this.requireUploadSize(id);
      if (size !== expectedSize) throw new UploadConflictError(size);
      await this.failIfFlushFailed(id, true);
      await this.requireRoomToLink();
      if (await statOrUndefined(this.contentPath(contentKey))) {
        // The same bytes are stored already (the core has verified both): that copy stays, with
        // whatever of it the page cache holds, and this one needs no fsync.
        await unlink(this.uploadData(id));
      } else {
        const handle = await open(this.uploadData(id), 'r');
        try {
          await handle.sync();
        } finally {
          await handle.close();
        }
        await withParents(this.contentPath(contentKey), (target) => rename(this.uploadData(id), target));
      }
    } finally {
      await release();
    }
    this.flushers.delete(id);
    // Empty by now, unless a crashed request left something behind.
    await rmdir(this.uploadDir(id)).catch(() => rm(this.uploadDir(id), { recursive: true, force: true }));
  }

  /**
   * Refuses a commit (507) while the disk lacks room for the documents that follow it (the blob's
   * link, its catalog entry): a commit refused here leaves its session whole, to be completed
   * again once there is room, where one whose link is refused has used its session up.
   */
  private async requireRoomToLink(): Promise<void> {
    const room = await statfs(this.root);
    // Root may write into the blocks a file system reserves for it.
    const blocks = process.getuid?.() === 0 ? room.bfree : room.bavail;
    // A file system with no fixed count of files (btrfs) reports none at all.
    if (blocks * room.bsize < ROOM_TO_LINK_BYTES || (room.files > 0 && room.ffree < ROOM_TO_LINK_FILES)) {
      throw new StorageFullError(`storage is full: too little room left under ${this.root} to link a blob`);
    }
  }

  async deleteUpload(id: string): Promise<void> {
    assertSafeKey(id);
    this.flushers.delete(id);
    await rm(this.uploadDir(id), { recursive: true, force: true });
  }

  async statContent(key: string): Promise<ContentInfo | undefined> {
    assertSafeKey(key);
    const info = await statOrUndefined(this.contentPath(key));
    return info && { size: info.size };
  }

  async readContent(key: string, range?: ByteRange): Promise<Readable> {
    assertSafeKey(key);
    const path = this.contentPath(key);
    if (this.directReads) {
      const direct = await openDirect(path, range);
      if (direct) return direct;
      if (direct === null) this.directReads = false;
    }
    return openForReading(path, `content ${key}`, range);
  }

  async deleteContent(key: string): Promise<void> {
    assertSafeKey(key);
    await removeFile(this.contentPath(key));
  }

  async getDocument(key: string): Promise<Buffer | undefined> {
    assertSafeKey(key);
    try {
      return await readDocumentFile(this.documentPath(key));
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
  }

  async putDocument(key: string, value: Buffer, options: PutDocumentOptions = {}): Promise<boolean> {
    assertSafeKey(key);
    const temp = join(this.root, 'tmp', randomUUID());
    // Set once the temp file has become the document; until then a failure removes it.
    let placed = false;
    try {
      await withParents(temp, (path) => writeFile(path, value));
      if (!options.ifAbsent) {
        await withParents(this.documentPath(key), (target) => rename(temp, target));
        placed = true;
        return true;
      }
      // link() fails when the target exists, so a complete document appears only if none was there.
      try {
        await withParents(this.documentPath(key), (target) => link(temp, target));
        return true;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
        throw error;
      }
    } catch (error) {
      throw asStorageFault(error);
    } finally {
      if (!placed) await removeFile(temp);
    }
  }

  async deleteDocument(key: string): Promise<void> {
    assertSafeKey(key);
    await removeFile(this.documentPath(key));
  }

  async listContent(options?: ListOptions): Promise<string[]> {
    return pageNames((await listFiles(join(this.root, 'content'))).sort(), options);
  }

  async listDocuments(prefix: string, options?: ListOptions): Promise<string[]> {
    const base = prefix.replace(/\/$/, '');
    if (base) assertSafeKey(base);
    const names = await listFiles(join(this.root, 'documents', base));
    return pageNames(names.sort(), options);
  }

  private uploadDir(id: string): string {
    return join(this.root, 'uploads', id);
  }

  private uploadData(id: string): string {
    return join(this.uploadDir(id), 'data');
  }

  private contentPath(key: string): string {
    return join(this.root, 'content', key);
  }

  private documentPath(key: string): string {
    return join(this.root, 'documents', key);
  }

  private async requireUploadSize(id: string): Promise<number> {
    const size = await this.uploadSize(id);
    if (size === undefined) throw new NotFoundError(`upload ${id}`);
    return size;
  }

  /**
   * Rejects, and drops the upload, when a background flush of it has failed (waiting for a running
   * one with `wait`): bytes it acknowledged may be lost, so it must never be committed.
   */
  private async failIfFlushFailed(id: string, wait: boolean): Promise<void> {
    const flusher = this.flushers.get(id);
    if (!flusher) return;
    if (wait) await flusher.idle();
    if (flusher.failure) {
      await this.deleteUpload(id);
      throw flusher.failure;
    }
  }

  /** Takes the upload's write lock, or rejects with UploadConflictError while another holds it. */
  private async lockUpload(id: string): Promise<() => Promise<void>> {
    assertSafeKey(id);
    const lockPath = join(this.uploadDir(id), 'lock');
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        await symlink(this.lockOwner, lockPath);
        return () => removeFile(lockPath);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') throw new NotFoundError(`upload ${id}`);
        if (code !== 'EEXIST') throw error;
        if (!(await this.isStaleLock(lockPath))) break;
        await removeFile(lockPath);
      }
    }
    throw new UploadConflictError((await this.uploadSize(id)) ?? 0, 'another request is writing to this upload');
  }

  private async isStaleLock(lockPath: string): Promise<boolean> {
    const owner = (await readlink(lockPath).catch(() => '')).split(' ');
    if (owner.length !== 2 || owner[0] !== hostname()) return false;
    const pid = Number(owner[1]);
    if (pid === process.pid) return false;
    try {
      process.kill(pid, 0);
      return false;
    } catch (error) {
      return (error as NodeJS.ErrnoException).code === 'ESRCH';
    }
  }
}

/** Rethrows `error`, as a storage fault when it is one (a full disk, a quota). */
function throwFault(error: unknown): never {
  throw asStorageFault(error);
}

/** Runs `operation` on `path`; when its folder is missing, creates it and runs it again. */
async function withParents<T>(path: string, operation: (path: string) => Promise<T>): Promise<T> {
  try {
    return await operation(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    await mkdir(dirname(path), { recursive: true });
    return operation(path);
  }
}

/** Room a commit needs left on the disk for the documents written after it: a few pages, and files to put them in. */
const ROOM_TO_LINK_BYTES = 64 * 1024;
const ROOM_TO_LINK_FILES = 16;

/** What a document read asks for first: a page, which holds nearly every document whole. */
const DOCUMENT_READ = 4096;

const openDescriptor = promisify(openCallback);
const readDescriptor = promisify(read);
const closeDescriptor = promisify(close);

/**
 * A whole small file, through libuv's threads: open, one read (more only for a file larger than
 * {@link DOCUMENT_READ}), close. `readFile` also stats the file and reads again to find its end,
 * and each of those is another trip to a thread, which small uploads pay for several times over.
 */
async function readDocumentFile(path: string): Promise<Buffer> {
  // A plain descriptor through the callback API: a FileHandle is one more object to make and collect per read.
  const descriptor = await openDescriptor(path, 'r');
  try {
    let buffer = Buffer.allocUnsafeSlow(DOCUMENT_READ);
    let length = 0;
    for (;;) {
      const wanted = buffer.length - length;
      const { bytesRead } = await readDescriptor(descriptor, buffer, length, wanted, length);
      length += bytesRead;
      // A regular file's read comes back short only at its end.
      if (bytesRead < wanted) return Buffer.from(buffer.subarray(0, length));
      const grown = Buffer.allocUnsafeSlow(buffer.length * 2);
      buffer.copy(grown);
      buffer = grown;
    }
  } finally {
    // Closing a descriptor opened for reading loses nothing, so its failure is of no interest.
    await closeDescriptor(descriptor).catch(() => undefined);
  }
}

/** Deletes a file; one that is already gone is fine. */
async function removeFile(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw error;
  }
}

async function statOrUndefined(path: string) {
  try {
    const info = await stat(path);
    return info.isFile() ? info : undefined;
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw error;
  }
}

async function openForReading(path: string, what: string, range?: ByteRange): Promise<Readable> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    if (isMissing(error)) throw new NotFoundError(what);
    throw error;
  }
  try {
    const end = range ? range.end : (await handle.stat()).size - 1;
    return new FileReader(handle, range?.start ?? 0, end);
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/**
 * A direct reader of the file at `path` when the bytes asked for are {@link DIRECT_READ_MIN} or
 * more; undefined when fewer (or the file is missing: the buffered open says so), null when the
 * file system refuses direct reads.
 */
async function openDirect(path: string, range?: ByteRange): Promise<Readable | null | undefined> {
  if (range && range.end - range.start + 1 < DIRECT_READ_MIN) return undefined;
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_DIRECT);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EINVAL' ? null : undefined;
  }
  try {
    const size = (await handle.stat()).size;
    if (!range && size < DIRECT_READ_MIN) {
      await handle.close();
      return undefined;
    }
    return new FileReader(handle, range?.start ?? 0, range ? range.end : size - 1, true);
  } catch (error) {
    await handle.close();
    throw error;
  }
}

async function listFiles(dir: string, relative = ''): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(join(dir, relative), { withFileTypes: true });
  } catch (error) {
    if (isMissing(error)) return [];
    throw error;
  }
  const names: string[] = [];
  for (const entry of entries) {
    const name = relative ? `${relative}/${entry.name}` : entry.name;
    if (entry.isDirectory()) names.push(...(await listFiles(dir, name)));
    else if (entry.isFile()) names.push(name);
  }
  return names;
}

function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR';
}
