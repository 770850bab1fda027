/** Claims: exclusive access to an upload across processes over plain S3 operations (the bakery algorithm). */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { _Object } from '@aws-sdk/client-s3';
import { moduleLogger } from '../../log';
import type { Bucket } from './bucket';

const log = moduleLogger('s3-claims');

/** An exclusive claim on a name, renewed in the background until released. */
export interface Claim {
  /**
   * Gives the claim up; the next claimant can win at once. Never rejects: when the bucket cannot
   * be reached, the ticket stays until this table's next claim of the name deletes it (or its
   * lease runs out, for other processes).
   */
  release(): Promise<void>;
}

/**
 * Mutual exclusion between processes over a bucket that offers no conditional write: only
 * PutObject, DeleteObject and a ListObjectsV2 that shows every write completed before it
 * (AWS S3, MinIO, Ceph RGW, and Swift with synchronous container updates all do).
 *
 * It is Lamport's bakery algorithm with "give up" in place of "wait for your turn". Each claim
 * on a name lives under `<prefix><name>/`:
 *
 * 1. put `intent/<me>` (the bakery's "choosing" flag);
 * 2. list `ticket/`, and put `ticket/<highest + 1>-<me>` (zero-padded, so names sort by number);
 * 3. delete `intent/<me>`;
 * 4. list everything under the name until no other live intent shows (a claimant still choosing
 *    its number could otherwise pick one below ours), then win when no live ticket sorts before
 *    ours. {@link tryClaim} gives up at once otherwise (an append never waits for another
 *    request's body); {@link claim} keeps its ticket and lists again until it is first.
 *
 * Guarantees: at most one live holder per name at any time; among claimants that overlap the
 * lowest ticket wins, so a race of two always has exactly one winner; waiting claimants are
 * served in ticket order. Cost: five requests to win or lose, one to release.
 *
 * Limits: a holder renews its ticket every `leaseMs / 3`; tickets and intents whose last write
 * is more than `leaseMs` older than the claimant's own ticket (both by the server's clock) count
 * as left by a dead process and are removed. A holder that stalls for longer than the lease
 * (a frozen process, a partitioned network) can therefore lose its claim while it still writes:
 * the same bound every lease-based lock has. The lease also delays the takeover of a session
 * whose process died mid-request.
 */
export class ClaimTable {
  /**
   * Tickets and intents this process could not delete (the bucket unreachable), by claim prefix.
   * Its next claim of the name deletes them first: left alone, they would hold the name until
   * their lease ran out, after the bucket is back.
   */
  private readonly leftovers = new Map<string, Set<string>>();

  constructor(
    private readonly bucket: Bucket,
    /** Key prefix of all claims, ending in `/`. */
    private readonly prefix: string,
    /** How long a claim survives its holder's last renewal, in milliseconds. */
    readonly leaseMs: number,
  ) {}

  /** Claims `name` if no other process holds or is winning it; else resolves to undefined at once. */
  tryClaim(name: string): Promise<Claim | undefined> {
    return this.enter(name, 0);
  }

  /**
   * Claims `name`, queueing behind the holder and earlier claimants (first come, first served)
   * for at most `timeoutMs`; rejects after that.
   */
  async claim(name: string, timeoutMs = this.leaseMs * 4): Promise<Claim> {
    const claim = await this.enter(name, timeoutMs);
    if (!claim) throw new Error(`could not claim ${name} within ${timeoutMs} ms`);
    return claim;
  }

  /** Takes a ticket for `name` and waits up to `patienceMs` for it to be the lowest live one. */
  private async enter(name: string, patienceMs: number): Promise<Claim | undefined> {
    const base = `${this.prefix}${name}/`;
    const me = randomUUID();
    const intent = `${base}intent/${me}`;
    let ticket: string;
    await this.removeLeftovers(base);
    await this.bucket.put(intent, '');
    try {
      const tickets = await this.bucket.list(`${base}ticket/`);
      const highest = tickets.reduce((max, object) => Math.max(max, ticketNumber(object.Key!)), 0);
      ticket = `${base}ticket/${String(highest + 1).padStart(12, '0')}-${me}`;
      await this.bucket.put(ticket, '');
    } finally {
      await this.remove(base, intent);
    }
    // Renewed from now on, so that a waiting ticket does not turn stale.
    const claim = this.hold(base, ticket);
    const deadline = Date.now() + patienceMs;
    try {
      while (await this.outranked(base, ticket)) {
        if (Date.now() >= deadline) {
          await claim.release();
          return undefined;
        }
        await sleep(20);
      }
      return claim;
    } catch (error) {
      await claim.release().catch(() => undefined);
      throw error;
    }
  }

  /** Whether a live ticket sorts before `ticket`, once no other claimant is choosing its number. */
  private async outranked(base: string, ticket: string): Promise<boolean> {
    for (;;) {
      const objects = await this.bucket.list(base);
      const own = objects.find((object) => object.Key === ticket);
      // Removed as stale by another claimant: this process stalled beyond the lease.
      if (!own) throw new Error(`claim ${ticket} was taken over while this process waited`);
      const now = own.LastModified!.getTime();
      const live: _Object[] = [];
      for (const object of objects) {
        if (object.Key === ticket) continue;
        if (now - object.LastModified!.getTime() > this.leaseMs) {
          log({ claim: base })('removing stale %s', object.Key);
          await this.bucket.delete(object.Key!);
        } else {
          live.push(object);
        }
      }
      if (live.some((object) => object.Key!.startsWith(`${base}intent/`))) {
        await sleep(5);
        continue;
      }
      return live.some((object) => object.Key! < ticket);
    }
  }

  /** Deletes `key` of the claim at `base`; when that fails, keeps it for {@link removeLeftovers} and rethrows. */
  private async remove(base: string, key: string): Promise<void> {
    try {
      await this.bucket.delete(key);
    } catch (error) {
      let keys = this.leftovers.get(base);
      if (!keys) this.leftovers.set(base, (keys = new Set()));
      keys.add(key);
      throw error;
    }
  }

  /** Deletes what earlier claims at `base` left when the bucket could not be reached. */
  private async removeLeftovers(base: string): Promise<void> {
    const keys = this.leftovers.get(base);
    if (!keys) return;
    for (const key of [...keys]) {
      await this.bucket.delete(key);
      keys.delete(key);
    }
    this.leftovers.delete(base);
  }

  private hold(base: string, ticket: string): Claim {
    let renewal: Promise<unknown> = Promise.resolve();
    const timer = setInterval(() => {
      renewal = renewal.then(() => this.bucket.put(ticket, '')).catch((error) => log({ claim: ticket })('renewal failed: %O', error));
    }, Math.max(this.leaseMs / 3, 100));
    timer.unref();
    return {
      release: async () => {
        clearInterval(timer);
        // A renewal still in flight would bring the ticket back after its deletion.
        await renewal;
        await this.remove(base, ticket).catch((error: unknown) => log({ claim: ticket })('release failed, deleting it at the next claim: %O', error));
      },
    };
  }
}

function ticketNumber(key: string): number {
  return Number(key.slice(key.lastIndexOf('/') + 1).split('-')[0]) || 0;
}
