// A time-limited claim on one endpoint's outbox, kept as documents so instances sharing a storage take turns.
import type { StorageAdapter } from '../storage/adapter';

interface LeaseRecord {
  owner: string;
  /** Epoch milliseconds; 0 once released. */
  expiresAt: number;
}

/**
 * Each claim is a new document `<prefix><generation>`, created only if absent: of the instances
 * that find the latest claim expired, exactly one creates the next generation. The holder renews
 * its own document. A holder that stalls past its expiry may overlap with the next one for one
 * delivery, which at-least-once allows. Instances' clocks are assumed to agree to well within a
 * lease's duration.
 */
export class Lease {
  private generation: number | undefined;
  /** When the claim another instance holds runs out, after a failed {@link hold}. */
  heldElsewhereUntil = 0;

  constructor(
    private readonly adapter: StorageAdapter,
    private readonly prefix: string,
    private readonly owner: string,
    private readonly duration: number,
  ) {}

  /** Takes or renews the claim; false while another instance holds it. */
  async hold(): Promise<boolean> {
    const now = Date.now();
    const latest = await this.latest();
    if (latest?.record?.owner === this.owner && latest.generation === this.generation) {
      if (latest.record.expiresAt - now < this.duration / 2) await this.write(latest.generation, now + this.duration);
      return true;
    }
    this.generation = undefined;
    if (latest && (!latest.record || latest.record.expiresAt > now)) {
      // A record gone between listing and reading was replaced by a newer claim.
      this.heldElsewhereUntil = latest.record?.expiresAt ?? now;
      return false;
    }
    const next = (latest?.generation ?? 0) + 1;
    const record: LeaseRecord = { owner: this.owner, expiresAt: now + this.duration };
    if (!(await this.adapter.putDocument(this.key(next), Buffer.from(JSON.stringify(record)), { ifAbsent: true }))) {
      this.heldElsewhereUntil = now;
      return false;
    }
    this.generation = next;
    for (const name of await this.adapter.listDocuments(this.prefix)) {
      if (Number(name) < next) await this.adapter.deleteDocument(this.prefix + name);
    }
    return true;
  }

  /** Gives the claim up, so another instance may take it at once. */
  async release(): Promise<void> {
    if (this.generation === undefined) return;
    const generation = this.generation;
    this.generation = undefined;
    const latest = await this.latest();
    if (latest?.generation === generation && latest.record?.owner === this.owner) await this.write(generation, 0);
  }

  private async latest(): Promise<{ generation: number; record: LeaseRecord | undefined } | undefined> {
    const names = await this.adapter.listDocuments(this.prefix);
    const last = names.at(-1);
    if (last === undefined) return undefined;
    const document = await this.adapter.getDocument(this.prefix + last);
    return { generation: Number(last), record: document && (JSON.parse(document.toString('utf8')) as LeaseRecord) };
  }

  private async write(generation: number, expiresAt: number): Promise<void> {
    const record: LeaseRecord = { owner: this.owner, expiresAt };
    await this.adapter.putDocument(this.key(generation), Buffer.from(JSON.stringify(record)));
  }

  private key(generation: number): string {
    return this.prefix + String(generation).padStart(12, '0');
  }
}
