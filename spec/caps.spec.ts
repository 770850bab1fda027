// The helpers that bound memory and concurrency: LruMap and forEachDistinct.
import { firstDistinct, forEachDistinct } from '../lib/concurrency';
import { LruMap } from '../lib/lru';

describe('LruMap', () => {
  it('holds at most its capacity, dropping the least recently used entry', () => {
    const map = new LruMap<string, number>(2);
    map.set('a', 1);
    map.set('b', 2);
    expect(map.get('a')).toBe(1);
    map.set('c', 3);
    expect([...map.keys()]).toEqual(['a', 'c']);
    expect(map.has('b')).toBe(false);
    expect(map.size).toBe(2);
    expect(map.delete('a')).toBe(true);
    expect(map.get('a')).toBeUndefined();
  });

  it('refuses a capacity that is not a positive integer', () => {
    expect(() => new LruMap(0)).toThrow(RangeError);
  });
});

describe('firstDistinct', () => {
  it('finds the earliest matching item, whatever order the tests end in', async () => {
    const test = async (item: number) => {
      for (let turn = 0; turn < 10 - item; turn++) await new Promise<void>((resolve) => setImmediate(resolve));
      return item === 4 || item === 6;
    };
    expect(await firstDistinct([1, 2, 3, 4, 5, 6, 7], String, 4, test)).toBe(4);
    expect(await firstDistinct([1, 2, 3], String, 4, test)).toBeUndefined();
  });
});

describe('forEachDistinct', () => {
  it('checks each distinct item once, never more than the concurrency at a time', async () => {
    const checked: string[] = [];
    let running = 0;
    let most = 0;
    const items = Array.from({ length: 100 }, (_, index) => `item-${index % 30}`);
    await forEachDistinct(items, (item) => item, 4, async (item) => {
      running++;
      most = Math.max(most, running);
      await new Promise<void>((resolve) => setImmediate(resolve));
      checked.push(item);
      running--;
    });
    expect(checked.sort()).toEqual([...new Set(items)].sort());
    expect(most).toBe(4);
  });

  it('rejects with the earliest failing item, whatever order the checks end in, and starts no check after a failure', async () => {
    const started: number[] = [];
    const check = async (item: number) => {
      started.push(item);
      // Later items answer first.
      for (let turn = 0; turn < 10 - item; turn++) await new Promise<void>((resolve) => setImmediate(resolve));
      if (item >= 2) throw new Error(`missing ${item}`);
    };
    await expect(forEachDistinct([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], String, 3, check)).rejects.toThrow('missing 2');
    expect(started.length).toBeLessThan(10);
  });
});
