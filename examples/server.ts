/**
 * The example registry: the package's registry server (as `express-oci-registry serve` runs it)
 * over embedded filesystem storage, with the registry UI at http://127.0.0.1:5000/ (a push form at
 * /push.html) and every registry event logged to the console.
 *
 *   npm start                     # 127.0.0.1:5000, data in ./registry-data
 *   PORT=5001 HOST=0.0.0.0 DATA_DIR=/var/lib/registry npm start
 *   ALLOW_SPARSE_MANIFESTS=1 npm start   # accept manifests whose blobs are not all pushed
 *   READ_ONLY=1 npm start                # start read-only; SIGUSR2 switches the mode either way
 *   DIRECT_READS=1 npm start             # read large blobs past the page cache (docs/performance.md)
 *   NOTIFY_URLS=http://127.0.0.1:9000/events npm start   # webhooks, comma-separated
 *
 * Metrics are at /metrics, liveness at /healthz, readiness (storage reachable) at /readyz.
 *
 * Policies (docs/policies.md): QUOTA_BYTES=<n> gives every repository a quota of n bytes,
 * IMMUTABLE_TAGS=<regular expression> makes matching tags immutable, and RETENTION_KEEP_LAST=<n>
 * keeps each repository's n most recently set tags: a garbage collection at start and every hour
 * untags the rest and reclaims what they alone held.
 *
 * With UPSTREAM_URL it is also a pull-through mirror of that registry (docs/mirror.md): for
 * repositories under UPSTREAM_PREFIX (default: every repository), with UPSTREAM_USERNAME and
 * UPSTREAM_PASSWORD as the upstream's credentials when it asks for them.
 *
 *   UPSTREAM_URL=https://registry-1.docker.io UPSTREAM_PREFIX=docker.io/ npm start
 */
import type { RegistryOptions, UpstreamOptions } from '../lib';
import { closeOnSignals, startRegistryServer } from '../lib/server';
import { addExampleRoutes } from './app';

const notifications = (process.env.NOTIFY_URLS ?? '')
  .split(',')
  .filter((url) => url !== '')
  .map((url) => ({ url }));

startRegistryServer({
  root: process.env.DATA_DIR ?? 'registry-data',
  port: Number(process.env.PORT ?? 5000),
  host: process.env.HOST ?? '127.0.0.1',
  readOnly: process.env.READ_ONLY === '1',
  directReads: process.env.DIRECT_READS === '1',
  registry: {
    upstreams: upstreamsFromEnvironment(),
    // A mirror of part of an image (one platform, say) pushes manifests whose other blobs it lacks.
    allowSparseManifests: process.env.ALLOW_SPARSE_MANIFESTS === '1',
    notifications,
    ...policiesFromEnvironment(),
  },
  log: (line) => console.log(line),
  routes: addExampleRoutes,
}).then(
  (running) => {
    const { registry } = running;
    closeOnSignals(running);
    process.on('SIGUSR2', () => {
      registry.setReadOnly(!registry.isReadOnly());
      console.log(`read-only mode ${registry.isReadOnly() ? 'on' : 'off'}`);
    });
    if (process.env.RETENTION_KEEP_LAST) {
      const collect = () =>
        registry.collectGarbage().then(
          ({ tagsRemoved, manifestsDeleted, bytesFreed }) => console.log(`retention removed ${tagsRemoved.length} tags; ${manifestsDeleted} manifests and ${bytesFreed} bytes collected`),
          (error: unknown) => console.error('garbage collection failed:', error),
        );
      void collect();
      setInterval(collect, 60 * 60 * 1000).unref();
    }
  },
  (error: Error) => {
    console.error(`the example registry could not start: ${error.message}`);
    process.exitCode = 1;
  },
);

/** The policy options the environment asks for. */
function policiesFromEnvironment(): Pick<RegistryOptions, 'quota' | 'immutableTags' | 'retention'> {
  const { QUOTA_BYTES, IMMUTABLE_TAGS, RETENTION_KEEP_LAST } = process.env;
  return {
    quota: QUOTA_BYTES ? wholeNumber('QUOTA_BYTES', QUOTA_BYTES) : undefined,
    immutableTags: IMMUTABLE_TAGS ? new RegExp(IMMUTABLE_TAGS) : undefined,
    retention: RETENTION_KEEP_LAST ? [{ repositories: '**', keepLast: wholeNumber('RETENTION_KEEP_LAST', RETENTION_KEEP_LAST) }] : undefined,
  };
}

function wholeNumber(name: string, value: string): number {
  const number = Number(value);
  if (!Number.isSafeInteger(number) || number < 0) throw new Error(`${name} must be a whole number of bytes or tags, not ${value}`);
  return number;
}

/** The pull-through mirror the environment asks for (UPSTREAM_URL and friends), if any. */
function upstreamsFromEnvironment(): UpstreamOptions[] {
  const { UPSTREAM_URL, UPSTREAM_PREFIX, UPSTREAM_USERNAME, UPSTREAM_PASSWORD } = process.env;
  if (!UPSTREAM_URL) return [];
  const auth = UPSTREAM_USERNAME !== undefined ? { username: UPSTREAM_USERNAME, password: UPSTREAM_PASSWORD ?? '' } : undefined;
  return [{ prefix: UPSTREAM_PREFIX ?? '', url: UPSTREAM_URL, auth }];
}
