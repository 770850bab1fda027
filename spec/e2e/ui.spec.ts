/**
 * The registry UI (`express-oci-registry/ui`) in headless Chromium over the example app, with
 * content skopeo pushed: an image, a two-platform index, and an artifact with a referrer. Each
 * view is reached by clicking, checked at 360 and 1280 px for sideways overflow, screenshotted
 * into test-output/ and run through axe-core.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { promisify } from 'node:util';
import type { Express } from 'express';
import type { BrowserContext, Page } from 'playwright-core';
import { createExampleApp } from '../../examples/app';
import { MemoryStorage } from '../../lib';
import supertest from 'supertest';
import { listen } from '../support/http';
import { makeImage, pushImage } from '../support/oci';
import { blobPath, writeArtifactLayout, writeImageLayout, writeMultiPlatformLayout, type Descriptor, type GeneratedImage, type GeneratedIndex } from '../support/oci-layout';
import { expectFits, launchBrowser, OUTPUT, seriousViolations } from '../support/browser';

const run = promisify(execFile);
describe('the registry UI over the example server', () => {
  let work: string;
  let app: Express;
  let server: Awaited<ReturnType<typeof listen>>;
  let browser: BrowserContext;
  let page: Page;
  let image: GeneratedImage;
  let multi: GeneratedIndex;
  let artifact: Descriptor;
  let signature: Descriptor;
  let host: string;

  /** Checks the current view at both widths and both colour schemes: fit, screenshots, axe. */
  async function checkView(name: string): Promise<void> {
    for (const width of [360, 1280]) {
      await page.setViewportSize({ width, height: 900 });
      await expectFits(page, `${name} at ${width} px`);
      await page.screenshot({ path: join(OUTPUT, `ui-${name}-${width}.png`), fullPage: true });
      expect(await seriousViolations(page)).toEqual([]);
    }
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.screenshot({ path: join(OUTPUT, `ui-${name}-1280-dark.png`), fullPage: true });
    expect(await seriousViolations(page)).toEqual([]);
    await page.emulateMedia({ colorScheme: 'light' });
  }

  /** `skopeo copy` into the test's server, with the test's own policy and registries configuration. */
  async function skopeoCopy(...args: string[]): Promise<void> {
    const global = ['--policy', join(work, 'policy.json'), '--registries-conf', join(work, 'registries.conf')];
    try {
      await run('skopeo', [...global, 'copy', '--dest-tls-verify=false', ...args]);
    } catch (error) {
      throw new Error(`skopeo copy ${args.join(' ')} failed: ${(error as { stderr?: string }).stderr ?? String(error)}`);
    }
  }

  beforeAll(async () => {
    mkdirSync(OUTPUT, { recursive: true });
    work = mkdtempSync(join(tmpdir(), 'oci-ui-'));
    writeFileSync(join(work, 'policy.json'), JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
    writeFileSync(join(work, 'registries.conf'), '');
    ({ app } = createExampleApp({ storage: new MemoryStorage() }));
    server = await listen(app);
    host = new URL(server.url).host;

    image = await writeImageLayout(join(work, 'image'), {
      tag: 'v1',
      fileSizes: [3000, 150_000],
      runConfig: {
        Entrypoint: ['/bin/server'],
        Cmd: ['--port', '8080'],
        Env: ['PATH=/usr/local/bin:/usr/bin', 'MODE=production'],
        WorkingDir: '/srv',
        ExposedPorts: { '8080/tcp': {} },
        Labels: { 'org.opencontainers.image.source': 'https://example.invalid/demo/app', maintainer: 'team@example.invalid' },
      },
    });
    multi = await writeMultiPlatformLayout(join(work, 'multi'), {
      tag: 'v2',
      fileSizes: [2000],
      platforms: [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64' },
      ],
    });
    artifact = await writeArtifactLayout(join(work, 'artifact'), {
      tag: 'v1',
      artifactType: 'application/vnd.example.release.v1',
      files: [
        { name: 'notes.txt', mediaType: 'text/plain', bytes: Buffer.from('release notes\n') },
        { name: 'data.bin', mediaType: 'application/octet-stream', bytes: Buffer.alloc(40_000, 7) },
      ],
      annotations: { 'org.opencontainers.image.created': '2026-11-30T10:00:00Z' },
    });
    signature = await writeArtifactLayout(join(work, 'signature'), {
      tag: 'v1.sig',
      artifactType: 'application/vnd.example.signature.v1',
      files: [{ name: 'signature.json', mediaType: 'application/json', bytes: Buffer.from('{"signed":true}') }],
      subject: artifact,
      annotations: { 'org.opencontainers.image.created': '2026-11-30T11:00:00Z', 'org.example.signer': 'release-bot' },
    });
    await skopeoCopy('--preserve-digests', `oci:${join(work, 'image')}:v1`, `docker://${host}/demo/app:v1`);
    await skopeoCopy('--preserve-digests', `oci:${join(work, 'image')}:v1`, `docker://${host}/demo/app:stable`);
    await skopeoCopy('--preserve-digests', '--all', `oci:${join(work, 'multi')}:v2`, `docker://${host}/demo/multi:v2`);
    // The same as Docker schema 2: skopeo converts it to a manifest list over v2s2 images (new digests).
    await skopeoCopy('--all', '--format', 'v2s2', `oci:${join(work, 'multi')}:v2`, `docker://${host}/demo/docker:v2`);
    await skopeoCopy('--preserve-digests', `oci:${join(work, 'artifact')}:v1`, `docker://${host}/demo/release:v1`);
    await skopeoCopy('--preserve-digests', `oci:${join(work, 'signature')}:v1.sig`, `docker://${host}/demo/release:v1.sig`);
    // Enough further repositories for the catalog to need paging past the first page of names.
    const agent = supertest(app);
    for (let index = 0; index < 60; index++) await pushImage(agent, `bulk/r${String(index).padStart(2, '0')}`, makeImage(`bulk ${index}`), 'v1');

    browser = await launchBrowser(join(work, 'profile'));
    await browser.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url });
    page = browser.pages()[0] ?? (await browser.newPage());
    // A step that waits for what never comes fails on its own line, well before the test's timeout.
    page.setDefaultTimeout(10_000);
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** The text of each cell in the rows of the table with caption `caption`. */
  const tableRows = (caption: string) =>
    page.$$eval(`table:has(caption:text-is("${caption}")) tbody tr`, (rows) =>
      rows.map((row) => [...row.querySelectorAll('td')].map((cell) => (cell.textContent ?? '').replace('Copy', '').trim())),
    );
  const heading = () => page.textContent('main h1');
  const short = (digest: string) => `${digest.slice(0, 19)}…`;
  const search = () => new URL(page.url()).search;

  /** From any view: back to the repositories, filter, open `repository`, wait for `shown` in its tags, open `tag`. */
  async function openTag(filter: string, repository: string, shown: string, tag: string): Promise<void> {
    await page.click('.crumbs a:text-is("Repositories")');
    await page.fill('#filter', filter);
    await page.click(`.repositories a:text-is("${repository}")`);
    await page.waitForSelector(`table.tags td:has-text("${shown}")`);
    await page.click(`table.tags a:text-is("${tag}")`);
  }

  it('walks every view by clicking: repositories, filter, paging, tags, image, index, platform, artifact, referrer', async () => {
    await page.goto(server.url);
    await page.waitForSelector('.repositories a');
    // The first page holds 50 names; the demo repositories sort after them.
    expect(await page.$$eval('.repositories a', (links) => links.length)).toBe(50);
    await checkView('repositories');
    await page.click('a:text-is("Next page")');
    await page.waitForSelector('.repositories a:text-is("demo/app")');
    expect(await page.$$eval('.repositories a', (links) => links.map((link) => link.textContent))).toEqual([
      ...Array.from({ length: 10 }, (_, index) => `bulk/r${50 + index}`),
      'demo/app',
      'demo/docker',
      'demo/multi',
      'demo/release',
    ]);
    await page.click('a:text-is("Previous page"), a:text-is("First page")');
    await page.waitForSelector('.repositories a:text-is("bulk/r00")');

    // Filter as you type: the URL follows, and the list holds only matches.
    await page.fill('#filter', 'demo');
    await page.waitForFunction("document.querySelectorAll('.repositories a').length === 4");
    expect(search()).toBe('?q=demo');
    await checkView('repositories-filtered');

    await page.click('.repositories a:text-is("demo/app")');
    await page.waitForSelector('table.tags td:has-text("linux/amd64")');
    expect(await heading()).toBe('demo/app');
    await page.waitForFunction("[...document.querySelectorAll('table.tags tbody tr')].every((row) => row.cells[1].textContent.startsWith('sha256:'))");
    const imageSize = image.config.size + image.layers.reduce((sum, layer) => sum + layer.size, 0);
    const tags = await tableRows('Tags of demo/app');
    expect(tags.map((row) => row.slice(0, 3))).toEqual([
      ['stable', short(image.manifest.digest), `${(imageSize / 1024).toFixed(0)} KiB`],
      ['v1', short(image.manifest.digest), `${(imageSize / 1024).toFixed(0)} KiB`],
    ]);
    expect(tags[0][4]).toBe('linux/amd64');
    await checkView('tags');

    await page.click('table.tags a:text-is("v1")');
    await page.waitForSelector('h2:text-is("Configuration")');
    expect(search()).toBe('?repository=demo%2Fapp&reference=v1');
    expect(await heading()).toBe('demo/app:v1');
    const config = await page.textContent('section:has(h2:text-is("Configuration"))');
    for (const text of ['linux/amd64', '/bin/server', '--port 8080', 'MODE=production', '/srv', '8080/tcp', 'maintainer', 'team@example.invalid']) expect(config).toContain(text);
    expect(await tableRows('History')).toEqual([
      ['random file layer-0.bin', expect.stringMatching(/KiB$/)],
      ['random file layer-1.bin', expect.stringMatching(/KiB$/)],
    ]);
    expect((await tableRows('Layers')).map((row) => [row[0], row[3]])).toEqual(image.layers.map((layer, index) => [String(index + 1), short(layer.digest)]));
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('a[aria-label="Download layer 1"]')]);
    expect(Buffer.compare(readFileSync((await download.path())!), readFileSync(blobPath(join(work, 'image'), image.layers[0].digest)))).toBe(0);
    expect(await page.textContent('#referrers')).toContain('No signatures, SBOMs or attestations');
    await checkView('image');

    await openTag('multi', 'demo/multi', 'linux/arm64', 'v2');
    await page.waitForSelector('h2:text-is("Platforms (2)")');
    expect(await page.textContent('.facts')).toContain('Multi-platform index');
    expect((await tableRows('Platforms')).map((row) => row.slice(0, 2))).toEqual([
      ['linux/amd64', short(multi.images[0].manifest.digest)],
      ['linux/arm64', short(multi.images[1].manifest.digest)],
    ]);
    await checkView('index');

    await page.click('table a.platform:text-is("linux/arm64")');
    await page.waitForSelector('h2:text-is("Configuration")');
    expect(search()).toBe('?repository=demo%2Fmulti&reference=v2&platform=linux%2Farm64');
    await page.waitForSelector(`.facts code[title="${multi.images[1].manifest.digest}"]`);
    expect(await page.textContent('.pull')).toContain(`podman pull ${host}/demo/multi@${multi.images[1].manifest.digest}`);
    await checkView('platform');

    // A deep link survives a reload; back and forward move between the views.
    await page.reload();
    await page.waitForSelector('h2:text-is("Configuration")');
    expect(await page.textContent('section:has(h2:text-is("Configuration"))')).toContain('linux/arm64');
    await page.goBack();
    await page.waitForSelector('h2:text-is("Platforms (2)")');
    expect(search()).toBe('?repository=demo%2Fmulti&reference=v2');
    await page.goForward();
    await page.waitForSelector('h1 .badge:text-is("linux/arm64")');

    await page.click('.crumbs a:text-is("demo/multi")');
    await openTag('release', 'demo/release', 'application/vnd.example.signature.v1', 'v1');
    await page.waitForSelector('h2:text-is("Referrers (1)")');
    expect((await tableRows('Files')).map((row) => row.slice(0, 3))).toEqual([
      ['notes.txt', 'text/plain', '14 B'],
      ['data.bin', 'application/octet-stream', '39 KiB'],
    ]);
    const [referrer] = await tableRows('Referrers');
    expect(referrer.slice(0, 2)).toEqual(['application/vnd.example.signature.v1', short(signature.digest)]);
    expect(referrer[3]).toContain('org.example.signerrelease-bot');
    await checkView('artifact');

    await page.click('#referrers a:has-text("application/vnd.example.signature.v1")');
    await page.waitForSelector('h2:text-is("Files (1, 15 B)")');
    expect(await heading()).toBe(`demo/release@${short(signature.digest)}`);
    await checkView('referrer');
    await page.click('.facts a:has-text("(open)")');
    await page.waitForSelector('h2:text-is("Referrers (1)")');
    expect(await heading()).toBe(`demo/release@${short(artifact.digest)}`);
  }, 120_000);

  it('shows a Docker manifest list\'s platforms and opens a Docker schema 2 image', async () => {
    await page.goto(`${server.url}/?repository=demo/docker&reference=v2`);
    await page.waitForSelector('h2:text-is("Platforms (2)")');
    expect(await page.textContent('.facts')).toContain('application/vnd.docker.distribution.manifest.list.v2+json');
    expect((await tableRows('Platforms')).map((row) => [row[0], row[3]])).toEqual([
      ['linux/amd64', 'application/vnd.docker.distribution.manifest.v2+json'],
      ['linux/arm64', 'application/vnd.docker.distribution.manifest.v2+json'],
    ]);
    await page.click('table a.platform:text-is("linux/amd64")');
    await page.waitForSelector('h2:text-is("Configuration")');
    expect(await page.textContent('section:has(h2:text-is("Configuration"))')).toContain('linux/amd64');
    expect((await tableRows('Layers'))[0][1]).toBe('application/vnd.docker.image.rootfs.diff.tar');
  }, 30_000);

  it('pages through a repository\'s tags, 50 at a time, and back', async () => {
    const agent = supertest(app);
    const bulk = makeImage('bulk 0');
    for (let index = 0; index < 54; index++) {
      await agent.put(`/v2/bulk/r00/manifests/t${String(index).padStart(2, '0')}`).set('Content-Type', 'application/vnd.oci.image.manifest.v1+json').send(bulk.manifest.toString()).expect(201);
    }
    await page.goto(`${server.url}/?repository=bulk/r00`);
    await page.waitForSelector('table.tags');
    const tagNames = () => page.$$eval('table.tags a.tag', (links) => links.map((link) => link.textContent));
    expect(await tagNames()).toEqual(Array.from({ length: 50 }, (_, index) => `t${String(index).padStart(2, '0')}`));
    await page.click('a:text-is("Next page")');
    await page.waitForSelector('table.tags a.tag:text-is("v1")');
    expect(await tagNames()).toEqual(['t50', 't51', 't52', 't53', 'v1']);
    expect(search()).toBe('?repository=bulk%2Fr00&after=t49');
    await page.click('a:text-is("Previous page")');
    await page.waitForSelector('table.tags a.tag:text-is("t00")');
    expect(search()).toBe('?repository=bulk%2Fr00');
    // Opened from a link, a later page knows no earlier cursors, and offers the first page instead.
    await page.goto(`${server.url}/?repository=bulk/r00&after=t49`);
    await page.click('a:text-is("First page")');
    await page.waitForSelector('table.tags a.tag:text-is("t00")');
  }, 60_000);

  it('copies the full digest and the pull commands with the page\'s host', async () => {
    await page.goto(`${server.url}/?repository=demo/app&reference=v1`);
    await page.waitForSelector('.pull');
    await page.click('button[aria-label="Copy podman pull command"]');
    await page.waitForSelector('#toast:text-is("Copied podman pull command")');
    expect(await page.evaluate('navigator.clipboard.readText()')).toBe(`podman pull ${host}/demo/app:v1`);
    await page.click('button[aria-label="Copy docker pull command"]');
    await page.waitForSelector('#toast:text-is("Copied docker pull command")');
    expect(await page.evaluate('navigator.clipboard.readText()')).toBe(`docker pull ${host}/demo/app:v1`);
    await page.click('.facts button.copy');
    await page.waitForSelector('#toast:has-text("Copied digest")');
    expect(await page.evaluate('navigator.clipboard.readText()')).toBe(image.manifest.digest);
  }, 30_000);

  it('is keyboard navigable: filter, open a repository and a tag, and close the dialog with Escape', async () => {
    await page.goto(server.url);
    await page.waitForSelector('.repositories a');
    await page.focus('#filter');
    await page.keyboard.type('app');
    await page.waitForFunction("document.querySelectorAll('.repositories a').length === 1");
    await page.keyboard.press('Tab');
    expect(await page.evaluate('document.activeElement?.textContent')).toBe('demo/app');
    await page.keyboard.press('Enter');
    await page.waitForSelector('table.tags');
    // Focus moves to the new view's heading once the whole view has rendered (after the table
    // appears); the next Tab stops are the view's links.
    await page.waitForFunction("document.activeElement?.tagName === 'H1'");
    await page.keyboard.press('Tab');
    expect(await page.evaluate('document.activeElement?.textContent')).toBe('stable');
    await page.keyboard.press('Enter');
    await page.waitForSelector('h2:text-is("Configuration")');
    expect(await heading()).toBe('demo/app:stable');
    await page.focus('button:text-is("Delete tag stable")');
    await page.keyboard.press('Enter');
    await page.waitForSelector('dialog[open]');
    await page.keyboard.press('Escape');
    await page.waitForSelector('dialog[open]', { state: 'detached' });
    expect(await heading()).toBe('demo/app:stable');
  }, 30_000);

  it('shows the registry\'s OCI error message when a view cannot load', async () => {
    await page.goto(`${server.url}/?repository=demo/nothing`);
    await page.waitForSelector('[role=alert]');
    expect(await page.textContent('[role=alert]')).toMatch(/^NAME_UNKNOWN: /);
    await page.goto(`${server.url}/?repository=demo/app&reference=nope`);
    await page.waitForSelector('[role=alert]');
    expect(await page.textContent('[role=alert]')).toBe('MANIFEST_UNKNOWN: manifest unknown to registry (tag nope is not in demo/app)');
    // The trail and the title still say where the failed view is.
    expect(await page.$$eval('#crumbs li', (items) => items.map((item) => item.textContent))).toEqual(['Repositories', 'demo/app', 'nope']);
    expect(await page.title()).toBe('demo/app › nope · express-oci-registry');
    await checkView('error');
  }, 30_000);

  it('deletes a tag behind a confirmation, and the registry no longer lists it', async () => {
    await page.goto(`${server.url}/?repository=demo/app`);
    await page.waitForSelector('button[aria-label="Delete tag stable"]');
    await page.click('button[aria-label="Delete tag stable"]');
    await page.waitForSelector('dialog[open]');
    expect(await page.textContent('#confirm-title')).toBe('Delete tag stable?');
    await checkView('delete-confirm');
    await page.click('dialog button:text-is("Cancel")');
    expect(await (await fetch(`${server.url}/v2/demo/app/tags/list`)).json()).toEqual({ name: 'demo/app', tags: ['stable', 'v1'] });

    await page.click('button[aria-label="Delete tag stable"]');
    await page.click('dialog button:text-is("Delete")');
    await page.waitForSelector('#toast:text-is("Deleted tag stable")');
    expect(await tableRows('Tags of demo/app')).toEqual([['v1', expect.any(String), expect.any(String), expect.any(String), 'linux/amd64', 'Delete']]);
    expect(await (await fetch(`${server.url}/v2/demo/app/tags/list`)).json()).toEqual({ name: 'demo/app', tags: ['v1'] });

    // A delete the registry refuses (the tag went meanwhile) shows the registry's error and keeps the row.
    expect((await fetch(`${server.url}/v2/demo/app/manifests/v1`, { method: 'DELETE' })).status).toBe(202);
    await page.click('button[aria-label="Delete tag v1"]');
    await page.click('dialog button:text-is("Delete")');
    await page.waitForSelector('main [role=alert]');
    expect(await page.textContent('main [role=alert]')).toBe('MANIFEST_UNKNOWN: manifest unknown to registry (tag v1 is not in demo/app)');
    expect((await tableRows('Tags of demo/app')).map((row) => row[0])).toEqual(['v1']);

    // Deleting the referrer by digest takes it out of its subject's referrers.
    await page.goto(`${server.url}/?repository=demo/release&reference=${signature.digest}`);
    await page.click('button:text-is("Delete manifest")');
    await page.click('dialog button:text-is("Delete")');
    await page.waitForSelector('table.tags');
    expect(search()).toBe('?repository=demo%2Frelease');
    expect(await (await fetch(`${server.url}/v2/demo/release/referrers/${artifact.digest}`)).json()).toMatchObject({ manifests: [] });
  }, 30_000);
});
