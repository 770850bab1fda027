/** The example's form: files pushed as an OCI artifact, pulled back with skopeo byte for byte. */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createExampleApp } from '../../examples/app';
import { MemoryStorage } from '../../lib';
import { bytes, listen, sha256 } from '../support/http';

const run = promisify(execFile);

describe('an artifact pushed through the example form, read back by skopeo', () => {
  let work: string;
  let server: Awaited<ReturnType<typeof listen>>;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'oci-form-'));
    server = await listen(createExampleApp({ storage: new MemoryStorage() }).app);
  });
  afterAll(async () => {
    await server?.close();
    await rm(work, { recursive: true, force: true });
  });

  it('has one titled layer per file and an empty config, and skopeo copies it out byte for byte', async () => {
    const notes = Buffer.from('release notes\n');
    const data = bytes(2_000_000, 11);
    const form = new FormData();
    form.append('repository', 'forms/release');
    form.append('tag', 'v2');
    form.append('artifactType', 'application/vnd.example.release.v1');
    form.append('files', new Blob([notes], { type: 'text/plain' }), 'notes.txt');
    form.append('files', new Blob([data]), 'data.bin');
    const response = await fetch(`${server.url}/api/artifacts`, { method: 'POST', body: form });
    expect(response.status).toBe(201);
    const pushed = (await response.json()) as { digest: string };

    await writeFile(join(work, 'policy.json'), JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
    await writeFile(join(work, 'registries.conf'), '');
    const host = new URL(server.url).host;
    await run('skopeo', [
      '--policy', join(work, 'policy.json'), '--registries-conf', join(work, 'registries.conf'),
      'copy', '--preserve-digests', '--src-tls-verify=false', `docker://${host}/forms/release:v2`, `oci:${join(work, 'layout')}:v2`,
    ]);
    const blob = (digest: string) => readFile(join(work, 'layout', 'blobs', ...digest.split(':')));
    const manifestBytes = await blob(pushed.digest);
    const manifest = JSON.parse(manifestBytes.toString('utf8'));
    expect(manifest).toMatchObject({
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      artifactType: 'application/vnd.example.release.v1',
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256('{}'), size: 2 },
      layers: [
        { mediaType: 'text/plain', digest: sha256(notes), size: notes.length, annotations: { 'org.opencontainers.image.title': 'notes.txt' } },
        { mediaType: 'application/octet-stream', digest: sha256(data), size: data.length, annotations: { 'org.opencontainers.image.title': 'data.bin' } },
      ],
    });
    expect(Buffer.compare(await blob(sha256(notes)), notes)).toBe(0);
    expect(Buffer.compare(await blob(sha256(data)), data)).toBe(0);
  }, 60_000);
});
