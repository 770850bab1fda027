/** The package as users install it: the packed tarball in fresh apps, its entry points and types, its bin and its test kit. */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { serveCommand } from '../../lib/cli/serve-command';
import { startServerProcess, type ExampleServer } from '../support/example-server';
import { blobPath, layoutManifests, sameFileContents, writeImageLayout, type GeneratedImage } from '../support/oci-layout';
import { deletePrefix, ensureBucket, s3Settings, S3_SKIP_REASON } from '../support/s3';
import { skopeoIn, type Skopeo } from '../support/skopeo';
import { S3Storage } from '../../lib/storage/s3';

const run = promisify(execFile);
const projectRoot = resolve(__dirname, '../..');
const s3 = s3Settings();
/** The line the bin prints once it listens. */
const LISTENING = /registry listening on (http:\/\/\S+)/;

/** The files under `folder` in the project, as package paths. */
function projectFiles(folder: string): string[] {
  const list = (path: string): string[] =>
    readdirSync(join(projectRoot, path), { withFileTypes: true }).flatMap((entry) => (entry.isDirectory() ? list(`${path}/${entry.name}`) : [`${path}/${entry.name}`]));
  return list(folder).sort();
}

// A consumer that loads the installed package, pushes one blob through it in a fresh Express
// app, reads it back and prints what it saw; `load` is the `require` or `import` preamble.
const consumer = (load: string) => `
${load}
const { createHash } = require_('node:crypto');
const data = Buffer.from('a blob pushed through the installed package');
const digest = 'sha256:' + createHash('sha256').update(data).digest('hex');
const app = express();
const router = registry.createRegistryRouter({ storage: new registry.MemoryStorage() });
app.use(router);
app.use('/ui', createRegistryUi({ registry: router, title: 'Packed <UI>' }));
const server = app.listen(0, '127.0.0.1', async () => {
  const origin = 'http://127.0.0.1:' + server.address().port;
  const base = origin + '/v2/pkg/test';
  const pushed = await fetch(base + '/blobs/uploads/?digest=' + digest, {
    method: 'POST', body: data, headers: { 'content-type': 'application/octet-stream' },
  });
  const pulled = await fetch(base + '/blobs/' + digest);
  const body = Buffer.from(await pulled.arrayBuffer());
  const page = await fetch(origin + '/ui/');
  const pageText = await page.text();
  const script = await fetch(origin + '/ui/js/app.js');
  console.log(JSON.stringify({
    ui: [page.status, pageText.includes('<title>Packed &lt;UI&gt;</title>'), script.status, script.headers.get('content-type')],
    pushStatus: pushed.status,
    pullStatus: pulled.status,
    identical: body.equals(data),
    // ESM sees the CommonJS marker __esModule as a named export; it is not part of the API.
    exports: Object.keys(registry).filter((name) => name !== 'default' && name !== '__esModule').sort(),
    authExports: Object.keys(auth).filter((name) => name !== 'default' && name !== '__esModule').sort(),
    expressMajor: require_('express/package.json').version.split('.')[0],
  }));
  server.close();
});
`;

const commonJsConsumer = consumer(`
const require_ = require;
const express = require('express');
const registry = require('express-oci-registry');
const auth = require('express-oci-registry/auth');
const { createRegistryUi } = require('express-oci-registry/ui');
`);

const esmConsumer = consumer(`
import { createRequire } from 'node:module';
import express from 'express';
import * as registry from 'express-oci-registry';
import * as auth from 'express-oci-registry/auth';
import { createRegistryUi } from 'express-oci-registry/ui';
const require_ = createRequire(import.meta.url);
`);

interface ConsumerReport {
  ui: [number, boolean, number, string];
  pushStatus: number;
  pullStatus: number;
  identical: boolean;
  exports: string[];
  authExports: string[];
  expressMajor: string;
}

async function runNode(cwd: string, file: string): Promise<ConsumerReport> {
  const { stdout } = await run(process.execPath, [file], { cwd });
  return JSON.parse(stdout) as ConsumerReport;
}

