/** A storage whose adapter calls can be held at gates, to order a request against a collection step by step. */
import { MemoryStorage, type StorageAdapter } from '../../lib';

/** Which adapter call a gate or watch waits for: the method's name and its arguments. */
export type CallMatcher = (method: string, args: unknown[]) => boolean;

/** A call held at a gate: `reached` resolves when it arrives, `release()` lets it (and every later one) through. */
export interface Gate {
  reached: Promise<void>;
  release(): void;
}

/**
 * A storage adapter whose calls a test can hold and watch, to run two flows in a chosen order:
 * `pauseAt` holds a matching call until released; `nextCall` resolves on the next matching
 * call without holding it.
 */
export function gatedStorage(inner: StorageAdapter = new MemoryStorage()) {
  const gates: { match: CallMatcher; skip: number; arrived: () => void; opened: Promise<void> }[] = [];
  const watches: { match: CallMatcher; seen: () => void }[] = [];
  const storage = new Proxy(inner, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver) as unknown;
      if (typeof value !== 'function') return value;
      return async (...args: unknown[]) => {
        const method = String(property);
        for (let index = watches.length - 1; index >= 0; index--) {
          if (watches[index].match(method, args)) watches.splice(index, 1)[0].seen();
        }
        const index = gates.findIndex((entry) => entry.match(method, args) && entry.skip-- === 0);
        if (index >= 0) {
          const [entry] = gates.splice(index, 1);
          entry.arrived();
          await entry.opened;
        }
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return {
    storage,
    /** Holds the first call matching `match` after `skip` matching ones have gone through. */
    pauseAt(match: CallMatcher, skip = 0): Gate {
      let arrived!: () => void;
      let open!: () => void;
      const reached = new Promise<void>((resolve) => (arrived = resolve));
      const opened = new Promise<void>((resolve) => (open = resolve));
      const gate = { reached, release: () => open() };
      gates.push({ match, skip, arrived, opened });
      return gate;
    },
    nextCall(match: CallMatcher): Promise<void> {
      return new Promise<void>((seen) => watches.push({ match, seen }));
    },
  };
}

/** Matches a call of `method` whose first argument (a key) satisfies `key`. */
export function call(method: string, key: (key: string) => boolean, value?: (value: Buffer) => boolean): CallMatcher {
  return (name, args) => name === method && typeof args[0] === 'string' && key(args[0]) && (!value || (Buffer.isBuffer(args[1]) && value(args[1])));
}
