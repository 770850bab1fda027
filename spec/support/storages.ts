/** The built-in storages, each made fresh with its cleanup, for suites that run over all of them. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileSystemStorage, MemoryStorage, type StorageAdapter } from '../../lib';

/** A fresh storage and how to remove it after the test. */
export type StorageFactory = () => Promise<{ storage: StorageAdapter; cleanup: () => Promise<void> }>;

/** The built-in adapters, for suites whose rules must hold over each: `describe.each(builtInStorages)`. */
export const builtInStorages: [string, StorageFactory][] = [
  ['MemoryStorage', async () => ({ storage: new MemoryStorage(), cleanup: async () => undefined })],
  [
    'FileSystemStorage',
    async () => {
      const root = await mkdtemp(join(tmpdir(), 'oci-storage-'));
      return { storage: new FileSystemStorage({ root }), cleanup: () => rm(root, { recursive: true, force: true }) };
    },
  ],
];