describe('the package as users install it', () => {
  let work: string;
  let tarball: string;
  let files: string[];

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'oci-package-'));
    // Pack a copy of the project, so the build that `prepare` runs never rewrites the dist/ that
    // other suites may be reading.
    const source = join(work, 'source');
    mkdirSync(source);
    for (const entry of ['package.json', 'tsconfig.json', 'README.md', 'LICENSE', 'lib', 'examples', 'ui']) {
      cpSync(join(projectRoot, entry), join(source, entry), { recursive: true });
    }
    symlinkSync(join(projectRoot, 'node_modules'), join(source, 'node_modules'), 'dir');
    const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', work], { cwd: source });
    const [packed] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
    tarball = join(work, packed.filename);
    files = packed.files.map((file) => file.path).sort();
  }, 120_000);

  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it("holds the CommonJS and ESM entry points with their types, the UI's entry and files, the bin, the licence, and nothing unneeded", () => {
    expect(files).toEqual(
      expect.arrayContaining([
        'dist/lib/index.js', 'dist/lib/index.mjs', 'dist/lib/index.d.ts', 'dist/lib/index.d.mts', 'dist/lib/ui/index.js', 'dist/lib/ui/index.d.ts',
        'dist/lib/cli/main.js', 'dist/lib/testing/index.d.ts', 'LICENSE',
      ]),
    );
    expect(files.filter((path) => path.startsWith('ui/'))).toEqual(projectFiles('ui'));
    const unexpected = files.filter((path) => !/^dist\/lib\/.+\.(js|mjs|d\.ts|d\.mts)$/.test(path) && !path.startsWith('ui/') && !['package.json', 'README.md', 'LICENSE'].includes(path));
    expect(unexpected).toEqual([]);
  });

  for (const major of ['4', '5']) {
    it(`installs into a fresh Express ${major} app, where require and import both push and pull a blob`, async () => {
      const app = join(work, `express${major}-app`);
      mkdirSync(app);
      writeFileSync(join(app, 'package.json'), JSON.stringify({ name: `consumer-express${major}`, private: true }));
      // Cached packages first: only the npm registry is reachable, and CI's `npm ci` has just
      // filled the cache with both Express majors.
      await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball, `express@${major}`], { cwd: app });
      writeFileSync(join(app, 'consumer.cjs'), commonJsConsumer);
      writeFileSync(join(app, 'consumer.mjs'), esmConsumer);
      const [required, imported] = await Promise.all([runNode(app, 'consumer.cjs'), runNode(app, 'consumer.mjs')]);
      for (const report of [required, imported]) {
        expect(report).toMatchObject({ pushStatus: 201, pullStatus: 200, identical: true, expressMajor: major });
        expect(report.ui).toEqual([200, true, 200, expect.stringMatching(/javascript/)]);
        expect(report.exports).toContain('createRegistryRouter');
        expect(report.authExports).toEqual(expect.arrayContaining(['createTokenService', 'tokenAuthorize']));
      }
      expect(imported.exports).toEqual(required.exports);
      expect(imported.authExports).toEqual(required.authExports);
    }, 120_000);
  }

  it('serves metrics from the express-oci-registry/metrics subpath, by require and import, once prom-client is installed', async () => {
    const app = join(work, 'metrics-app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'consumer-metrics', private: true }));
    await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball, 'express@5', 'prom-client@15'], { cwd: app });
    const scrape = (load: string) => `${load}
const router = createRegistryRouter({ storage: new MemoryStorage(), uploadPurging: false });
const metrics = registryMetrics(router, { registry: new Registry() });
router.events.notify('blobMounted', { repository: 'a/b', digest: 'sha256:00', size: 1 });
metrics.registry.metrics().then((text) => console.log(JSON.stringify({ mounts: /^oci_registry_blob_mounts_total (\\d+)$/m.exec(text)[1] })));
`;
    writeFileSync(
      join(app, 'metrics.cjs'),
      scrape("const { createRegistryRouter, MemoryStorage } = require('express-oci-registry');\nconst { registryMetrics } = require('express-oci-registry/metrics');\nconst { Registry } = require('prom-client');"),
    );
    writeFileSync(
      join(app, 'metrics.mjs'),
      scrape("import { createRegistryRouter, MemoryStorage } from 'express-oci-registry';\nimport { registryMetrics } from 'express-oci-registry/metrics';\nimport { Registry } from 'prom-client';"),
    );
    for (const file of ['metrics.cjs', 'metrics.mjs']) {
      const { stdout } = await run(process.execPath, [file], { cwd: app });
      expect(JSON.parse(stdout)).toEqual({ mounts: '1' });
    }
  }, 120_000);

  it('type-checks TypeScript consumers of both entry points, with per-event payload types', async () => {
    const app = join(work, 'typescript-app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'consumer-typescript', private: true }));
    await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball, 'express@5', '@types/express@5', '@types/node@20'], { cwd: app });
    writeFileSync(
      join(app, 'consumer.mts'),
      typedConsumer(
        "import express from 'express';\nimport { createRegistryRouter, MemoryStorage, multerStorage, type BlobCommittedEvent } from 'express-oci-registry';\nimport { tokenAuthorize } from 'express-oci-registry/auth';\nimport { createRegistryUi } from 'express-oci-registry/ui';",
      ),
    );
    writeFileSync(
      join(app, 'consumer.cts'),
      typedConsumer(
        "import express = require('express');\nimport oci = require('express-oci-registry');\nimport auth = require('express-oci-registry/auth');\nimport ui = require('express-oci-registry/ui');\nconst { createRegistryRouter, MemoryStorage, multerStorage } = oci;\nconst { tokenAuthorize } = auth;\nconst { createRegistryUi } = ui;\ntype BlobCommittedEvent = oci.BlobCommittedEvent;",
      ),
    );
    const tsc = join(projectRoot, 'node_modules', 'typescript', 'bin', 'tsc');
    const args = ['--noEmit', '--strict', '--module', 'node16', '--moduleResolution', 'node16', '--target', 'es2022', '--types', 'node', 'consumer.mts', 'consumer.cts'];
    // No output and exit 0: both resolve their entry's types, and the @ts-expect-error below is used.
    await expect(run(process.execPath, [tsc, ...args], { cwd: app })).resolves.toMatchObject({ stdout: '' });
  }, 120_000);

  describe('installed for its bin and its adapter test kit', () => {
    let app: string;
    let bin: string;
    let skopeo: Skopeo;
    let image: GeneratedImage;
    let server: ExampleServer | undefined;
    const layout = () => join(app, 'image');
    const data = () => join(app, 'data');

    beforeAll(async () => {
      app = join(work, 'bin-app');
      mkdirSync(app);
      writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'consumer-bin', private: true }));
      await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball, 'express@5', 'bcryptjs@3'], { cwd: app });
      bin = join(app, 'node_modules', '.bin', 'express-oci-registry');
      image = await writeImageLayout(layout(), { tag: 'v1', fileSizes: [1000, 300_000] });
      skopeo = await skopeoIn(app, () => `server log:\n${server?.logTail()}`);
    }, 120_000);

    afterEach(async () => {
      await server?.stop();
      server = undefined;
    });

    const serve = async (...flags: string[]) => {
      server = await startServerProcess(bin, ['serve', '--root', data(), '--port', '0', ...flags], {}, LISTENING);
      return new URL(server.url).host;
    };

    it('serves a folder behind htpasswd sign-in: skopeo pushes and pulls an image with credentials, and is refused without', async () => {
      const { stdout: users } = await run('htpasswd', ['-Bbn', 'alice', 'alice secret']);
      writeFileSync(join(app, 'users.htpasswd'), users);
      const host = await serve('--htpasswd', join(app, 'users.htpasswd'));
      const target = `docker://${host}/demo/app:v1`;
      await expect(skopeo('copy', '--preserve-digests', '--dest-tls-verify=false', `oci:${layout()}:v1`, target)).rejects.toThrow(/authentication required|unauthorized/i);
      await skopeo('copy', '--preserve-digests', '--dest-tls-verify=false', '--dest-creds', 'alice:alice secret', `oci:${layout()}:v1`, target);
      const pulled = join(app, 'pulled');
      await skopeo('copy', '--preserve-digests', '--src-tls-verify=false', '--src-creds', 'alice:alice secret', target, `oci:${pulled}:v1`);
      expect((await layoutManifests(pulled)).map((entry) => entry.digest)).toEqual([image.manifest.digest]);
      for (const layer of image.layers) expect(await sameFileContents(blobPath(layout(), layer.digest), blobPath(pulled, layer.digest))).toBe(true);
      expect(server!.logTail()).toContain('event manifestPushed repository=demo/app');
      expect(await server!.stop()).toEqual({ code: 0, signal: null });
    }, 120_000);

    it('--read-only serves what is stored and refuses every write with 405 UNSUPPORTED', async () => {
      const writable = await serve();
      await skopeo('copy', '--preserve-digests', '--dest-tls-verify=false', `oci:${layout()}:v1`, `docker://${writable}/demo/stored:v1`);
      await server!.stop();
      const host = await serve('--read-only');
      const pulled = join(app, 'pulled-read-only');
      await skopeo('copy', '--preserve-digests', '--src-tls-verify=false', `docker://${host}/demo/stored:v1`, `oci:${pulled}:v1`);
      expect((await layoutManifests(pulled)).map((entry) => entry.digest)).toEqual([image.manifest.digest]);
      await expect(skopeo('copy', '--preserve-digests', '--dest-tls-verify=false', `oci:${layout()}:v1`, `docker://${host}/demo/other:v1`)).rejects.toThrow(/read-only/);
      const refused = await fetch(`http://${host}/v2/demo/stored/manifests/v1`, { method: 'DELETE' });
      expect(refused.status).toBe(405);
      expect(refused.headers.get('allow')).toBe('GET, HEAD');
      expect(await refused.json()).toMatchObject({ errors: [{ code: 'UNSUPPORTED' }] });
    }, 120_000);

    (s3 ? it : it.skip)(`serves an S3 bucket from the --s3-* flags, the SDK loaded only then: skopeo pushes and pulls${s3 ? '' : ` ${S3_SKIP_REASON}`}`, async () => {
      const settings = s3!;
      // The versions the project's own install holds, so npm takes them from its cache.
      const sdk = ['@aws-sdk/client-s3', '@aws-sdk/s3-request-presigner'].map((name) => `${name}@${require(`${name}/package.json`).version}`);
      await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', ...sdk], { cwd: app });
      await ensureBucket(settings);
      const prefix = `bin-${randomUUID()}`;
      const flags = ['--s3-bucket', settings.bucket, '--s3-endpoint', settings.endpoint!, '--s3-region', settings.region!, '--s3-prefix', prefix, '--s3-force-path-style', '--s3-part-size-mib', '5'];
      const env = { AWS_ACCESS_KEY_ID: settings.credentials!.accessKeyId, AWS_SECRET_ACCESS_KEY: settings.credentials!.secretAccessKey };
      server = await startServerProcess(bin, ['serve', '--port', '0', ...flags], env, LISTENING);
      const host = new URL(server.url).host;
      const storage = new S3Storage({ ...settings, prefix });
      try {
        expect(server.logTail()).toContain(`data in bucket ${settings.bucket}/${prefix}`);
        await skopeo('copy', '--preserve-digests', '--dest-tls-verify=false', `oci:${layout()}:v1`, `docker://${host}/demo/s3:v1`);
        const pulled = join(app, 'pulled-s3');
        await skopeo('copy', '--preserve-digests', '--src-tls-verify=false', `docker://${host}/demo/s3:v1`, `oci:${pulled}:v1`);
        expect((await layoutManifests(pulled)).map((entry) => entry.digest)).toEqual([image.manifest.digest]);
        expect(await storage.listDocuments('')).not.toEqual([]);
      } finally {
        await deletePrefix(storage.client, settings.bucket, `${prefix}/`);
        storage.client.destroy();
      }
    }, 120_000);

    it('--help lists the subcommands and every flag of serve; gc runs; a bad flag, value or command exits 2 and says what is wrong', async () => {
      const { stdout: help } = await run(bin, ['serve', '--help']);
      for (const flag of serveCommand.flags) expect(help).toContain(`--${flag.name}`);
      expect((await run(bin, ['--help'])).stdout).toMatch(/^  serve .*\n  gc /m);
      expect((await run(bin, ['gc', '--help'])).stdout).toContain('--untagged <seconds>');
      expect(JSON.parse((await run(bin, ['gc', '--root', data(), '--dry-run'])).stdout)).toMatchObject({ dryRun: true });
      const failures: [string[], string][] = [
        [['serve', '--prot', '5000'], "Unknown option '--prot'"],
        [['serve', '--port', 'http'], "--port must be a whole number from 0 to 65535, not 'http'"],
        [['serve', '--s3-region', 'eu-west-1'], '--s3-region needs --s3-bucket'],
        [['serve', '--root', 'x', '--s3-bucket', 'y'], '--root and --s3-bucket exclude each other'],
        [['srve'], "unknown command 'srve'"],
      ];
      for (const [args, message] of failures) {
        await expect(run(bin, args, { cwd: app })).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining(message) });
      }
    });

    it('exports the adapter test kit, which runs under node:test and fails an adapter that breaks the contract', async () => {
      writeFileSync(
        join(app, 'kit.test.cjs'),
        `const test = require('node:test');
const { describeStorageAdapter } = require('express-oci-registry/testing');
const { MemoryStorage } = require('express-oci-registry');
/** Appends wherever the upload ends, whatever offset the caller expected. */
class LooseStorage extends MemoryStorage {
  async appendUpload(id, expected, body) {
    return super.appendUpload(id, (await this.uploadSize(id)) ?? expected, body);
  }
}
describeStorageAdapter(process.env.ADAPTER, () => (process.env.ADAPTER === 'loose' ? new LooseStorage() : new MemoryStorage()), { runner: test });
`,
      );
      const kit = (adapter: string) => run(process.execPath, ['--test', 'kit.test.cjs'], { cwd: app, env: { ...process.env, ADAPTER: adapter } });
      const passed = await kit('memory');
      expect(passed.stdout).toMatch(/^# fail 0$/m);
      expect(passed.stdout).toMatch(/^# pass (1\d|[2-9]\d)$/m);
      const failed = await kit('loose').then(() => undefined, (error: { code: number; stdout: string }) => error);
      expect(failed?.code).toBe(1);
      expect(failed?.stdout).toMatch(/^\s*not ok \d+ - refuses an append at the wrong offset/m);
    });
  });
});

/** A TypeScript consumer; if the package's types were missing or loose, the @ts-expect-error would be unused and fail. */
function typedConsumer(imports: string): string {
  return `${imports}
const registry = createRegistryRouter({ storage: new MemoryStorage() });
registry.events.on('blobCommitted', (event: BlobCommittedEvent) => console.log(event.digest.length + event.size));
// @ts-expect-error: each event's payload has its own type
registry.events.on('blobCommitted', (event: { notAField: number }) => event);
express().use(registry);
multerStorage(registry, { repository: 'a/b' });
createRegistryRouter({ storage: new MemoryStorage(), authorize: tokenAuthorize({ service: 's', issuer: 'i', keys: { publicKeys: ['PEM'] } }) });
// @ts-expect-error: tokenAuthorize needs its keys
tokenAuthorize({ service: 's', issuer: 'i' });
express().use('/ui', createRegistryUi({ registry, title: 'Images' }));
// @ts-expect-error: readOnly is a boolean
createRegistryUi({ registry, readOnly: 'yes' });
`;
}
