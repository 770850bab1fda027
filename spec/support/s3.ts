/** The S3 server the S3 suites run against: its settings, the test bucket, storages under fresh prefixes. */
import { randomUUID } from 'node:crypto';
import { CreateBucketCommand, DeleteObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { S3Storage, type S3StorageOptions } from '../../lib/storage/s3';

/**
 * Settings of the S3 server the S3 suites run against, from the environment that
 * `spec/s3/start-s3.sh` prints (`.ci/run` exports it); undefined when none is configured.
 */
export function s3Settings(): Omit<S3StorageOptions, 'prefix'> | undefined {
  const endpoint = process.env.S3_ENDPOINT;
  if (!endpoint) {
    if (process.env.CI) throw new Error('S3_ENDPOINT is not set: in CI the S3 suites must run (.ci/run starts spec/s3/start-s3.sh)');
    return undefined;
  }
  return {
    endpoint,
    bucket: process.env.S3_BUCKET ?? 'oci-test',
    region: process.env.S3_REGION ?? 'us-east-1',
    credentials: { accessKeyId: process.env.S3_ACCESS_KEY_ID ?? 'test:tester', secretAccessKey: process.env.S3_SECRET_ACCESS_KEY ?? 'testing' },
    forcePathStyle: true,
  };
}

/** Why an S3 suite is skipped, as its name. */
export const S3_SKIP_REASON = 'skipped: no S3 server configured (run `eval "$(spec/s3/start-s3.sh)"` and export S3_ENDPOINT etc.)';

/** Creates the test bucket when it is missing. */
export async function ensureBucket(settings: Omit<S3StorageOptions, 'prefix'>): Promise<void> {
  const client = new S3Storage({ ...settings }).client;
  try {
    await client.send(new CreateBucketCommand({ Bucket: settings.bucket }));
  } catch (error) {
    const name = (error as Error).name;
    if (name !== 'BucketAlreadyOwnedByYou' && name !== 'BucketAlreadyExists') throw error;
  } finally {
    client.destroy();
  }
}

/** A storage under a fresh prefix of the test bucket, and a way to remove everything under it. */
export function s3TestStorage(settings: Omit<S3StorageOptions, 'prefix'>, options: Partial<S3StorageOptions> = {}) {
  const prefix = `test-${randomUUID()}`;
  const storage = new S3Storage({ ...settings, prefix, claimLeaseMs: 3000, ...options });
  return {
    storage,
    prefix,
    async cleanup() {
      await deletePrefix(storage.client, settings.bucket, `${prefix}/`);
      storage.client.destroy();
    },
  };
}

/** Deletes every object under `prefix`, one request each (this Swift refuses DeleteObjects without Content-MD5). */
export async function deletePrefix(client: S3Client, bucket: string, prefix: string): Promise<void> {
  for (;;) {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
    const keys = (page.Contents ?? []).map((object) => object.Key!);
    if (keys.length === 0) return;
    await Promise.all(keys.map((key) => client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }))));
  }
}
