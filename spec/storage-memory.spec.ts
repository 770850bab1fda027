/** MemoryStorage against the adapter test kit. */
import { describeStorageAdapter } from 'express-oci-registry/testing';
import { MemoryStorage } from '../lib';

describeStorageAdapter('MemoryStorage', () => new MemoryStorage());
