// The storage round trip behind `router.health()`.
import type { StorageAdapter } from './storage/adapter';

/** A key nothing is stored under: reading it costs the backend one lookup and returns nothing. */
const PROBE_KEY = '_health/probe';

/**
 * Resolves once the adapter answers a document read, and rejects with the adapter's error, or
 * with a timeout error after `timeout` ms when it does not answer.
 */
export async function checkStorage(adapter: StorageAdapter, timeout: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`storage did not answer within ${timeout} ms`)), timeout);
    timer.unref();
  });
  try {
    await Promise.race([adapter.getDocument(PROBE_KEY), expired]);
  } finally {
    clearTimeout(timer);
  }
}
