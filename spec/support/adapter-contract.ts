import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { NotFoundError, StorageFullError, UploadConflictError, type StorageAdapter } from '../../lib';

/** Collects a stream into one buffer (test data only). */
export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function streamOf(...parts: (string | Buffer)[]): Readable {
  return Readable.from(parts.map((part) => Buffer.from(part)));
}

/** A stream that yields `before`, then fails, as a dropped client connection does. */
function failingStream(before: Buffer): Readable {
  let sent = false;
  return new Readable({
    read() {
      if (!sent) {
        sent = true;
        this.push(before);
      } else {
        this.destroy(new Error('client went away'));
      }
    },
  });
}

let counter = 0;
function uploadId(): string {
  counter += 1;
  return `00000000-0000-4000-8000-${String(counter).padStart(12, '0')}`;
}

/** Further parts of the contract, for adapters that can be put in the state they need. */
export interface ContractOptions {
  /**
   * An adapter whose backend has no space left, with one upload (`full-upload`) created before it
   * filled; and how to remove it. The contract then checks that every write rejects with
   * `StorageFullError` and leaves nothing visible, and that an append keeps a prefix.
   */
  full?: { create: () => Promise<StorageAdapter>; cleanup: () => Promise<void> };
}

/**
 * The contract every {@link StorageAdapter} must meet. Each built-in adapter's spec runs it;
 * a host's own adapter can run it too.
 */
