import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { createExampleApp } from '../../examples/app';
import { FileSystemStorage, OCI_MANIFEST } from '../../lib';
import { bytes, listen, sha256 } from '../support/http';

const OUTPUT = resolve(__dirname, '../../test-output');

describe('the example server page in a real browser', () => {
  let dataDir: string;
  let profileDir: string;
  let server: Awaited<ReturnType<typeof listen>>;
  let browser: BrowserContext;
  let page: Page;
  const eventLines: string[] = [];

  beforeAll(async () => {
    mkdirSync(OUTPUT, { recursive: true });
    dataDir = mkdtempSync(join(tmpdir(), 'oci-page-data-'));
    profileDir = mkdtempSync(join(tmpdir(), 'oci-page-profile-'));
    const { app } = createExampleApp({ storage: new FileSystemStorage({ root: dataDir }), logEvent: (line) => eventLines.push(line) });
    server = await listen(app);
    browser = await chromium.launchPersistentContext(profileDir, {
      executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
      headless: true,
      acceptDownloads: true,
      viewport: { width: 1280, height: 900 },
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    });
    page = browser.pages()[0] ?? (await browser.newPage());
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(profileDir, { recursive: true, force: true });
  });

  it('pushes files through the form, lists the artifact and its referrers, and downloads a layer back identical', async () => {
    const data = bytes(600_000, 9);
    const text = Buffer.from('hello from the browser\n');
    await page.goto(server.url);
    await page.fill('input[name=repository]', 'browser/files');
    await page.fill('input[name=tag]', 'v1');
    await page.fill('input[name=artifactType]', 'application/vnd.example.files.v1');
    await page.setInputFiles('input[name=files]', [
      { name: 'hello.txt', mimeType: 'text/plain', buffer: text },
      { name: 'data.bin', mimeType: 'application/octet-stream', buffer: data },
    ]);
    await page.click('button[type=submit]');
    await page.waitForSelector('#upload-message.ok');
    expect(await page.textContent('#upload-message')).toMatch(/^Pushed browser\/files:v1 \(sha256:/);

    // Every file's bar is full.
    const bars = await page.$$eval('#upload-progress progress', (elements) =>
      elements.map((element) => {
        const bar = element as unknown as { value: number; max: number };
        return [bar.value, bar.max];
      }),
    );
    expect(bars).toEqual([
      [text.length, text.length],
      [data.length, data.length],
    ]);

    // The page shows the repository, the tag and the manifest's layers with titles and types.
    await page.waitForSelector('#repositories button.selected:text-is("browser/files")');
    await page.waitForSelector('#tags button.selected:text-is("v1")');
    const layers = await page.$$eval('#manifest table', (tables) =>
      tables.map((table) => [...table.querySelectorAll('tbody tr')].map((row) => [...row.querySelectorAll('td')].slice(0, 3).map((cell) => cell.textContent))),
    );
    expect(layers[0]).toEqual([['', 'application/vnd.oci.empty.v1+json', '2 B']]);
    expect(layers[1]).toEqual([
      ['hello.txt', 'text/plain', '23 B'],
      ['data.bin', 'application/octet-stream', '586 KiB'],
    ]);
    expect(await page.textContent('#manifest')).toContain('application/vnd.example.files.v1');

    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#manifest a[download="data.bin"]')]);
    expect(download.suggestedFilename()).toBe('data.bin');
    expect(Buffer.compare(readFileSync((await download.path())!), data)).toBe(0);

    expect(eventLines.some((line) => line.startsWith('event manifestPushed repository=browser/files') && line.includes('tag=v1'))).toBe(true);

    // A referrer of the artifact (as a signature would be) shows under Referrers and opens.
    const artifact = (await page.textContent('#manifest dd code'))!;
    const artifactSize = Number((await (await fetch(`${server.url}/v2/browser/files/manifests/v1`, { method: 'HEAD', headers: { Accept: OCI_MANIFEST } })).headers.get('content-length')));
    const referrer = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: 'application/vnd.example.signature.v1',
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256('{}'), size: 2 },
      layers: [{ mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256('{}'), size: 2 }],
      subject: { mediaType: OCI_MANIFEST, digest: artifact, size: artifactSize },
    });
    const put = await fetch(`${server.url}/v2/browser/files/manifests/${sha256(referrer)}`, { method: 'PUT', headers: { 'Content-Type': OCI_MANIFEST }, body: referrer });
    expect(put.status).toBe(201);
    await page.click('#tags button:text-is("v1")');
    await page.waitForSelector('#manifest code:text-is("application/vnd.example.signature.v1")');
    await page.screenshot({ path: join(OUTPUT, 'page.png'), fullPage: true });
    await page.click('#manifest a.open');
    await page.waitForSelector(`#manifest dd:has-text("browser/files:${sha256(referrer)}")`);
    expect(await page.textContent('#manifest')).toContain(`subject${artifact}`);
  }, 60_000);

  it('has form patterns the browser compiles, so it refuses a bad name or tag before sending a byte', async () => {
    await page.goto(server.url);
    const validity = (name: string, value: string) =>
      page.$eval(`input[name=${name}]`, (input, text) => {
        const field = input as unknown as { value: string; validity: { valid: boolean } };
        field.value = text;
        return field.validity.valid;
      }, value);
    expect(await validity('repository', 'Demo/UPPER')).toBe(false);
    expect(await validity('tag', 'bad tag!')).toBe(false);
    expect(await validity('repository', 'demo/my-files__x.y')).toBe(true);
    expect(await validity('tag', 'v1.0-rc_1')).toBe(true);

    const posts: string[] = [];
    page.on('request', (request) => {
      if (request.method() === 'POST') posts.push(request.url());
    });
    await page.fill('input[name=repository]', 'Demo/UPPER');
    await page.setInputFiles('input[name=files]', [{ name: 'x.txt', mimeType: 'text/plain', buffer: Buffer.from('x') }]);
    await page.click('button[type=submit]');
    expect(await page.$eval('input[name=repository]', (input) => input.matches(':invalid'))).toBe(true);
    expect(await page.textContent('#upload-message')).toBe('');
    expect(posts).toEqual([]);
  }, 30_000);

  it('serves a favicon', async () => {
    const response = await fetch(`${server.url}/favicon.ico`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^image\//);
    // An ICO file starts with reserved 0 and type 1.
    expect(Buffer.from(await response.arrayBuffer()).subarray(0, 4)).toEqual(Buffer.from([0, 0, 1, 0]));
  });

  it('shows the registry error when a push is refused', async () => {
    await page.goto(server.url);
    await page.fill('input[name=repository]', 'a'.repeat(300));
    await page.setInputFiles('input[name=files]', [{ name: 'x.txt', mimeType: 'text/plain', buffer: Buffer.from('x') }]);
    await page.click('button[type=submit]');
    await page.waitForSelector('#upload-message.error');
    expect(await page.textContent('#upload-message')).toMatch(/^Push failed: NAME_INVALID: invalid repository name/);
    await page.screenshot({ path: join(OUTPUT, 'page-error.png'), fullPage: true });
  }, 30_000);
});
