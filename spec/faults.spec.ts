// How storage faults are classified and answered: 507 for no space, 503 with Retry-After for an unreachable backend, 500 logged once.
import createDebug from 'debug';
import supertest from 'supertest';
import { asStorageFault, MemoryStorage, StorageFullError, StorageUnavailableError, toRegistryError, type StorageAdapter } from '../lib';
import { s3Fault } from '../lib/storage/s3/bucket';
import { makeApp } from './support/http';

/** A MemoryStorage whose writes of documents under `prefix` (all by default) throw what `fault` makes. */
function failingStorage(fault: () => unknown, prefix = ''): StorageAdapter {
  const storage = new MemoryStorage();
  const putDocument = storage.putDocument.bind(storage);
  storage.putDocument = async (...args) => {
    if (args[0].startsWith(prefix)) throw fault();
    return putDocument(...args);
  };
  return storage;
}

const errno = (code: string) => Object.assign(new Error(`${code}: failed`), { code });
const s3Error = (name: string, status: number, headers: Record<string, string> = {}) =>
  Object.assign(new Error(name), { name, $metadata: { httpStatusCode: status }, $response: { headers } });

describe('storage fault classification', () => {
  it.each(['ENOSPC', 'EDQUOT'])('%s is a StorageFullError', (code) => {
    expect(asStorageFault(errno(code))).toBeInstanceOf(StorageFullError);
  });

  it.each(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH'])('%s is a StorageUnavailableError', (code) => {
    expect(asStorageFault(errno(code))).toBeInstanceOf(StorageUnavailableError);
  });

  it('leaves other errors as they are', () => {
    const error = errno('EACCES');
    expect(asStorageFault(error)).toBe(error);
    expect(asStorageFault('text')).toBe('text');
  });

  it('classifies S3 answers: size and quota refusals are full, 503 and SlowDown unavailable (with the server Retry-After)', () => {
    expect(s3Fault(s3Error('EntityTooLarge', 400))).toBeInstanceOf(StorageFullError);
    expect(s3Fault(s3Error('QuotaExceeded', 403))).toBeInstanceOf(StorageFullError);
    expect(s3Fault(s3Error('InsufficientStorage', 507))).toBeInstanceOf(StorageFullError);
    const slowDown = s3Fault(s3Error('SlowDown', 503, { 'retry-after': '7' }));
    expect(slowDown).toBeInstanceOf(StorageUnavailableError);
    expect((slowDown as StorageUnavailableError).retryAfter).toBe(7);
    expect(s3Fault(s3Error('ServiceUnavailable', 503))).toBeInstanceOf(StorageUnavailableError);
    expect(s3Fault(s3Error('TimeoutError', 0))).toBeInstanceOf(StorageUnavailableError);
    expect(s3Fault(new Error('AWS SDK error wrapper for Error: connect ECONNREFUSED 127.0.0.1:9'))).toBeInstanceOf(StorageUnavailableError);
    const denied = s3Error('AccessDenied', 403);
    expect(s3Fault(denied)).toBe(denied);
    const missing = Object.assign(new Error('gone'), { $metadata: { httpStatusCode: 404 } });
    expect(s3Fault(missing)).toBe(missing);
  });

  it('turns each into one answer', () => {
    expect(toRegistryError(new StorageFullError()).status).toBe(507);
    const unavailable = toRegistryError(new StorageUnavailableError('down', { retryAfter: 3 }));
    expect(unavailable.status).toBe(503);
    expect(unavailable.headers['Retry-After']).toBe('3');
    expect(toRegistryError(new Error('boom')).status).toBe(500);
  });
});

describe('storage faults over HTTP, whatever the adapter', () => {
  it.each([
    ['a StorageFullError', () => new StorageFullError()],
    ['a raw ENOSPC', () => errno('ENOSPC')],
  ])('%s answers 507 with an OCI body saying storage is full', async (_name, fault) => {
    const res = await supertest(makeApp(failingStorage(fault))).post('/v2/repo/blobs/uploads/').expect(507);
    expect(res.body.errors[0].code).toBe('UNKNOWN');
    expect(res.body.errors[0].detail).toMatch(/storage is full/);
  });

  it('a POST whose session index entry is refused leaves no upload, record or entry behind', async () => {
    const storage = failingStorage(() => new StorageFullError(), 'repositories/repo/_uploads/');
    const created: string[] = [];
    const createUpload = storage.createUpload.bind(storage);
    storage.createUpload = async (id) => {
      await createUpload(id);
      created.push(id);
    };
    await supertest(makeApp(storage)).post('/v2/repo/blobs/uploads/').expect(507);
    // The upload was made beside the refused entry, and taken back.
    expect(created).toHaveLength(1);
    expect(await storage.uploadSize(created[0])).toBeUndefined();
    expect(await storage.listDocuments('uploads/')).toEqual([]);
    expect(await storage.listDocuments('repositories/repo/_uploads/')).toEqual([]);
  });

  it.each([
    ['a StorageUnavailableError', () => new StorageUnavailableError('down', { retryAfter: 9 }), '9'],
    ['a raw ECONNREFUSED', () => errno('ECONNREFUSED'), '5'],
  ])('%s answers 503 UNAVAILABLE with Retry-After', async (_name, fault, retryAfter) => {
    const res = await supertest(makeApp(failingStorage(fault))).post('/v2/repo/blobs/uploads/').expect(503);
    expect(res.headers['retry-after']).toBe(retryAfter);
    expect(res.body.errors[0].code).toBe('UNAVAILABLE');
  });

  it('answers anything else with 500 and logs it once, with the repository and the upload id', async () => {
    const lines: string[] = [];
    const previousLog = createDebug.log;
    createDebug.enable('express-oci-registry:*');
    createDebug.log = (...args: unknown[]) => lines.push(args.map(String).join(' '));
    try {
      // The blob link, written at PUT.
      const agent = supertest(makeApp(failingStorage(() => new Error('disk on fire'), 'repositories/repo/_blobs/')));
      const started = await agent.post('/v2/repo/blobs/uploads/').expect(202);
      const id = started.headers['docker-upload-uuid'] as string;
      const res = await agent.put(`${started.headers.location}?digest=sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855`).expect(500);
      expect(res.body.errors[0]).toEqual({ code: 'UNKNOWN', message: 'unknown error', detail: 'internal error' });
      const logged = lines.filter((line) => line.includes('disk on fire'));
      expect(logged).toHaveLength(1);
      expect(logged[0]).toContain('repository=repo');
      expect(logged[0]).toContain(`upload=${id}`);
    } finally {
      createDebug.log = previousLog;
      createDebug.disable();
    }
  });
});
