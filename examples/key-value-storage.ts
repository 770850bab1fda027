/**
 * A storage adapter written against the package's interface, as docs/storage-adapters.md shows
 * it: bytes (uploads and content) in a folder, documents (manifests, tags, links, sessions) in a
 * key-value store, such as Redis with `SET NX`, etcd or a database table. `spec/storage-key-value.spec.ts`
 * runs the adapter test kit on it.
 */
import { assertSafeKey, FileSystemStorage, pageNames, type ListOptions, type PutDocumentOptions } from '../lib';

/** What the adapter needs of a key-value store: a conditional put, and keys listed by prefix. */
export interface KeyValueStore {
  get(key: string): Promise<Buffer | undefined>;
  /** Stores `value`; with `onlyIfAbsent`, only when the key is free, resolving to whether it stored. */
  set(key: string, value: Buffer, onlyIfAbsent: boolean): Promise<boolean>;
  delete(key: string): Promise<void>;
  /** Every key that starts with `prefix`, in code unit order. */
  keys(prefix: string): Promise<string[]>;
}

/** Uploads and content as `FileSystemStorage` keeps them; documents in `store`. */
export class KeyValueDocumentStorage extends FileSystemStorage {
  constructor(root: string, private readonly store: KeyValueStore) {
    super({ root });
  }

  override getDocument(key: string): Promise<Buffer | undefined> {
    return this.store.get(key);
  }

  override async putDocument(key: string, value: Buffer, options: PutDocumentOptions = {}): Promise<boolean> {
    assertSafeKey(key);
    return this.store.set(key, value, options.ifAbsent === true);
  }

  override deleteDocument(key: string): Promise<void> {
    return this.store.delete(key);
  }

  override async listDocuments(prefix: string, options?: ListOptions): Promise<string[]> {
    const keys = await this.store.keys(prefix);
    return pageNames(keys.map((key) => key.slice(prefix.length)), options);
  }
}

/** A {@link KeyValueStore} in a Map, standing in for a real one. */
export class MapKeyValueStore implements KeyValueStore {
  private readonly entries = new Map<string, Buffer>();

  async get(key: string): Promise<Buffer | undefined> {
    return this.entries.get(key);
  }

  async set(key: string, value: Buffer, onlyIfAbsent: boolean): Promise<boolean> {
    if (onlyIfAbsent && this.entries.has(key)) return false;
    this.entries.set(key, Buffer.from(value));
    return true;
  }

  async delete(key: string): Promise<void> {
    this.entries.delete(key);
  }

  async keys(prefix: string): Promise<string[]> {
    return [...this.entries.keys()].filter((key) => key.startsWith(prefix)).sort();
  }
}