export function describeStorageAdapterContract(name: string, create: () => Promise<StorageAdapter>, cleanup?: () => Promise<void>, options: ContractOptions = {}): void {
  if (options.full) describeFullStorageContract(name, options.full);
  describe(`StorageAdapter contract: ${name}`, () => {
    let adapter: StorageAdapter;
    beforeEach(async () => {
      adapter = await create();
    });
    afterEach(async () => {
      await cleanup?.();
    });

    describe('uploads', () => {
      it('starts empty and grows by conditional appends', async () => {
        const id = uploadId();
        await adapter.createUpload(id);
        expect(await adapter.uploadSize(id)).toBe(0);
        expect(await adapter.appendUpload(id, 0, streamOf('hello '))).toBe(6);
        expect(await adapter.appendUpload(id, 6, streamOf('wor', 'ld'))).toBe(11);
        expect((await readAll(await adapter.readUpload(id))).toString()).toBe('hello world');
      });

      it('refuses an append at the wrong offset without reading the body, reporting the size', async () => {
        const id = uploadId();
        await adapter.createUpload(id);
        await adapter.appendUpload(id, 0, streamOf('abc'));
        const body = streamOf('zzz');
        await expect(adapter.appendUpload(id, 0, body)).rejects.toBeInstanceOf(UploadConflictError);
        await expect(adapter.appendUpload(id, 5, streamOf('zzz'))).rejects.toMatchObject({ size: 3 });
        expect((await readAll(await adapter.readUpload(id))).toString()).toBe('abc');
      });

      it('lets exactly one of two concurrent appends at the same offset through, never interleaving', async () => {
        const id = uploadId();
        await adapter.createUpload(id);
        const slow = (fill: string) =>
          Readable.from(
            (async function* () {
              for (let i = 0; i < 8; i++) {
                yield Buffer.alloc(1024, fill);
                await new Promise((resolve) => setTimeout(resolve, 2));
              }
            })(),
          );
        const results = await Promise.allSettled([adapter.appendUpload(id, 0, slow('a')), adapter.appendUpload(id, 0, slow('b'))]);
        const fulfilled = results.filter((result) => result.status === 'fulfilled');
        const rejected = results.filter((result) => result.status === 'rejected') as PromiseRejectedResult[];
        expect(fulfilled).toHaveLength(1);
        expect(rejected).toHaveLength(1);
        expect(rejected[0].reason).toBeInstanceOf(UploadConflictError);
        const stored = await readAll(await adapter.readUpload(id));
        expect(stored.length).toBe(8192);
        expect(new Set(stored.toString()).size).toBe(1);
      });

      it('reports an upload busy exactly while an append is under way (when it offers uploadBusy)', async () => {
        if (!adapter.uploadBusy) return;
        const id = uploadId();
        expect(await adapter.uploadBusy(id)).toBe(false);
        await adapter.createUpload(id);
        expect(await adapter.uploadBusy(id)).toBe(false);
        // The adapter asks for the body's first bytes only once it holds the upload.
        let startReading!: () => void;
        const reading = new Promise<void>((resolve) => (startReading = resolve));
        let release!: () => void;
        const released = new Promise<void>((resolve) => (release = resolve));
        let pushed = false;
        const body = new Readable({
          read() {
            if (pushed) return;
            pushed = true;
            startReading();
            void released.then(() => {
              this.push(Buffer.from('held'));
              this.push(null);
            });
          },
        });
        const append = adapter.appendUpload(id, 0, body);
        await reading;
        expect(await adapter.uploadBusy(id)).toBe(true);
        release();
        expect(await append).toBe(4);
        expect(await adapter.uploadBusy(id)).toBe(false);
      });

      it('keeps the bytes written before a body fails, and counts exactly them', async () => {
        const id = uploadId();
        await adapter.createUpload(id);
        await adapter.appendUpload(id, 0, streamOf('start:'));
        await expect(adapter.appendUpload(id, 6, failingStream(Buffer.from('partial')))).rejects.toThrow();
        const size = await adapter.uploadSize(id);
        const stored = await readAll(await adapter.readUpload(id));
        expect(stored.length).toBe(size);
        expect('start:partial'.startsWith(stored.toString())).toBe(true);
        expect(size).toBeGreaterThanOrEqual(6);
        expect(await adapter.appendUpload(id, size!, streamOf('!'))).toBe(size! + 1);
      });

      it('commits an upload into content without it remaining an upload', async () => {
        const id = uploadId();
        const key = `sha256/ab/${createHash('sha256').update(id).digest('hex')}`;
        await adapter.createUpload(id);
        await adapter.appendUpload(id, 0, streamOf('content bytes'));
        await expect(adapter.commitUpload(id, 5, key)).rejects.toBeInstanceOf(UploadConflictError);
        await adapter.commitUpload(id, 13, key);
        expect(await adapter.uploadSize(id)).toBeUndefined();
        expect(await adapter.statContent(key)).toEqual({ size: 13 });
        expect((await readAll(await adapter.readContent(key))).toString()).toBe('content bytes');
        expect((await readAll(await adapter.readContent(key, { start: 8, end: 12 }))).toString()).toBe('bytes');
      });

      it('lets two uploads of the same content commit under one key', async () => {
        const key = 'sha256/cd/same-content';
        const ids = [uploadId(), uploadId()];
        for (const id of ids) {
          await adapter.createUpload(id);
          await adapter.appendUpload(id, 0, streamOf('same'));
        }
        await Promise.all(ids.map((id) => adapter.commitUpload(id, 4, key)));
        expect((await readAll(await adapter.readContent(key))).toString()).toBe('same');
        for (const id of ids) expect(await adapter.uploadSize(id)).toBeUndefined();
      });

      it('commits an empty upload', async () => {
        const id = uploadId();
        await adapter.createUpload(id);
        await adapter.commitUpload(id, 0, 'sha256/e3/empty');
        expect(await adapter.statContent('sha256/e3/empty')).toEqual({ size: 0 });
        expect((await readAll(await adapter.readContent('sha256/e3/empty'))).length).toBe(0);
      });

      it('deletes uploads, and reports unknown ones', async () => {
        const id = uploadId();
        await adapter.createUpload(id);
        await adapter.deleteUpload(id);
        await adapter.deleteUpload(id);
        expect(await adapter.uploadSize(id)).toBeUndefined();
        await expect(adapter.appendUpload(id, 0, streamOf('x'))).rejects.toBeInstanceOf(NotFoundError);
        await expect(adapter.commitUpload(id, 0, 'sha256/00/x')).rejects.toBeInstanceOf(NotFoundError);
      });
    });

    describe('content', () => {
      it('reports missing content', async () => {
        expect(await adapter.statContent('sha256/00/missing')).toBeUndefined();
        await expect(adapter.readContent('sha256/00/missing')).rejects.toBeInstanceOf(NotFoundError);
        await adapter.deleteContent('sha256/00/missing');
      });

      it('deletes content', async () => {
        const id = uploadId();
        await adapter.createUpload(id);
        await adapter.appendUpload(id, 0, streamOf('gone soon'));
        await adapter.commitUpload(id, 9, 'sha256/11/gone');
        await adapter.deleteContent('sha256/11/gone');
        expect(await adapter.statContent('sha256/11/gone')).toBeUndefined();
      });

      it('refuses ids and keys that could escape the store', async () => {
        for (const key of ['../escape', 'a/../../b', '/absolute', 'a//b', 'nul\0byte', '.']) {
          await expect(adapter.createUpload(key)).rejects.toThrow(/unsafe storage key/);
          await expect(adapter.putDocument(key, Buffer.from('x'))).rejects.toThrow(/unsafe storage key/);
        }
      });
    });

    describe('documents', () => {
      it('puts, gets, replaces and deletes', async () => {
        expect(await adapter.getDocument('docs/one')).toBeUndefined();
        expect(await adapter.putDocument('docs/one', Buffer.from('1'))).toBe(true);
        expect(await adapter.putDocument('docs/one', Buffer.from('2'))).toBe(true);
        expect((await adapter.getDocument('docs/one'))!.toString()).toBe('2');
        await adapter.deleteDocument('docs/one');
        await adapter.deleteDocument('docs/one');
        expect(await adapter.getDocument('docs/one')).toBeUndefined();
      });

      it('creates only when absent, with exactly one winner in a race', async () => {
        const results = await Promise.all(
          Array.from({ length: 8 }, (_, index) => adapter.putDocument('docs/race', Buffer.from(String(index)), { ifAbsent: true })),
        );
        expect(results.filter(Boolean)).toHaveLength(1);
        const winner = results.indexOf(true);
        expect((await adapter.getDocument('docs/race'))!.toString()).toBe(String(winner));
      });

      it('lists by prefix at any depth, sorted, after a name, limited', async () => {
        for (const key of ['list/b', 'list/a/x', 'list/a/y', 'list/c', 'other/z', 'listing/no']) {
          await adapter.putDocument(key, Buffer.from('.'));
        }
        expect(await adapter.listDocuments('list/')).toEqual(['a/x', 'a/y', 'b', 'c']);
        expect(await adapter.listDocuments('list/', { after: 'a/y' })).toEqual(['b', 'c']);
        expect(await adapter.listDocuments('list/', { limit: 2 })).toEqual(['a/x', 'a/y']);
        expect(await adapter.listDocuments('list/a/')).toEqual(['x', 'y']);
        expect(await adapter.listDocuments('nothing/')).toEqual([]);
      });

      it('stores an empty document, which is not a missing one and is listed', async () => {
        expect(await adapter.putDocument('empty/one', Buffer.alloc(0))).toBe(true);
        expect(await adapter.getDocument('empty/one')).toEqual(Buffer.alloc(0));
        expect(await adapter.listDocuments('empty/')).toEqual(['one']);
      });
    });
  });
}

