/**
 * The `express-oci-registry/testing` entry: the storage adapter contract as a test suite, for
 * authors of adapters. It uses `node:assert`, and the test runner's functions are the globals or
 * passed in, so no runner is a dependency.
 *
 * @packageDocumentation
 */
export { describeStorageAdapter, readAll, type StorageAdapterSuiteOptions, type TestRunner } from './storage-adapter-suite';
