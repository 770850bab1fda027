/**
 * The example registry: the registry router over embedded filesystem storage, the registry UI at
 * http://127.0.0.1:5000/ (with a push form at /push.html), and every registry event logged to the console.
 *
 *   npm start                     # 127.0.0.1:5000, data in ./registry-data
 *   PORT=5001 HOST=0.0.0.0 DATA_DIR=/var/lib/registry npm start
 *   ALLOW_SPARSE_MANIFESTS=1 npm start   # accept manifests whose blobs are not all pushed
 *   READ_ONLY=1 npm start                # start read-only; SIGUSR2 switches the mode either way
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
import { resolve } from 'node:path';
import { FileSystemStorage, type RegistryOptions, type UpstreamOptions } from '../lib';
import { createExampleApp } from './app';

// Every fsync and file operation holds one of libuv's threads (4 by default) until it returns, so
// with many concurrent uploads they would queue behind each other. Must be set before the first one.
process.env.UV_THREADPOOL_SIZE ??= '32';

const port = Number(process.env.PORT ?? 5000);
const host = process.env.HOST ?? '127.0.0.1';
const root = resolve(process.env.DATA_DIR ?? 'registry-data');

const notifications = (process.env.NOTIFY_URLS ?? '')
  .split(',')
  .filter((url) => url !== '')
  .map((url) => ({ url }));

const { UPSTREAM_URL, UPSTREAM_PREFIX, UPSTREAM_USERNAME, UPSTREAM_PASSWORD } = process.env;
const upstreams: UpstreamOptions[] = UPSTREAM_URL
  ? [
      {
        prefix: UPSTREAM_PREFIX ?? '',
        url: UPSTREAM_URL,
        auth: UPSTREAM_USERNAME !== undefined ? { username: UPSTREAM_USERNAME, password: UPSTREAM_PASSWORD ?? '' } : undefined,
      },
    ]
  : [];

const { app, registry } = createExampleApp({
  storage: new FileSystemStorage({ root }),
  // A mirror of part of an image (one platform, say) pushes manifests whose other blobs it lacks.
  allowSparseManifests: process.env.ALLOW_SPARSE_MANIFESTS === '1',
  upstreams,
  logEvent: (line) => console.log(line),
  readOnly: process.env.READ_ONLY === '1',
  notifications,
  ...policiesFromEnvironment(),
});

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

const server = app.listen(port, host, () => {
  const address = server.address();
  const actualPort = typeof address === 'object' && address ? address.port : port;
  const mirroring = UPSTREAM_URL ? `; mirroring ${UPSTREAM_URL} under "${UPSTREAM_PREFIX ?? ''}"` : '';
  console.log(`registry listening on http://${host}:${actualPort} (data in ${root}; the UI is at /${mirroring})`);
});

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

// Exit cleanly on a signal, so exit hooks such as `node --cpu-prof` get to write their output.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    server.close(() => registry.close().finally(() => process.exit(0)));
    server.closeAllConnections();
  });
}