/** What a full backend must do: refuse each write with StorageFullError and leave nothing of it. */
function describeFullStorageContract(name: string, full: NonNullable<ContractOptions['full']>): void {
  describe(`StorageAdapter contract: ${name} with no space left`, () => {
    let adapter: StorageAdapter;
    beforeEach(async () => {
      adapter = await full.create();
    });
    afterEach(() => full.cleanup());

    it('refuses a document with StorageFullError and leaves none, nor a half-written one', async () => {
      const value = Buffer.alloc(64 * 1024, 1);
      await expect(adapter.putDocument('full/doc', value)).rejects.toBeInstanceOf(StorageFullError);
      await expect(adapter.putDocument('full/once', value, { ifAbsent: true })).rejects.toBeInstanceOf(StorageFullError);
      expect(await adapter.getDocument('full/doc')).toBeUndefined();
      expect(await adapter.getDocument('full/once')).toBeUndefined();
      expect(await adapter.listDocuments('full/')).toEqual([]);
    });

    it('refuses an append with StorageFullError, keeping a prefix of the body that the upload counts exactly', async () => {
      const body = Buffer.from(Array.from({ length: 1024 * 1024 }, (_, index) => index % 251));
      await expect(adapter.appendUpload('full-upload', 0, Readable.from([body]))).rejects.toBeInstanceOf(StorageFullError);
      const size = (await adapter.uploadSize('full-upload'))!;
      expect(size).toBeLessThan(body.length);
      expect((await readAll(await adapter.readUpload('full-upload'))).equals(body.subarray(0, size))).toBe(true);
    });
  });
}
