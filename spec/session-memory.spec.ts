// Per-session memory is capped: running hashes and session records beyond the caches are dropped, and those sessions still verify.
import { Readable } from 'node:stream';
import { MemoryStorage, parseDigest } from '../lib';
import { RegistryStore } from '../lib/store';
import { bytes, sha256 } from './support/http';

interface Internals {
  runningHashes: { size: number };
  knownSessions: { size: number };
}

describe('memory per upload session', () => {
  it('keeps at most the cached running hashes and records; a session whose hash was dropped verifies by reading back', async () => {
    const storage = new MemoryStorage();
    const readUpload = jest.spyOn(storage, 'readUpload');
    const store = new RegistryStore(storage, { runningHashCache: 2, sessionRecordCache: 3 });
    const internals = store.uploads as unknown as Internals;
    const blobs = Array.from({ length: 6 }, (_, index) => bytes(10_000 + index, index + 1));
    const sessions = [];
    for (const blob of blobs) {
      const session = await store.uploads.start('repo');
      await store.uploads.append(session, 0, Readable.from([blob.subarray(0, 5000)]));
      await store.uploads.append(session, 5000, Readable.from([blob.subarray(5000)]));
      sessions.push(session);
      expect(internals.runningHashes.size).toBeLessThanOrEqual(2);
      expect(internals.knownSessions.size).toBeLessThanOrEqual(3);
    }
    // Newest first, so that no read-back hash displaces one still to be used.
    for (const [index, session] of [...sessions.entries()].reverse()) {
      const found = await store.uploads.find('repo', session.id);
      expect(await store.uploads.complete(found, parseDigest(sha256(blobs[index])))).toEqual({ size: blobs[index].length });
      expect(await store.blobs.info('repo', parseDigest(sha256(blobs[index])))).toEqual({ size: blobs[index].length });
    }
    // The two most recent sessions kept their running hashes; the four before were read back.
    expect(readUpload).toHaveBeenCalledTimes(4);
  });

  it('keeps no running hash for a session opened and left', async () => {
    const store = new RegistryStore(new MemoryStorage());
    for (let index = 0; index < 50; index++) await store.uploads.start('repo');
    expect((store.uploads as unknown as Internals).runningHashes.size).toBe(0);
  });
});
