/** The gc command: a collection from the command line over a folder, dry runs, and its usage errors. */
import supertest from 'supertest';
import { FileSystemStorage } from '../lib';
import { gcCommand } from '../lib/cli/gc';
import { makeApp } from './support/http';
import { makeImage, pushImage } from './support/oci';
import { useTempDir } from './support/temp-dir';

/** Runs the command and collects what it writes. */
async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await gcCommand(args, (line) => (out += `${line}\n`), (line) => (err += `${line}\n`));
  return { code, out, err };
}

describe('the gc command', () => {
  const root = useTempDir('oci-gc-command-');

  it('collects a FileSystemStorage root, with a dry run first, and prints the report as JSON', async () => {
    const storage = new FileSystemStorage({ root: root() });
    const agent = supertest(makeApp(storage, { uploadPurging: false }));
    const image = makeImage('command');
    await pushImage(agent, 'cli/app', image);
    await agent.delete(`/v2/cli/app/manifests/${image.digest}`).expect(202);

    const dry = await run(['--root', root(), '--grace', '0', '--dry-run']);
    expect(dry.code).toBe(0);
    expect(JSON.parse(dry.out)).toMatchObject({ dryRun: true, blobLinksRemoved: 3, contentDeleted: 3 });
    expect(await storage.listContent()).toHaveLength(3);

    const done = await run(['--root', root(), '--grace', '0']);
    expect(done.code).toBe(0);
    expect(JSON.parse(done.out)).toMatchObject({ dryRun: false, blobLinksRemoved: 3, contentDeleted: 3 });
    expect(await storage.listContent()).toEqual([]);
  });

  it('keeps unreferenced blobs younger than --grace', async () => {
    const storage = new FileSystemStorage({ root: root() });
    const agent = supertest(makeApp(storage, { uploadPurging: false }));
    await agent.post('/v2/cli/app/blobs/uploads/?digest=sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824').send(Buffer.from('hello')).set('Content-Type', 'application/octet-stream').expect(201);
    expect(JSON.parse((await run(['--root', root(), '--grace', '3600'])).out)).toMatchObject({ blobLinksRemoved: 0 });
  });

  it('answers --help, and exits 2 with the usage for bad arguments', async () => {
    expect(await run(['--help'])).toMatchObject({ code: 0, out: expect.stringContaining('--untagged <seconds>') });
    expect(await run(['--bogus'])).toMatchObject({ code: 2, err: expect.stringContaining('usage:') });
    expect(await run(['--root', root(), '--grace', 'soon'])).toMatchObject({ code: 2, err: expect.stringContaining('--grace takes a number of seconds') });
    const saved = process.env.S3_BUCKET;
    delete process.env.S3_BUCKET;
    try {
      expect(await run([])).toMatchObject({ code: 2, err: expect.stringContaining('name a storage') });
    } finally {
      if (saved !== undefined) process.env.S3_BUCKET = saved;
    }
  });
});
