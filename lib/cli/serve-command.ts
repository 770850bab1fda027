/** `express-oci-registry serve`: its flags, and the registry server they describe. */
import type { S3StorageOptions } from '../storage/s3';
import { closeOnSignals, startRegistryServer, type ServeSettings } from '../server/serve';
import { integerFlag, stringFlag, UsageError, type FlagCommand, type FlagValues } from './command';

const MiB = 1024 * 1024;

/** The S3 flags besides `--s3-bucket`; none is allowed without it. */
const S3_FLAGS = ['s3-endpoint', 's3-region', 's3-prefix', 's3-force-path-style', 's3-part-size-mib', 's3-claim-lease-ms', 's3-presigned-read-seconds'];

/** `serve`: a registry over a folder or an S3 bucket, until SIGINT or SIGTERM. */
export const serveCommand: FlagCommand = {
  summary: 'serve a registry at /v2/ over a folder or an S3 bucket, until SIGINT or SIGTERM',
  description: 'S3 credentials come from the AWS SDK chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, a role.',
  flags: [
    { name: 'root', value: 'DIR', help: 'folder for the data (default ./registry-data); not with --s3-bucket' },
    { name: 'direct-reads', help: 'read large blobs past the page cache: faster first pulls, slower repeated ones (docs/performance.md); not with --s3-bucket' },
    { name: 'port', value: 'N', help: 'TCP port, 0 for any free one (default 5000)' },
    { name: 'host', value: 'ADDRESS', help: 'address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)' },
    { name: 's3-bucket', value: 'NAME', help: 'keep the data in this S3 bucket (needs @aws-sdk/client-s3 installed)' },
    { name: 's3-endpoint', value: 'URL', help: 'URL of an S3-compatible server (default AWS)' },
    { name: 's3-region', value: 'REGION', help: 'the region (default us-east-1)' },
    { name: 's3-prefix', value: 'PREFIX', help: 'key prefix for everything stored, to share a bucket' },
    { name: 's3-force-path-style', help: 'use <endpoint>/<bucket> URLs (most self-hosted servers need them)' },
    { name: 's3-part-size-mib', value: 'N', help: 'MiB per multipart part, 5 to 5120 (default 32)' },
    { name: 's3-claim-lease-ms', value: 'N', help: "how long a dead process's claim on an upload blocks it (default 30000)" },
    { name: 's3-presigned-read-seconds', value: 'N', help: 'answer blob GETs with a redirect to a presigned URL valid this long (default off)' },
    { name: 'htpasswd', value: 'FILE', help: 'require sign-in: the bcrypt users of FILE (htpasswd -B) may do everything (needs bcryptjs installed)' },
    { name: 'read-only', help: 'refuse every write with 405 UNSUPPORTED; reads go on' },
    { name: 'quiet', help: 'print only the listening line, not every registry event' },
  ],
  async run(values) {
    const running = await startRegistryServer(serveSettings(values));
    closeOnSignals(running);
  },
};

/** The server settings the flags describe; flags that do not fit together are a {@link UsageError}. */
export function serveSettings(values: FlagValues): ServeSettings {
  return {
    ...storageSettings(values),
    port: integerFlag(values, 'port', 0, 65535),
    host: stringFlag(values, 'host'),
    htpasswd: stringFlag(values, 'htpasswd'),
    readOnly: values['read-only'] === true,
    log: (line) => console.log(line),
    logEvents: values.quiet !== true,
  };
}

function storageSettings(values: FlagValues): Pick<ServeSettings, 'root' | 's3' | 'directReads'> {
  const bucket = stringFlag(values, 's3-bucket');
  if (!bucket) {
    const stray = S3_FLAGS.find((name) => values[name] !== undefined);
    if (stray) throw new UsageError(`--${stray} needs --s3-bucket`);
    return { root: stringFlag(values, 'root'), directReads: values['direct-reads'] === true };
  }
  if (values.root !== undefined) throw new UsageError('--root and --s3-bucket exclude each other: the data lives in one place');
  if (values['direct-reads'] !== undefined) throw new UsageError('--direct-reads is for a folder, not --s3-bucket');
  const partSizeMib = integerFlag(values, 's3-part-size-mib', 5, 5120);
  const s3: S3StorageOptions = {
    bucket,
    endpoint: stringFlag(values, 's3-endpoint'),
    region: stringFlag(values, 's3-region'),
    prefix: stringFlag(values, 's3-prefix'),
    forcePathStyle: values['s3-force-path-style'] === true,
    partSize: partSizeMib === undefined ? undefined : partSizeMib * MiB,
    claimLeaseMs: integerFlag(values, 's3-claim-lease-ms', 1, 24 * 60 * 60 * 1000),
    presignedReadSeconds: integerFlag(values, 's3-presigned-read-seconds', 1, 7 * 24 * 60 * 60),
  };
  return { s3 };
}
