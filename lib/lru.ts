// A size-capped map that forgets its least recently used entries: what bounds the store's per-session memory.

/**
 * A `Map` that holds at most `capacity` entries: setting one more drops the entry least recently
 * set or read. For caches whose entries can always be got again another way (a session's record
 * from storage, a running hash by reading the upload back).
 */
export class LruMap<K, V> {
  private readonly entries = new Map<K, V>();

  constructor(readonly capacity: number) {
    if (!(Number.isInteger(capacity) && capacity > 0)) throw new RangeError(`an LRU capacity must be a positive integer, not ${capacity}`);
  }

  /** The entry under `key`, which becomes the most recently used. */
  get(key: K): V | undefined {
    const value = this.entries.get(key);
    if (value !== undefined) {
      // Map keeps insertion order: moving the entry to the end makes the first one the oldest.
      this.entries.delete(key);
      this.entries.set(key, value);
    }
    return value;
  }

  has(key: K): boolean {
    return this.entries.has(key);
  }

  /** Sets `key` as the most recently used entry, dropping the oldest beyond the capacity. */
  set(key: K, value: V): void {
    this.entries.delete(key);
    this.entries.set(key, value);
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value as K);
  }

  delete(key: K): boolean {
    return this.entries.delete(key);
  }

  get size(): number {
    return this.entries.size;
  }

  keys(): IterableIterator<K> {
    return this.entries.keys();
  }
}
