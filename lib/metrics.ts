// Prometheus metrics for a registry router, from its events (`express-oci-registry/metrics`, needs prom-client).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Counter, Gauge, Histogram, register as defaultRegistry, type Registry } from 'prom-client';
import type { RegistryEventMap, RegistryEventName, RegistryEvents } from './events';

/** Options for {@link registryMetrics}. */
export interface RegistryMetricsOptions {
  /** The prom-client registry the metrics go in. Default prom-client's global `register`. */
  registry?: Registry;
  /**
   * Adds a `repository` label to the request, byte, commit, mount and manifest metrics. Off by
   * default: every repository name makes new series, so turn it on only for a bounded set.
   */
  repositoryLabels?: boolean;
}

/** What {@link registryMetrics} returns. */
export interface RegistryMetrics {
  /** The registry the metrics are in. */
  readonly registry: Registry;
  /** An Express/Node handler that answers with the text exposition: `app.get('/metrics', metrics.handler)`. */
  handler(req: IncomingMessage, res: ServerResponse): void;
  /** Stops updating the metrics from this router (the metrics stay registered). */
  close(): void;
}

/** Anything with the router's typed events: a `RegistryRouter`. */
export interface HasRegistryEvents {
  readonly events: RegistryEvents;
}

/** Upper bounds of the request duration histogram, in seconds: quick reads up to long uploads. */
const REQUEST_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
/** Upper bounds of the verify histogram, in seconds: a running hash is near instant, a read back takes a while. */
const VERIFY_BUCKETS = [0.0001, 0.001, 0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * Registers the registry's metrics (names in docs/operations.md) and keeps them up to date
 * from `router.events`. Several routers may share one prom-client registry; their counts add up.
 *
 * @example
 * ```ts
 * import { registryMetrics } from 'express-oci-registry/metrics';
 * const metrics = registryMetrics(router);
 * app.get('/metrics', metrics.handler);
 * ```
 */
export function registryMetrics(router: HasRegistryEvents, options: RegistryMetricsOptions = {}): RegistryMetrics {
  const registry = options.registry ?? defaultRegistry;
  const repo = options.repositoryLabels ? ['repository'] : [];
  const withRepository = (labels: Record<string, string | number>, repository: string | undefined) =>
    options.repositoryLabels ? { ...labels, repository: repository ?? '' } : labels;

  const metric = <T>(name: string, make: () => T): T => (registry.getSingleMetric(name) as T | undefined) ?? make();
  const counter = (name: string, help: string, labelNames: string[] = []) =>
    metric(name, () => new Counter({ name, help, labelNames, registers: [registry] }));
  const gauge = (name: string, help: string, labelNames: string[] = []) => metric(name, () => new Gauge({ name, help, labelNames, registers: [registry] }));
  const histogram = (name: string, help: string, labelNames: string[], buckets: number[]) =>
    metric(name, () => new Histogram({ name, help, labelNames, buckets, registers: [registry] }));

  const requests = counter('oci_registry_requests_total', 'Requests under /v2 answered, by route, method and status.', ['route', 'method', 'status', ...repo]);
  const duration = histogram('oci_registry_request_duration_seconds', 'Time from a request arriving to its response ending.', ['route', 'method'], REQUEST_BUCKETS);
  const inFlight = gauge('oci_registry_requests_in_flight', 'Requests under /v2 being served now; route="upload" are uploads in progress.', ['route']);
  const received = counter('oci_registry_received_bytes_total', 'Request body bytes read.', ['route', ...repo]);
  const sent = counter('oci_registry_sent_bytes_total', 'Response body bytes sent.', ['route', ...repo]);
  const sessionsStarted = counter('oci_registry_upload_sessions_started_total', 'Upload sessions opened.');
  const sessionsEnded = counter('oci_registry_upload_sessions_ended_total', 'Upload sessions ended, by outcome (committed, cancelled, expired).', ['outcome']);
  const commits = counter('oci_registry_blob_commits_total', 'Blobs verified and committed.', repo);
  const committedBytes = counter('oci_registry_blob_committed_bytes_total', 'Bytes of the blobs committed.', repo);
  const verify = histogram('oci_registry_blob_verify_duration_seconds', 'Time spent checking a committed blob against its digest.', [], VERIFY_BUCKETS);
  const mounts = counter('oci_registry_blob_mounts_total', 'Blobs linked into a repository by a cross-repository mount.', repo);
  const manifestsPushed = counter('oci_registry_manifests_pushed_total', 'Manifests stored.', repo);
  const deletes = counter('oci_registry_deletes_total', 'Deletions, by what was deleted (manifest, tag, blob).', ['what']);
  const storageErrors = counter('oci_registry_storage_errors_total', 'Storage adapter calls that failed, by adapter method and kind.', ['operation', 'kind']);
  const purgerRuns = counter('oci_registry_purger_runs_total', 'Runs of the stale upload purger, by result (ok, failed).', ['result']);
  const deliveries = counter('oci_registry_notification_requests_total', 'Notification requests to each endpoint, by result (ok, failed); failed ones are retried.', [
    'endpoint',
    'result',
  ]);
  const delivered = counter('oci_registry_notification_events_delivered_total', 'Events endpoints acknowledged (a redelivery counts again).', ['endpoint']);
  const gcRuns = counter('oci_registry_gc_runs_total', 'Garbage collections completed, by mode (run, dry_run).', ['mode']);
  const gcBlobs = counter('oci_registry_gc_removed_blobs_total', 'Blobs whose content the garbage collector removed.');
  const gcManifests = counter('oci_registry_gc_deleted_manifests_total', 'Manifest revisions the garbage collector deleted.');
  const gcBytes = counter('oci_registry_gc_freed_bytes_total', 'Bytes the garbage collector freed.');
  const upstreamFetches = counter('oci_registry_upstream_fetches_total', 'Fetches from a mirror upstream, by object and result (ok, failed).', ['what', 'result']);
  const upstreamBytes = counter('oci_registry_upstream_received_bytes_total', 'Bytes received from a mirror upstream.', ['what']);
  const lookups = counter('oci_registry_mirror_lookups_total', 'Reads a mirror answered, by object and result (hit, miss).', ['what', 'result']);

  // Series that exist from the start, so rates and alerts see zeros rather than nothing.
  for (const outcome of ['committed', 'cancelled', 'expired']) sessionsEnded.inc({ outcome }, 0);
  for (const result of ['ok', 'failed']) purgerRuns.inc({ result }, 0);

  const result = (ok: boolean) => (ok ? 'ok' : 'failed');
  const listeners: { [K in RegistryEventName]?: (...args: RegistryEventMap[K]) => void } = {
    requestStarted: ({ route }) => inFlight.inc({ route }),
    requestCompleted: (info) => {
      inFlight.dec({ route: info.route });
      requests.inc(withRepository({ route: info.route, method: info.method, status: info.status }, info.repository));
      duration.observe({ route: info.route, method: info.method }, info.ms / 1000);
      received.inc(withRepository({ route: info.route }, info.repository), info.bytesReceived);
      sent.inc(withRepository({ route: info.route }, info.repository), info.bytesSent);
    },
    uploadStarted: () => sessionsStarted.inc(),
    uploadCancelled: () => sessionsEnded.inc({ outcome: 'cancelled' }),
    uploadExpired: () => sessionsEnded.inc({ outcome: 'expired' }),
    blobCommitted: ({ repository, size, verifyMs }) => {
      sessionsEnded.inc({ outcome: 'committed' });
      commits.inc(withRepository({}, repository));
      committedBytes.inc(withRepository({}, repository), size);
      verify.observe(verifyMs / 1000);
    },
    blobMounted: ({ repository }) => mounts.inc(withRepository({}, repository)),
    manifestPushed: ({ repository }) => manifestsPushed.inc(withRepository({}, repository)),
    manifestDeleted: () => deletes.inc({ what: 'manifest' }),
    tagDeleted: () => deletes.inc({ what: 'tag' }),
    blobDeleted: () => deletes.inc({ what: 'blob' }),
    storageError: ({ operation, kind }) => storageErrors.inc({ operation, kind }),
    purgeCompleted: ({ ok }) => purgerRuns.inc({ result: result(ok) }),
    notificationSent: ({ endpoint, events: count, ok }) => {
      deliveries.inc({ endpoint, result: result(ok) });
      if (ok) delivered.inc({ endpoint }, count);
    },
    garbageCollected: ({ dryRun, contentDeleted, manifestsDeleted, bytesFreed }) => {
      gcRuns.inc({ mode: dryRun ? 'dry_run' : 'run' });
      if (dryRun) return;
      gcBlobs.inc(contentDeleted);
      gcManifests.inc(manifestsDeleted);
      gcBytes.inc(bytesFreed);
    },
    upstreamFetched: ({ what, ok, bytes }) => {
      upstreamFetches.inc({ what, result: result(ok) });
      upstreamBytes.inc({ what }, bytes);
    },
    mirrorLookup: ({ what, hit }) => lookups.inc({ what, result: hit ? 'hit' : 'miss' }),
  };
  const events = router.events;
  const entries = Object.entries(listeners) as [RegistryEventName, (...args: unknown[]) => void][];
  for (const [name, listener] of entries) events.on(name, listener as never);

  return {
    registry,
    handler: (_req, res) => {
      registry.metrics().then(
        (text) => {
          res.statusCode = 200;
          res.setHeader('Content-Type', registry.contentType);
          res.end(text);
        },
        (error: unknown) => {
          res.statusCode = 500;
          res.setHeader('Content-Type', 'text/plain; charset=utf-8');
          res.end(`metrics failed: ${(error as Error).message}\n`);
        },
      );
    },
    close: () => {
      for (const [name, listener] of entries) events.off(name, listener as never);
    },
  };
}
