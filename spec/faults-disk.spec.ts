// A full disk: every write answers 507 (or a documented 4xx), nothing half-written shows, and pushes work again once space is freed.
import { execFile } from 'node:child_process';
import { mkdtemp, open, readdir, rm, stat, truncate, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import supertest from 'supertest';
import { FileSystemStorage } from '../lib';
import { bytes, makeApp, sha256 } from './support/http';
import { makeImage, OCI_MANIFEST, pushBlob, pushImage } from './support/oci';

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;
const MiB = 1024 * 1024;

/** Fills the file system holding `path` by appending to it until the disk refuses; resolves to the bytes written. */
async function fill(path: string): Promise<number> {
  const handle = await open(path, 'a');
  const block = Buffer.alloc(MiB);
  let written = 0;
  try {
    for (;;) {
      const { bytesWritten } = await handle.write(block);
      written += bytesWritten;
      if (bytesWritten < block.length) return written;
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
    return written;
  } finally {
    await handle.close();
  }
}

/** The answer must be an OCI error: 507 saying storage is full, or one of the 4xx statuses of the spec. */
function expectFullOr4xx(res: supertest.Response, allowed4xx: number[] = []): void {
  const body = JSON.parse(res.text) as { errors: { code: string; message: string; detail: unknown }[] };
  expect(body.errors).toHaveLength(1);
  if (res.status === 507) {
    expect(body.errors[0].code).toBe('UNKNOWN');
    expect(String(body.errors[0].detail)).toMatch(/storage is full/);
  } else {
    expect(allowed4xx).toContain(res.status);
  }
}

(isRoot ? describe : describe.skip)(
  isRoot ? 'a full disk (a small tmpfs mounted by the test)' : 'a full disk: SKIPPED, mounting the tmpfs it needs takes root (CI runs as root)',
  () => {
    let mountPoint: string;
    let root: string;
    beforeAll(async () => {
      mountPoint = await mkdtemp(join(tmpdir(), 'oci-full-disk-'));
      await run('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', mountPoint]);
      root = join(mountPoint, 'registry');
    });
    afterAll(async () => {
      await run('umount', [mountPoint]);
      await rm(mountPoint, { recursive: true, force: true });
    });

    /** What `<root>/tmp` holds: documents being written, none once every request has ended. */
    const tempFiles = async () => readdir(join(root, 'tmp')).catch(() => []);

    it('answers 507 with an OCI body, leaves nothing half-written or in tmp, and works again once space is freed', async () => {
      const agent = supertest(makeApp(new FileSystemStorage({ root })));
      const filler = join(mountPoint, 'filler');

      // Before the disk fills: an image tagged `a`, the blobs of a second image, and a session with 64 KiB.
      const imageA = makeImage('a');
      await pushImage(agent, 'repo', imageA, 'a');
      const imageB = makeImage('b');
      for (const blob of [imageB.config, ...imageB.layers]) await pushBlob(agent, 'repo', blob);
      const layer = bytes(4 * MiB, 3);
      const started = await agent.post('/v2/repo/blobs/uploads/').expect(202);
      const session = started.headers.location as string;
      await agent.patch(session).set('Content-Range', `0-${64 * 1024 - 1}`).set('Content-Type', 'application/octet-stream').send(layer.subarray(0, 64 * 1024)).expect(202);
      const storedSize = async () => {
        const res = await agent.get(session).expect(204);
        return Number(/^0-(\d+)$/.exec(res.headers.range as string)![1]) + 1;
      };
      const monolithic = bytes(100 * 1024, 5);
      // A session to complete while the disk is full.
      const small = bytes(64 * 1024, 7);
      const toComplete = (await agent.post('/v2/repo/blobs/uploads/').expect(202)).headers.location as string;
      await agent.patch(toComplete).set('Content-Type', 'application/octet-stream').send(small).expect(202);

      // The disk is full to the last page.
      await fill(filler);
      const answers: supertest.Response[] = [];
      const attempt = async (res: supertest.Response) => {
        answers.push(res);
        return res;
      };
      expect((await attempt(await agent.post('/v2/repo/blobs/uploads/'))).status).toBe(507);
      await attempt(await agent.post(`/v2/repo/blobs/uploads/?digest=${sha256(monolithic)}`).set('Content-Type', 'application/octet-stream').send(monolithic));
      await attempt(await agent.patch(session).set('Content-Type', 'application/octet-stream').send(layer.subarray(64 * 1024, 512 * 1024)));
      // Completing stores the content, then needs a link document: the blob must stay invisible.
      await attempt(await agent.put(`${toComplete}?digest=${sha256(small)}`));
      await attempt(await agent.put('/v2/repo/manifests/b').set('Content-Type', OCI_MANIFEST).send(imageB.manifest.toString()));
      await attempt(await agent.put('/v2/repo/manifests/retagged').set('Content-Type', OCI_MANIFEST).send(imageA.manifest.toString()));
      await attempt(await agent.post(`/v2/other/blobs/uploads/?mount=${sha256(imageA.layers[0])}&from=repo`));
      for (const res of answers) expectFullOr4xx(res);
      expect(answers.map((res) => res.status)).toEqual(answers.map(() => 507));

      // The server is up, what was stored before is intact, and nothing refused is visible.
      await agent.get('/v2/').expect(200);
      await agent.get('/v2/repo/manifests/a').expect(200);
      await agent.head(`/v2/repo/blobs/${sha256(monolithic)}`).expect(404);
      await agent.get('/v2/repo/manifests/b').expect(404);
      await agent.get(`/v2/repo/manifests/${imageB.digest}`).expect(404);
      await agent.get('/v2/repo/manifests/retagged').expect(404);
      await agent.head(`/v2/other/blobs/${sha256(imageA.layers[0])}`).expect(404);
      await agent.head(`/v2/repo/blobs/${sha256(small)}`).expect(404);
      expect(await storedSize()).toBe(64 * 1024);
      expect(await tempFiles()).toEqual([]);

      // With 1 MiB free, a 3 MiB chunk lands in part: the session keeps what landed, a prefix of the chunk.
      await truncate(filler, (await stat(filler)).size - MiB);
      const partial = await agent.patch(session).set('Content-Type', 'application/octet-stream').send(layer.subarray(64 * 1024, 64 * 1024 + 3 * MiB));
      expectFullOr4xx(partial);
      expect(partial.status).toBe(507);
      const afterPartial = await storedSize();
      expect(afterPartial).toBeGreaterThan(64 * 1024);
      expect(afterPartial).toBeLessThan(64 * 1024 + 3 * MiB);
      expect(await tempFiles()).toEqual([]);

      // Space freed: the session resumes where it stopped and verifies; every refused push now succeeds.
      await unlink(filler);
      await agent
        .patch(session)
        .set('Content-Range', `${afterPartial}-${layer.length - 1}`)
        .set('Content-Type', 'application/octet-stream')
        .send(layer.subarray(afterPartial))
        .expect(202);
      await agent.put(`${session}?digest=${sha256(layer)}`).expect(201);
      const pulled = await agent.get(`/v2/repo/blobs/${sha256(layer)}`).buffer(true).parse((res, done) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => done(null, Buffer.concat(chunks)));
      });
      expect(sha256(pulled.body as Buffer)).toBe(sha256(layer));
      await agent.post('/v2/repo/blobs/uploads/').expect(202);
      await pushBlob(agent, 'repo', monolithic);
      await agent.put('/v2/repo/manifests/b').set('Content-Type', OCI_MANIFEST).send(imageB.manifest.toString()).expect(201);
      await agent.put('/v2/repo/manifests/retagged').set('Content-Type', OCI_MANIFEST).send(imageA.manifest.toString()).expect(201);
      await agent.post(`/v2/other/blobs/uploads/?mount=${sha256(imageA.layers[0])}&from=repo`).expect(201);
      // The session whose commit was refused is still there, with its bytes: completing it again now works.
      await agent.head(`/v2/repo/blobs/${sha256(small)}`).expect(404);
      await agent.get(toComplete).expect(204);
      await agent.put(`${toComplete}?digest=${sha256(small)}`).expect(201);
      await agent.head(`/v2/repo/blobs/${sha256(small)}`).expect(200);
      expect(await tempFiles()).toEqual([]);
    });
  },
);
