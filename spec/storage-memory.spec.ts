import { MemoryStorage } from '../lib';
import { describeStorageAdapterContract } from './support/adapter-contract';

describeStorageAdapterContract('MemoryStorage', async () => new MemoryStorage());
