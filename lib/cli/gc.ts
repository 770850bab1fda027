/** The `gc` command: one garbage collection over a storage that servers may be serving at the same time. */
import { parseArgs } from 'node:util';
import { CollectionRunningError, RegistryStore, type CollectOptions } from '../store';
import { FileSystemStorage } from '../storage/fs';
import type { StorageAdapter } from '../storage/adapter';

/** What `gc --help` prints. */
export const GC_USAGE = `usage: express-oci-registry gc (--root <dir> | S3 settings in the environment) [options]

Runs one garbage collection and prints its report as JSON. Safe while registry servers serve the
same storage; only one collection runs at a time.

  --root <dir>          a FileSystemStorage root (the example server's DATA_DIR)
  --grace <seconds>     keep blob links younger than this (default 3600)
  --untagged <seconds>  delete untagged manifests older than this that nothing kept names
                        (default: keep every untagged manifest)
  --upload-max-age <seconds>  remove upload sessions older than this (default 7 days)
  --dry-run             report what would be removed, remove nothing
  --help                this text

Without --root, S3_BUCKET (with S3_ENDPOINT, S3_REGION, S3_ACCESS_KEY_ID,
S3_SECRET_ACCESS_KEY, S3_PREFIX) selects an S3 bucket.`;

/**
 * Runs the command with `args` (the words after `gc`), writing to `out` and `err`; resolves to
 * the exit code: 0 done, 1 failed, 2 bad arguments, 3 another collection is running.
 */
export async function gcCommand(args: string[], out: (line: string) => void = console.log, err: (line: string) => void = console.error): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        root: { type: 'string' },
        grace: { type: 'string' },
        untagged: { type: 'string' },
        'upload-max-age': { type: 'string' },
        'dry-run': { type: 'boolean' },
        help: { type: 'boolean' },
      },
    }).values;
  } catch (error) {
    err(`${(error as Error).message}\n\n${GC_USAGE}`);
    return 2;
  }
  if (parsed.help) {
    out(GC_USAGE);
    return 0;
  }
  const options: CollectOptions = { dryRun: parsed['dry-run'] ?? false };
  for (const [flag, key] of [['grace', 'grace'], ['untagged', 'untagged'], ['upload-max-age', 'uploadMaxAge']] as const) {
    const value = parsed[flag];
    if (value === undefined) continue;
    const seconds = Number(value);
    if (!Number.isFinite(seconds) || seconds < 0) {
      err(`--${flag} takes a number of seconds, not ${JSON.stringify(value)}\n\n${GC_USAGE}`);
      return 2;
    }
    options[key] = seconds * 1000;
  }
  const storage = parsed.root !== undefined ? new FileSystemStorage({ root: parsed.root }) : await s3FromEnvironment();
  if (!storage) {
    err(`name a storage: --root <dir>, or S3_BUCKET in the environment\n\n${GC_USAGE}`);
    return 2;
  }
  try {
    const report = await new RegistryStore(storage).collector.collect(options);
    out(JSON.stringify(report, null, 2));
    return 0;
  } catch (error) {
    err(`gc: ${(error as Error).message}`);
    return error instanceof CollectionRunningError ? 3 : 1;
  }
}

/** An S3Storage from the environment's S3 settings, or undefined without `S3_BUCKET`. Loaded only then: the AWS SDK is an optional peer. */
async function s3FromEnvironment(): Promise<StorageAdapter | undefined> {
  const env = process.env;
  if (!env.S3_BUCKET) return undefined;
  const { S3Storage } = await import('../storage/s3');
  return new S3Storage({
    bucket: env.S3_BUCKET,
    endpoint: env.S3_ENDPOINT || undefined,
    region: env.S3_REGION || undefined,
    credentials: env.S3_ACCESS_KEY_ID && env.S3_SECRET_ACCESS_KEY ? { accessKeyId: env.S3_ACCESS_KEY_ID, secretAccessKey: env.S3_SECRET_ACCESS_KEY } : undefined,
    forcePathStyle: Boolean(env.S3_ENDPOINT),
    prefix: env.S3_PREFIX || undefined,
  });
}
