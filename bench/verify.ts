/**
 * `npm run bench:verify`: what it costs to verify a digest when a process has no running hash
 * for a session (after a restart, or when another process served the appends), against the
 * process that streamed the bytes in and kept the hash. A measurement, not a test.
 *
 *   npm run bench:verify                      # 1 GiB, 3 rounds, FileSystemStorage in the temp dir
 *   npm run bench:verify -- --size-mib 256 --rounds 5
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { FileSystemStorage, parseDigest } from '../lib';
import { RegistryStore } from '../lib/store';

const MiB = 1024 * 1024;
const BLOCK = randomBytes(16 * MiB);

function flag(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  return index === -1 ? fallback : Number(process.argv[index + 1]);
}

/** `size` bytes of BLOCK repeated, produced as they are read. */
function blockStream(size: number): Readable {
  let sent = 0;
  return new Readable({
    read() {
      const length = Math.min(BLOCK.length, size - sent);
      sent += length;
      this.push(length > 0 ? BLOCK.subarray(0, length) : null);
    },
  });
}

function blockDigest(size: number): string {
  const hash = createHash('sha256');
  for (let offset = 0; offset < size; offset += BLOCK.length) hash.update(BLOCK.subarray(0, Math.min(BLOCK.length, size - offset)));
  return `sha256:${hash.digest('hex')}`;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function main(): Promise<void> {
  const size = flag('size-mib', 1024) * MiB;
  const rounds = flag('rounds', 3);
  const digest = parseDigest(blockDigest(size));
  const root = await mkdtemp(join(tmpdir(), 'oci-bench-verify-'));
  const adapter = new FileSystemStorage({ root });
  const timings = { running: [] as number[], readBack: [] as number[] };
  try {
    for (let round = 0; round < rounds; round++) {
      for (const mode of ['running', 'readBack'] as const) {
        const writer = new RegistryStore(adapter);
        const session = await writer.uploads.start('bench/verify');
        await writer.uploads.append(session, 0, blockStream(size));
        // A fresh store over the same adapter stands for another process: it has no running hash.
        const verifier = mode === 'running' ? writer : new RegistryStore(adapter);
        const started = process.hrtime.bigint();
        await verifier.uploads.complete(session, digest);
        timings[mode].push(Number(process.hrtime.bigint() - started) / 1e9);
        await adapter.deleteContent(`sha256/${digest.hex.slice(0, 2)}/${digest.hex}`);
      }
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
  const megabytes = size / 1e6;
  for (const mode of ['running', 'readBack'] as const) {
    const seconds = median(timings[mode]);
    console.log(`${mode === 'running' ? 'PUT with the running hash' : 'PUT reading the bytes back'}: median ${seconds.toFixed(3)} s for ${megabytes.toFixed(0)} MB (${(megabytes / seconds).toFixed(0)} MB/s), rounds ${timings[mode].map((s) => s.toFixed(3)).join(' / ')}`);
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
