// Running many storage look-ups at once, a bounded number at a time.

/**
 * The first item of `items`, in order, for which `test` resolves true, or undefined when none
 * does. `test` runs once for each distinct item (by `key`), at most `concurrency` at once, in
 * order; once one has resolved true or failed, no further test starts. When those running have
 * ended, it answers as testing one by one would: the earliest item found, or the failure of the
 * earliest item whose test failed before it.
 */
export async function firstDistinct<T>(items: Iterable<T>, key: (item: T) => string, concurrency: number, test: (item: T) => Promise<boolean>): Promise<T | undefined> {
  const distinct = new Map<string, T>();
  for (const item of items) if (!distinct.has(key(item))) distinct.set(key(item), item);
  const queue = [...distinct.values()];
  let next = 0;
  // The earliest item found or failed; its index stays Infinity while there is none.
  const first: { index: number; found?: T; error?: unknown } = { index: Number.POSITIVE_INFINITY };
  const worker = async () => {
    while (next < queue.length && first.index === Number.POSITIVE_INFINITY) {
      const index = next++;
      try {
        if (await test(queue[index])) {
          if (index < first.index) Object.assign(first, { index, found: queue[index], error: undefined });
        }
      } catch (error) {
        if (index < first.index) Object.assign(first, { index, found: undefined, error });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, worker));
  if (first.error !== undefined) throw first.error;
  return first.found;
}

/** Calls `check` once for each distinct item of `items`, as {@link firstDistinct} runs its tests, and rejects with the earliest item's failure. */
export async function forEachDistinct<T>(items: Iterable<T>, key: (item: T) => string, concurrency: number, check: (item: T) => Promise<void>): Promise<void> {
  await firstDistinct(items, key, concurrency, async (item) => {
    await check(item);
    return false;
  });
}
