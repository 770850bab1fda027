/** MemoryStorage: the registry in process memory, for tests, examples and short-lived registries. */
import { Readable } from 'node:stream';
import type { ByteRange } from '../range';
import {
  assertSafeKey,
  NotFoundError,
  pageNames,
  UploadConflictError,
  type ContentInfo,
  type ListOptions,
  type PutDocumentOptions,
  type StorageAdapter,
} from './adapter';

interface MemoryUpload {
  chunks: Buffer[];
  size: number;
  busy: boolean;
}

/** Options for {@link MemoryStorage}. */
export interface MemoryStorageOptions {
  /** Advertised minimum chunk size (for testing clients against object-store-like limits). */
  minChunkSize?: number;
}

/**
 * Keeps everything in process memory: for tests, examples and short-lived registries. Content
 * is held as the chunks it arrived in, so committing copies nothing.
 */
export class MemoryStorage implements StorageAdapter {
  readonly minChunkSize?: number;
  private readonly uploads = new Map<string, MemoryUpload>();
  private readonly contents = new Map<string, { chunks: Buffer[]; size: number }>();
  private readonly documents = new Map<string, Buffer>();

  constructor(options: MemoryStorageOptions = {}) {
    this.minChunkSize = options.minChunkSize;
  }

  async createUpload(id: string): Promise<void> {
    assertSafeKey(id);
    this.uploads.set(id, { chunks: [], size: 0, busy: false });
  }

  async appendUpload(id: string, expectedSize: number, body: Readable): Promise<number> {
    const upload = this.requireUpload(id);
    if (upload.busy || upload.size !== expectedSize) throw new UploadConflictError(upload.size);
    upload.busy = true;
    try {
      for await (const chunk of body) {
        const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
        upload.chunks.push(buffer);
        upload.size += buffer.length;
      }
      return upload.size;
    } finally {
      upload.busy = false;
    }
  }

  async uploadSize(id: string): Promise<number | undefined> {
    return this.uploads.get(id)?.size;
  }

  async uploadBusy(id: string): Promise<boolean> {
    return this.uploads.get(id)?.busy ?? false;
  }

  async readUpload(id: string): Promise<Readable> {
    return Readable.from(this.requireUpload(id).chunks.slice());
  }

  async commitUpload(id: string, expectedSize: number, contentKey: string): Promise<void> {
    assertSafeKey(contentKey);
    const upload = this.requireUpload(id);
    if (upload.busy || upload.size !== expectedSize) throw new UploadConflictError(upload.size);
    this.contents.set(contentKey, { chunks: upload.chunks, size: upload.size });
    this.uploads.delete(id);
  }

  async deleteUpload(id: string): Promise<void> {
    this.uploads.delete(id);
  }

  async statContent(key: string): Promise<ContentInfo | undefined> {
    const content = this.contents.get(key);
    return content && { size: content.size };
  }

  async readContent(key: string, range?: ByteRange): Promise<Readable> {
    const content = this.contents.get(key);
    if (!content) throw new NotFoundError(`content ${key}`);
    return Readable.from(sliceChunks(content.chunks, range ?? { start: 0, end: content.size - 1 }));
  }

  async deleteContent(key: string): Promise<void> {
    this.contents.delete(key);
  }

  async listContent(options?: ListOptions): Promise<string[]> {
    return pageNames([...this.contents.keys()].sort(), options);
  }

  async getDocument(key: string): Promise<Buffer | undefined> {
    return this.documents.get(key);
  }

  async putDocument(key: string, value: Buffer, options: PutDocumentOptions = {}): Promise<boolean> {
    assertSafeKey(key);
    if (options.ifAbsent && this.documents.has(key)) return false;
    this.documents.set(key, Buffer.from(value));
    return true;
  }

  async deleteDocument(key: string): Promise<void> {
    this.documents.delete(key);
  }

  async listDocuments(prefix: string, options?: ListOptions): Promise<string[]> {
    const names: string[] = [];
    for (const key of this.documents.keys()) {
      if (key.startsWith(prefix)) names.push(key.slice(prefix.length));
    }
    return pageNames(names.sort(), options);
  }

  private requireUpload(id: string): MemoryUpload {
    const upload = this.uploads.get(id);
    if (!upload) throw new NotFoundError(`upload ${id}`);
    return upload;
  }
}

function* sliceChunks(chunks: Buffer[], range: ByteRange): Generator<Buffer> {
  let offset = 0;
  for (const chunk of chunks) {
    const chunkEnd = offset + chunk.length;
    if (chunkEnd > range.start && offset <= range.end) {
      yield chunk.subarray(Math.max(range.start - offset, 0), Math.min(range.end + 1 - offset, chunk.length));
    }
    offset = chunkEnd;
    if (offset > range.end) return;
  }
}
