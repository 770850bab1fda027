/** A storage that records every adapter call, to check that nothing touched it. */
import { MemoryStorage, type StorageAdapter } from '../../lib';

/** A MemoryStorage that records the name of every adapter method called on it. */
export function watchedStorage(inner: StorageAdapter = new MemoryStorage()): { storage: StorageAdapter; calls: string[] } {
  const calls: string[] = [];
  const storage = new Proxy(inner, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver) as unknown;
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        calls.push(String(property));
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { storage, calls };
}
