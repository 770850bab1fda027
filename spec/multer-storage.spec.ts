/** The multer bridge: form files stored as blobs, and cleaned up when multer abandons a request. */
import express, { type NextFunction, type Request, type Response } from 'express';
import multer from 'multer';
import supertest from 'supertest';
import { createRegistryRouter, MemoryStorage, multerStorage, RegistryError, type RegistryFileInfo, type RegistryOptions, type RegistryRouter } from '../lib';
import { bytes, sha256 } from './support/http';

describe('multer storage engine', () => {
  let registry: RegistryRouter;
  let agent: ReturnType<typeof supertest>;
  let progress: number[];

  function setUp(options: Partial<RegistryOptions> = {}) {
    registry = createRegistryRouter({ storage: new MemoryStorage(), progressInterval: 0, ...options });
    progress = [];
    registry.events.on('uploadProgress', ({ bytes }) => progress.push(bytes));
    // Typed as multer's own StorageEngine: the engine fits it without the library importing multer.
    const storage: multer.StorageEngine = multerStorage(registry, {
      repository: (req) => (req.body as { repository?: string }).repository ?? '',
    });
    const upload = multer({ storage, limits: { fileSize: 100_000 } });
    const app = express();
    app.use(registry);
    app.post('/upload', upload.array('files'), (req: Request, res: Response) => {
      res.status(201).json({ files: req.files, repository: (req.body as { repository: string }).repository });
    });
    app.use((error: Error, _req: Request, res: Response, _next: NextFunction) => {
      const status = error instanceof RegistryError ? error.status : error instanceof multer.MulterError ? 413 : 500;
      res.status(status).json({ code: (error as { code?: string }).code });
    });
    agent = supertest(app);
  }

  beforeEach(() => setUp());

  const blobStatus = (repository: string, digest: string) => agent.head(`/v2/${repository}/blobs/${digest}`).then((res) => res.status);

  it('streams each form file into the registry as a blob and describes it on req.files', async () => {
    const first = bytes(90_000, 1);
    const second = Buffer.from('{"hello":"form"}');
    const res = await agent
      .post('/upload')
      .field('repository', 'forms/app')
      .attach('files', first, { filename: 'data.bin', contentType: 'application/octet-stream' })
      .attach('files', second, { filename: 'hello.json', contentType: 'application/json' })
      .expect(201);
    const files = res.body.files as (RegistryFileInfo & { originalname: string })[];
    expect(files).toEqual([
      expect.objectContaining({ originalname: 'data.bin', repository: 'forms/app', digest: sha256(first), size: first.length, mediaType: 'application/octet-stream' }),
      expect.objectContaining({ originalname: 'hello.json', repository: 'forms/app', digest: sha256(second), size: second.length, mediaType: 'application/json' }),
    ]);
    const pulled = await agent.get(`/v2/forms/app/blobs/${sha256(first)}`).buffer(true).expect(200);
    expect(Buffer.compare(pulled.body, first)).toBe(0);
    // The bytes went through an upload session as they arrived, not as one buffer at the end.
    expect(progress.filter((value) => value < first.length).length).toBeGreaterThan(0);
  });

  it('rejects a bad repository name with NAME_INVALID and stores nothing', async () => {
    const res = await agent.post('/upload').field('repository', 'Not/Valid').attach('files', Buffer.from('x'), 'x.txt').expect(400);
    expect(res.body.code).toBe('NAME_INVALID');
    expect(await blobStatus('not/valid', sha256('x'))).toBe(404);
  });

  it('drops a file over the size limit and unlinks the files the abandoned request had added', async () => {
    const cancelled: number[] = [];
    registry.events.on('uploadCancelled', ({ size }) => cancelled.push(size));
    const small = bytes(1000, 2);
    const large = bytes(150_000, 3);
    await agent
      .post('/upload')
      .field('repository', 'forms/limits')
      .attach('files', small, 'small.bin')
      .attach('files', large, 'large.bin')
      .expect(413);
    expect(await blobStatus('forms/limits', sha256(small))).toBe(404);
    expect(await blobStatus('forms/limits', sha256(large))).toBe(404);
    // The truncated part (multer reads a byte past the limit to detect it) was cancelled, not committed.
    expect(cancelled).toHaveLength(1);
    expect(cancelled[0]).toBeGreaterThanOrEqual(100_000);
    expect(await blobStatus('forms/limits', sha256(large.subarray(0, cancelled[0])))).toBe(404);
  });

  it('leaves a blob that was already in the repository when an abandoned request also carried it', async () => {
    const small = bytes(1000, 4);
    await agent.post(`/v2/forms/shared/blobs/uploads/?digest=${sha256(small)}`).set('Content-Type', 'application/octet-stream').send(small).expect(201);
    await agent
      .post('/upload')
      .field('repository', 'forms/shared')
      .attach('files', small, 'small.bin')
      .attach('files', bytes(150_000, 5), 'large.bin')
      .expect(413);
    expect(await blobStatus('forms/shared', sha256(small))).toBe(200);
  });

  it("holds form files to the registry's maxBlobSize and maxUploadsPerRepository", async () => {
    setUp({ maxBlobSize: 5000 });
    const res = await agent.post('/upload').field('repository', 'forms/limited').attach('files', bytes(8000, 6), 'big.bin').expect(413);
    expect(res.body.code).toBe('SIZE_INVALID');
    expect(await blobStatus('forms/limited', sha256(bytes(8000, 6)))).toBe(404);
    await agent.post('/upload').field('repository', 'forms/limited').attach('files', bytes(4000, 6), 'fits.bin').expect(201);

    setUp({ maxUploadsPerRepository: 1 });
    await agent.post('/v2/forms/busy/blobs/uploads/').expect(202);
    const busy = await agent.post('/upload').field('repository', 'forms/busy').attach('files', Buffer.from('x'), 'x.txt').expect(429);
    expect(busy.body.code).toBe('TOOMANYREQUESTS');
  });
});
