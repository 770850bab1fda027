/** The contract every storage adapter meets, as a test suite for any runner with describe/it/beforeEach/afterEach. */
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { NotFoundError, StorageFullError, UploadConflictError, type StorageAdapter } from '../storage/adapter';

/** The test runner's functions the suite is declared with: jest's, vitest's, mocha's, or `node:test`'s. */
export interface TestRunner {
  describe(name: string, body: () => void): unknown;
  it(name: string, body: () => Promise<void>): unknown;
  beforeEach(body: () => Promise<void>): unknown;
  afterEach(body: () => Promise<void>): unknown;
}

/** Options for {@link describeStorageAdapter}. */
export interface StorageAdapterSuiteOptions {
  /** Called after each test with that test's adapter: remove its folder, its bucket prefix, … */
  cleanup?(adapter: StorageAdapter): void | Promise<void>;
  /**
   * The runner to declare the tests with. Default: the global `describe`, `it`, `beforeEach` and
   * `afterEach` (jest, vitest with `globals`, mocha). For node's own runner pass `require('node:test')`.
   */
  runner?: TestRunner;
  /**
   * For adapters whose backend can be filled on demand: makes an adapter with no space left, with
   * one upload (`full-upload`) created before it filled, and removes it. The suite then checks
   * that every write rejects with `StorageFullError`, leaving nothing visible, and that an append
   * keeps a prefix of its body.
   */
  full?: { create(): Promise<StorageAdapter>; cleanup(): Promise<void> };
}

/** Collects a stream into one buffer (for test data, which is small). */
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

function globalRunner(): TestRunner {
  const globals = globalThis as Partial<TestRunner>;
  const { describe, it, beforeEach, afterEach } = globals;
  if (!describe || !it || !beforeEach || !afterEach) {
    throw new Error('describeStorageAdapter: no global describe/it/beforeEach/afterEach; pass { runner } (e.g. require("node:test"))');
  }
  return { describe, it, beforeEach, afterEach };
}

/**
 * Declares the storage adapter contract as tests of the adapters `makeAdapter` makes, a fresh
 * one per test: conditional appends and their races, `uploadBusy` and `listContent` when offered,
 * bytes kept when a body fails, commits into content, ranges, documents with create-if-absent
 * races, listing, and unsafe keys. Every built-in adapter passes it.
 */
