import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const projectRoot = resolve(__dirname, '../..');

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
    // Pack a copy of the project, so the build that `prepack` runs never rewrites the dist/ that
    // other suites may be reading.
    const source = join(work, 'source');
    mkdirSync(source);
    for (const entry of ['package.json', 'tsconfig.json', 'README.md', 'lib', 'examples', 'ui']) {
      cpSync(join(projectRoot, entry), join(source, entry), { recursive: true });
    }
    symlinkSync(join(projectRoot, 'node_modules'), join(source, 'node_modules'), 'dir');
    const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', work], { cwd: source });
    const [packed] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
    tarball = join(work, packed.filename);
    files = packed.files.map((file) => file.path).sort();
  }, 120_000);

  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('holds the CommonJS and ESM entry points with their types, the UI\'s entry and files, and nothing unneeded', () => {
    expect(files).toEqual(
      expect.arrayContaining(['dist/lib/index.js', 'dist/lib/index.mjs', 'dist/lib/index.d.ts', 'dist/lib/index.d.mts', 'dist/lib/ui/index.js', 'dist/lib/ui/index.d.ts']),
    );
    expect(files.filter((path) => path.startsWith('ui/'))).toEqual(projectFiles('ui'));
    const unexpected = files.filter((path) => !/^dist\/lib\/.+\.(js|mjs|d\.ts|d\.mts)$/.test(path) && !path.startsWith('ui/') && !['package.json', 'README.md'].includes(path));
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
