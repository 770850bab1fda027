// Webhook notifications: an outbox per endpoint in the storage adapter, and a delivery loop per endpoint.
import { createHash, randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { RECORDED_EVENT_NAMES, type RecordedEventName, type RegistryEventMap, type RegistryEvents } from '../events';
import { moduleLogger, type Log } from '../log';
import { currentOrigin } from '../request-log';
import { assertSafeKey, type StorageAdapter } from '../storage/adapter';
import { Lease } from './lease';
import { notificationBody, type NotificationBody, type NotificationFormat, type OutboxEntry } from './formats';

/** One webhook endpoint; see {@link RegistryOptions.notifications}. */
export interface NotificationEndpoint {
  /** Where events are POSTed (http or https). */
  url: string;
  /**
   * Names the endpoint's outbox in storage; instances sharing a storage must agree on it.
   * Default: derived from `url`. Letters, digits, `.`, `_` and `-`.
   */
  name?: string;
  /** Extra request headers, e.g. `Authorization`. */
  headers?: Record<string, string>;
  /** The events sent. Default every one but `blobCommitted`. */
  events?: RecordedEventName[];
  /** Milliseconds a delivery may take before it counts as failed. Default 10000. */
  timeout?: number;
  /** Retry delays: `initial` ms after the first failure, doubling up to `max` ms, each with jitter. Defaults 1000 and 300000. */
  backoff?: { initial?: number; max?: number };
  /** `distribution` (default): the reference registry's `{"events":[…]}` envelope; `cloudevents`: CloudEvents 1.0, one per request. */
  format?: NotificationFormat;
  /** The CloudEvents `source` attribute. Default `/express-oci-registry`. */
  source?: string;
  /** Most events in one envelope. Default 20. */
  maxBatch?: number;
  /** Milliseconds between looks at the outbox for events other instances recorded. Default 5000. */
  pollInterval?: number;
  /** Milliseconds one instance's claim on the endpoint lasts unless renewed. Default 30000. */
  leaseDuration?: number;
}

// Commits are many (one per layer) and mostly noise beside the manifest push that follows them.
const DEFAULT_EVENTS = RECORDED_EVENT_NAMES.filter((name) => name !== 'blobCommitted');

/** Key prefix of everything notifications keep in storage. */
export const NOTIFICATIONS_PREFIX = 'notifications/';

/**
 * Records every published change, before it is acknowledged, as one outbox document per
 * endpoint that wants it, and runs one delivery loop per endpoint.
 */
export class Notifier {
  private readonly deliveries: Delivery[];
  private readonly instance = randomUUID();
  private lastTime = 0;
  private sequence = 0;

  constructor(
    private readonly adapter: StorageAdapter,
    events: RegistryEvents,
    endpoints: NotificationEndpoint[],
  ) {
    this.deliveries = endpoints.map((endpoint) => new Delivery(adapter, events, endpoint, this.instance));
    events.addRecorder((name, payload) => this.record(name, payload));
    for (const delivery of this.deliveries) delivery.wake();
  }

  /** Stops every delivery loop; what is undelivered stays in the outbox. */
  async close(): Promise<void> {
    await Promise.all(this.deliveries.map((delivery) => delivery.close()));
  }

  private async record<K extends RecordedEventName>(name: K, payload: RegistryEventMap[K][0]): Promise<void> {
    const targets = this.deliveries.filter((delivery) => delivery.events.has(name));
    if (targets.length === 0) return;
    const entry: OutboxEntry<K> = { id: randomUUID(), name, time: new Date().toISOString(), instance: this.instance, request: currentOrigin(), payload };
    const document = Buffer.from(JSON.stringify(entry));
    const key = this.nextKey();
    await Promise.all(targets.map((delivery) => this.adapter.putDocument(delivery.outbox + key, document)));
    for (const delivery of targets) delivery.wake();
  }

  /** An outbox key that sorts after every earlier one of this process: time, then a counter, then the instance. */
  private nextKey(): string {
    const now = Math.max(Date.now(), this.lastTime);
    this.sequence = now === this.lastTime ? this.sequence + 1 : 0;
    this.lastTime = now;
    return `${String(now).padStart(15, '0')}-${String(this.sequence).padStart(6, '0')}-${this.instance}`;
  }
}

/** One endpoint's delivery loop: oldest entries first, the next batch only once the last was acknowledged. */
class Delivery {
  readonly events: Set<RecordedEventName>;
  readonly outbox: string;
  private readonly name: string;
  private readonly lease: Lease;
  private readonly log: Log;
  private readonly agent: http.Agent;
  private timer: NodeJS.Timeout | undefined;
  /** Whether the timer is a retry after a failure, which new events must not cut short. */
  private backingOff = false;
  private running: Promise<void> | undefined;
  private wakeAgain = false;
  private failures = 0;
  private closed = false;
  private inFlight: AbortController | undefined;

  constructor(
    private readonly adapter: StorageAdapter,
    private readonly registryEvents: RegistryEvents,
    private readonly endpoint: NotificationEndpoint,
    instance: string,
  ) {
    const url = new URL(endpoint.url);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`notification endpoints must be http or https: ${endpoint.url}`);
    const name = endpoint.name ?? createHash('sha256').update(endpoint.url).digest('hex').slice(0, 16);
    assertSafeKey(name);
    this.name = name;
    const unknown = (endpoint.events ?? []).filter((name) => !RECORDED_EVENT_NAMES.includes(name));
    if (unknown.length > 0) throw new Error(`notifications cannot carry ${unknown.join(', ')}; they carry ${RECORDED_EVENT_NAMES.join(', ')}`);
    this.events = new Set(endpoint.events ?? DEFAULT_EVENTS);
    this.outbox = `${NOTIFICATIONS_PREFIX}${name}/outbox/`;
    this.lease = new Lease(adapter, `${NOTIFICATIONS_PREFIX}${name}/lease/`, instance, endpoint.leaseDuration ?? 30_000);
    this.log = moduleLogger('notifications')({ endpoint: name });
    this.agent = new (url.protocol === 'https:' ? https.Agent : http.Agent)({ keepAlive: true });
  }

  /** Delivers what is waiting now, unless a retry is pending; during a run, runs again after it. */
  wake(): void {
    if (this.closed || this.backingOff) return;
    if (this.running) {
      // The run may have listed the outbox before the entry that woke us was written.
      this.wakeAgain = true;
      return;
    }
    clearTimeout(this.timer);
    this.running = this.run().finally(() => {
      this.running = undefined;
      if (!this.wakeAgain) return;
      this.wakeAgain = false;
      this.wake();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.inFlight?.abort();
    await this.running;
    try {
      await this.lease.release();
    } catch (error) {
      this.log('releasing the lease failed: %O', error);
    }
    this.agent.destroy();
  }

  private async run(): Promise<void> {
    try {
      while (!this.closed) {
        if (!(await this.lease.hold())) {
          this.schedule(Math.max(this.lease.heldElsewhereUntil - Date.now(), 0) + this.pollInterval / 10, false);
          return;
        }
        const batch = await this.nextBatch();
        if (batch.length === 0) {
          this.schedule(this.pollInterval, false);
          return;
        }
        await this.send(batch.map(({ entry }) => entry));
        for (const { key } of batch) await this.adapter.deleteDocument(this.outbox + key);
        this.failures = 0;
      }
    } catch (error) {
      if (this.closed) return;
      this.failures++;
      const delay = this.retryDelay();
      this.log('delivery failed (%d in a row), retrying in %d ms: %s', this.failures, Math.round(delay), (error as Error).message);
      this.schedule(delay, true);
    }
  }

  private get pollInterval(): number {
    return this.endpoint.pollInterval ?? 5000;
  }

  /** Exponential backoff with jitter: between half and all of `initial * 2^(failures-1)`, at most `max`. */
  private retryDelay(): number {
    const { initial = 1000, max = 300_000 } = this.endpoint.backoff ?? {};
    const ceiling = Math.min(max, initial * 2 ** Math.min(this.failures - 1, 30));
    return ceiling / 2 + (Math.random() * ceiling) / 2;
  }

  private schedule(delay: number, backingOff: boolean): void {
    if (this.closed) return;
    this.backingOff = backingOff;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.backingOff = false;
      this.wake();
    }, delay);
    this.timer.unref();
  }

  /** The oldest entries, as many as one request carries; ones delivered by another instance meanwhile drop out. */
  private async nextBatch(): Promise<{ key: string; entry: OutboxEntry }[]> {
    const limit = this.endpoint.format === 'cloudevents' ? 1 : (this.endpoint.maxBatch ?? 20);
    const keys = await this.adapter.listDocuments(this.outbox, { limit });
    const batch: { key: string; entry: OutboxEntry }[] = [];
    for (const key of keys) {
      const document = await this.adapter.getDocument(this.outbox + key);
      if (document) batch.push({ key, entry: JSON.parse(document.toString('utf8')) as OutboxEntry });
    }
    return batch;
  }

  private async send(entries: OutboxEntry[]): Promise<void> {
    const body = notificationBody(this.endpoint.format ?? 'distribution', entries, this.endpoint.source ?? '/express-oci-registry');
    const controller = new AbortController();
    this.inFlight = controller;
    const timer = setTimeout(() => controller.abort(new Error(`no answer within ${this.endpoint.timeout ?? 10_000} ms`)), this.endpoint.timeout ?? 10_000);
    timer.unref();
    const started = performance.now();
    let ok = false;
    try {
      const status = await post(this.endpoint, this.agent, body, controller.signal);
      if (status < 200 || status > 299) throw new Error(`the endpoint answered ${status}`);
      ok = true;
      this.log('delivered %d events (%s)', entries.length, entries.map((entry) => entry.id).join(' '));
    } finally {
      clearTimeout(timer);
      this.inFlight = undefined;
      this.registryEvents.notify('notificationSent', { endpoint: this.name, events: entries.length, ok, ms: performance.now() - started });
    }
  }
}

/** POSTs `body` and resolves to the response status once its body has been read. */
function post(endpoint: NotificationEndpoint, agent: http.Agent, { contentType, body }: NotificationBody, signal: AbortSignal): Promise<number> {
  const transport = endpoint.url.startsWith('https:') ? https : http;
  return new Promise((resolve, reject) => {
    const req = transport.request(endpoint.url, {
      method: 'POST',
      agent,
      signal,
      headers: { ...endpoint.headers, 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body), 'User-Agent': 'express-oci-registry' },
    });
    req.once('error', reject);
    req.once('response', (res) => {
      res.once('error', reject);
      res.once('end', () => resolve(res.statusCode ?? 0));
      res.resume();
    });
    req.end(body);
  });
}