export function describeStorageAdapter(name: string, makeAdapter: () => StorageAdapter | Promise<StorageAdapter>, options: StorageAdapterSuiteOptions = {}): void {
  const { describe, it, beforeEach, afterEach } = options.runner ?? globalRunner();
  describe(`StorageAdapter contract: ${name}`, () => {
    let adapter: StorageAdapter;
    beforeEach(async () => {
      adapter = await makeAdapter();
    });
    afterEach(async () => {
      await options.cleanup?.(adapter);
    });

    describe('uploads', () => {
      it('starts empty and grows by conditional appends', async () => {
        const id = uploadId();
        await adapter.createUpload(id);
        assert.equal(await adapter.uploadSize(id), 0);
        assert.equal(await adapter.appendUpload(id, 0, streamOf('hello ')), 6);
        assert.equal(await adapter.appendUpload(id, 6, streamOf('wor', 'ld')), 11);
        assert.equal((await readAll(await adapter.readUpload(id))).toString(), 'hello world');
      });

      it('refuses an append at the wrong offset without reading the body, reporting the size', async () => {
        const id = uploadId();
        await adapter.createUpload(id);
        await adapter.appendUpload(id, 0, streamOf('abc'));
        const body = streamOf('zzz');
        await assert.rejects(adapter.appendUpload(id, 0, body), UploadConflictError);
        await assert.rejects(adapter.appendUpload(id, 5, streamOf('zzz')), (error: UploadConflictError) => error.size === 3);
        assert.equal((await readAll(await adapter.readUpload(id))).toString(), 'abc');
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
        assert.equal(fulfilled.length, 1);
        assert.equal(rejected.length, 1);
        assert.ok(rejected[0].reason instanceof UploadConflictError);
        const stored = await readAll(await adapter.readUpload(id));
        assert.equal(stored.length, 8192);
        assert.equal(new Set(stored.toString()).size, 1);
      });

      it('reports an upload busy exactly while an append is under way (when it offers uploadBusy)', async () => {
        if (!adapter.uploadBusy) return;
        const id = uploadId();
        assert.equal(await adapter.uploadBusy(id), false);
        await adapter.createUpload(id);
        assert.equal(await adapter.uploadBusy(id), false);
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
        assert.equal(await adapter.uploadBusy(id), true);
        release();
        assert.equal(await append, 4);
        assert.equal(await adapter.uploadBusy(id), false);
      });

      it('keeps the bytes written before a body fails, and counts exactly them', async () => {
        const id = uploadId();
        await adapter.createUpload(id);
        await adapter.appendUpload(id, 0, streamOf('start:'));
        await assert.rejects(adapter.appendUpload(id, 6, failingStream(Buffer.from('partial'))));
        const size = await adapter.uploadSize(id);
        assert.ok(size !== undefined && size >= 6, `the upload keeps at least the 6 bytes appended before, not ${size}`);
        const stored = await readAll(await adapter.readUpload(id));
        assert.equal(stored.length, size);
        assert.ok('start:partial'.startsWith(stored.toString()));
        assert.equal(await adapter.appendUpload(id, size, streamOf('!')), size + 1);
      });

      it('commits an upload into content without it remaining an upload', async () => {
        const id = uploadId();
        const key = `sha256/ab/${createHash('sha256').update(id).digest('hex')}`;
        await adapter.createUpload(id);
        await adapter.appendUpload(id, 0, streamOf('content bytes'));
        await assert.rejects(adapter.commitUpload(id, 5, key), UploadConflictError);
        await adapter.commitUpload(id, 13, key);
        assert.equal(await adapter.uploadSize(id), undefined);
        assert.equal((await adapter.statContent(key))?.size, 13);
        assert.equal((await readAll(await adapter.readContent(key))).toString(), 'content bytes');
        assert.equal((await readAll(await adapter.readContent(key, { start: 8, end: 12 }))).toString(), 'bytes');
      });

      it('lets two uploads of the same content commit under one key', async () => {
        const key = 'sha256/cd/same-content';
        const ids = [uploadId(), uploadId()];
        for (const id of ids) {
          await adapter.createUpload(id);
          await adapter.appendUpload(id, 0, streamOf('same'));
        }
        await Promise.all(ids.map((id) => adapter.commitUpload(id, 4, key)));
        assert.equal((await readAll(await adapter.readContent(key))).toString(), 'same');
        for (const id of ids) assert.equal(await adapter.uploadSize(id), undefined);
      });

      it('commits an empty upload', async () => {
        const id = uploadId();
        await adapter.createUpload(id);
        await adapter.commitUpload(id, 0, 'sha256/e3/empty');
        assert.equal((await adapter.statContent('sha256/e3/empty'))?.size, 0);
        assert.equal((await readAll(await adapter.readContent('sha256/e3/empty'))).length, 0);
      });

      it('deletes uploads, and reports unknown ones', async () => {
        const id = uploadId();
        await adapter.createUpload(id);
        await adapter.deleteUpload(id);
        await adapter.deleteUpload(id);
        assert.equal(await adapter.uploadSize(id), undefined);
        await assert.rejects(adapter.appendUpload(id, 0, streamOf('x')), NotFoundError);
        await assert.rejects(adapter.commitUpload(id, 0, 'sha256/00/x'), NotFoundError);
      });
    });

    describe('content', () => {
      it('reports missing content', async () => {
        assert.equal(await adapter.statContent('sha256/00/missing'), undefined);
        await assert.rejects(adapter.readContent('sha256/00/missing'), NotFoundError);
        await adapter.deleteContent('sha256/00/missing');
      });

      it('deletes content', async () => {
        const id = uploadId();
        await adapter.createUpload(id);
        await adapter.appendUpload(id, 0, streamOf('gone soon'));
        await adapter.commitUpload(id, 9, 'sha256/11/gone');
        await adapter.deleteContent('sha256/11/gone');
        assert.equal(await adapter.statContent('sha256/11/gone'), undefined);
      });

      it('lists stored content keys, sorted and paged, without deleted ones (when it offers listContent)', async () => {
        if (!adapter.listContent) return;
        const keys = ['sha256/a1/listed-one', 'sha256/a1/listed-two', 'sha512/0f/listed-three'];
        for (const key of keys) {
          const id = uploadId();
          await adapter.createUpload(id);
          await adapter.appendUpload(id, 0, streamOf(key));
          await adapter.commitUpload(id, key.length, key);
        }
        const listed = await adapter.listContent();
        assert.deepEqual(listed.filter((key) => keys.includes(key)), [...keys].sort());
        assert.deepEqual([...listed].sort(), listed);
        const after = await adapter.listContent({ after: keys[0] });
        assert.ok(!after.includes(keys[0]) && after.includes(keys[1]));
        assert.equal((await adapter.listContent({ limit: 1 })).length, 1);
        await adapter.deleteContent(keys[1]);
        assert.ok(!(await adapter.listContent()).includes(keys[1]));
      });

      it('refuses ids and keys that could escape the store', async () => {
        for (const key of ['../escape', 'a/../../b', '/absolute', 'a//b', 'nul\0byte', '.']) {
          await assert.rejects(adapter.createUpload(key), /unsafe storage key/);
          await assert.rejects(adapter.putDocument(key, Buffer.from('x')), /unsafe storage key/);
        }
      });
    });

    describe('documents', () => {
      it('puts, gets, replaces and deletes', async () => {
        assert.equal(await adapter.getDocument('docs/one'), undefined);
        assert.ok(await adapter.putDocument('docs/one', Buffer.from('1')));
        assert.ok(await adapter.putDocument('docs/one', Buffer.from('2')));
        assert.equal((await adapter.getDocument('docs/one'))!.toString(), '2');
        await adapter.deleteDocument('docs/one');
        await adapter.deleteDocument('docs/one');
        assert.equal(await adapter.getDocument('docs/one'), undefined);
      });

      it('creates only when absent, with exactly one winner in a race', async () => {
        const results = await Promise.all(
          Array.from({ length: 8 }, (_, index) => adapter.putDocument('docs/race', Buffer.from(String(index)), { ifAbsent: true })),
        );
        assert.equal(results.filter(Boolean).length, 1);
        const winner = results.indexOf(true);
        assert.equal((await adapter.getDocument('docs/race'))!.toString(), String(winner));
      });

      it('lists by prefix at any depth, sorted, after a name, limited', async () => {
        for (const key of ['list/b', 'list/a/x', 'list/a/y', 'list/c', 'other/z', 'listing/no']) {
          await adapter.putDocument(key, Buffer.from('.'));
        }
        assert.deepEqual(await adapter.listDocuments('list/'), ['a/x', 'a/y', 'b', 'c']);
        assert.deepEqual(await adapter.listDocuments('list/', { after: 'a/y' }), ['b', 'c']);
        assert.deepEqual(await adapter.listDocuments('list/', { limit: 2 }), ['a/x', 'a/y']);
        assert.deepEqual(await adapter.listDocuments('list/a/'), ['x', 'y']);
        assert.deepEqual(await adapter.listDocuments('nothing/'), []);
      });

      it('stores an empty document, which is not a missing one and is listed', async () => {
        assert.equal(await adapter.putDocument('empty/one', Buffer.alloc(0)), true);
        assert.deepEqual(await adapter.getDocument('empty/one'), Buffer.alloc(0));
        assert.deepEqual(await adapter.listDocuments('empty/'), ['one']);
      });

      it('gets documents of every size back whole, around page and buffer boundaries', async () => {
        for (const size of [1, 4095, 4096, 4097, 8192, 100_000]) {
          const value = Buffer.alloc(size, size % 251);
          value.write(`document of ${size} bytes`.slice(0, size));
          await adapter.putDocument(`sized/${size}`, value);
          assert.deepEqual(await adapter.getDocument(`sized/${size}`), value);
        }
      });
    });
  });
  if (options.full) describeFullStorage(name, options.full, { describe, it, beforeEach, afterEach });
}

