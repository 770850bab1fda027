import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileSystemStorage } from '../lib';
import { describeStorageAdapterContract } from './support/adapter-contract';

let root: string | undefined;

describeStorageAdapterContract(
  'FileSystemStorage',
  async () => {
    root = await mkdtemp(join(tmpdir(), 'oci-fs-'));
    return new FileSystemStorage({ root });
  },
  async () => {
    if (root) await rm(root, { recursive: true, force: true });
  },
);
