// One registry process over S3Storage (from the compiled dist/), for the multi-instance spec and
// the S3 upload benchmark. Settings come from the environment that spec/s3/start-s3.sh prints,
// plus S3_PREFIX, S3_PART_SIZE and S3_CLAIM_LEASE_MS. It listens on PORT (default: a free one)
// and prints `listening <port>`.
'use strict';
const express = require('express');
const { join } = require('node:path');
const dist = join(__dirname, '..', '..', 'dist', 'lib');
const { createRegistryRouter } = require(dist);
const { S3Storage } = require(join(dist, 'storage', 's3'));

const env = process.env;
const storage = new S3Storage({
  endpoint: env.S3_ENDPOINT,
  bucket: env.S3_BUCKET,
  region: env.S3_REGION,
  credentials: { accessKeyId: env.S3_ACCESS_KEY_ID, secretAccessKey: env.S3_SECRET_ACCESS_KEY },
  forcePathStyle: true,
  prefix: env.S3_PREFIX || undefined,
  partSize: env.S3_PART_SIZE ? Number(env.S3_PART_SIZE) : undefined,
  claimLeaseMs: env.S3_CLAIM_LEASE_MS ? Number(env.S3_CLAIM_LEASE_MS) : undefined,
});

const app = express();
app.use(createRegistryRouter({ storage, uploadPurging: false }));
const server = app.listen(Number(env.PORT || 0), '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