/** What a full backend must do: refuse each write with StorageFullError and leave nothing of it. */
function describeFullStorage(name: string, full: NonNullable<StorageAdapterSuiteOptions['full']>, { describe, it, beforeEach, afterEach }: TestRunner): void {
  describe(`StorageAdapter contract: ${name} with no space left`, () => {
    let adapter: StorageAdapter;
    beforeEach(async () => {
      adapter = await full.create();
    });
    afterEach(() => full.cleanup());

    it('refuses a document with StorageFullError and leaves none, nor a half-written one', async () => {
      const value = Buffer.alloc(64 * 1024, 1);
      await assert.rejects(adapter.putDocument('full/doc', value), StorageFullError);
      await assert.rejects(adapter.putDocument('full/once', value, { ifAbsent: true }), StorageFullError);
      assert.equal(await adapter.getDocument('full/doc'), undefined);
      assert.equal(await adapter.getDocument('full/once'), undefined);
      assert.deepEqual(await adapter.listDocuments('full/'), []);
    });

    it('refuses an append with StorageFullError, keeping a prefix of the body that the upload counts exactly', async () => {
      const body = Buffer.from(Array.from({ length: 1024 * 1024 }, (_, index) => index % 251));
      await assert.rejects(adapter.appendUpload('full-upload', 0, Readable.from([body])), StorageFullError);
      const size = (await adapter.uploadSize('full-upload'))!;
      assert.ok(size < body.length);
      assert.ok((await readAll(await adapter.readUpload('full-upload'))).equals(body.subarray(0, size)));
    });
  });
}
