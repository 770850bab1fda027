/** The marks and pins through which requests and the garbage collector agree on what may be deleted. */
import { forEachDistinct } from '../concurrency';
import { RegistryError } from '../errors';
import type { StorageAdapter } from '../storage/adapter';
import { gcMarkKey, gcPinKey, GC_MARKS_PREFIX, GC_PINS_PREFIX } from './paths';

/** What the collector means to do to an item: delete it later (`condemned`), or now (`deleting`). */
export type MarkState = 'condemned' | 'deleting';

interface Mark {
  state: MarkState;
  at: string;
}

/** A `deleting` mark older than this belongs to a collector that died; requests then go on. */
const ABANDONED_DELETING_MS = 5 * 60_000;
/** A collector that took longer than this between its `deleting` mark and its delete gives the item up. */
export const DELETING_DEADLINE_MS = 60_000;
const POLL_MS = 20;
/** How long a request waits for a collector to finish deleting one item before answering 503. */
const WAIT_LIMIT_MS = 30_000;
const TOUCH_CONCURRENCY = 16;

/**
 * The handshake that keeps the collector from deleting anything a client was told exists. A
 * request that relies on an item first writes its reference (a link, a manifest revision), then
 * calls {@link touch}: it pins a condemned item and waits while one is being deleted, then checks
 * that the item still exists. The collector writes a `deleting` mark, then looks for a pin, and
 * deletes only without one. Each side writes before it reads what the other writes, so at least
 * one of them sees the other: the request waits and finds the item gone (and fails cleanly), or
 * the collector finds the pin (and keeps the item). The README gives the whole argument.
 */
export class CollectionMarks {
  constructor(private readonly adapter: StorageAdapter) {}

  /** Pins whichever of `items` are condemned, and waits while any of them is being deleted. */
  async touch(items: Iterable<string>): Promise<void> {
    await forEachDistinct(items, (item) => item, TOUCH_CONCURRENCY, (item) => this.touchOne(item, false));
  }

  /**
   * Pins `item` whether or not it is condemned yet, then waits while it is being deleted: for a
   * write that relies on the item before it can write its reference (a commit whose content
   * already exists keeps that copy, so a collection must not take it until the link is written).
   */
  async pin(item: string): Promise<void> {
    await this.touchOne(item, true);
  }

  /** Marks `item` for deletion on a later pass. */
  async condemn(item: string): Promise<void> {
    await this.write(item, 'condemned');
  }

  /** Marks `item` as being deleted now, and resolves to whether a request pinned it meanwhile (it must then be kept). */
  async beginDeleting(item: string): Promise<{ pinned: boolean; markedAt: number }> {
    const markedAt = Date.now();
    await this.write(item, 'deleting', markedAt);
    const pinned = (await this.adapter.getDocument(gcPinKey(item))) !== undefined;
    return { pinned, markedAt };
  }

  /** Removes the mark and pin of `item`: it was deleted, or it is kept. */
  async clear(item: string): Promise<void> {
    await this.adapter.deleteDocument(gcPinKey(item));
    await this.adapter.deleteDocument(gcMarkKey(item));
  }

  /**
   * Removes the pins written before `before` (ms since the epoch) on items that carry no mark: the
   * writes that left them have written their references since, or failed cleanly.
   */
  async clearPinsBefore(before: number): Promise<void> {
    const marked = new Set(await this.marked());
    for (const item of await this.adapter.listDocuments(GC_PINS_PREFIX)) {
      if (marked.has(item)) continue;
      const document = await this.adapter.getDocument(gcPinKey(item));
      const at = document && Date.parse((JSON.parse(document.toString('utf8')) as { at: string }).at);
      if (at !== undefined && at < before) await this.adapter.deleteDocument(gcPinKey(item));
    }
  }

  /** Every item that carries a mark, from this collection or one that stopped before it finished. */
  async marked(): Promise<string[]> {
    return this.adapter.listDocuments(GC_MARKS_PREFIX);
  }

  private async touchOne(item: string, always: boolean): Promise<void> {
    let mark = always ? undefined : await this.read(item);
    if (always || mark?.state === 'condemned') {
      await this.adapter.putDocument(gcPinKey(item), Buffer.from(JSON.stringify({ at: new Date().toISOString() })));
      mark = await this.read(item);
    }
    const started = Date.now();
    while (mark?.state === 'deleting' && Date.now() - Date.parse(mark.at) < ABANDONED_DELETING_MS) {
      if (Date.now() - started > WAIT_LIMIT_MS) {
        throw new RegistryError('UNKNOWN', 'garbage collection is deleting content this request relies on; try again', {
          status: 503,
          headers: { 'Retry-After': '5' },
        });
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      mark = await this.read(item);
    }
  }

  private async read(item: string): Promise<Mark | undefined> {
    const document = await this.adapter.getDocument(gcMarkKey(item));
    return document && (JSON.parse(document.toString('utf8')) as Mark);
  }

  private async write(item: string, state: MarkState, at = Date.now()): Promise<void> {
    const mark: Mark = { state, at: new Date(at).toISOString() };
    await this.adapter.putDocument(gcMarkKey(item), Buffer.from(JSON.stringify(mark)));
  }
}
