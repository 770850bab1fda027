/** The example's page driven in headless Chromium: push through the form, browse, download. */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { createExampleApp } from '../../examples/app';
import { FileSystemStorage } from '../../lib';
import { expectFits, launchBrowser, OUTPUT, seriousViolations } from '../support/browser';
import { bytes, listen } from '../support/http';

describe('the example server\'s push form in a real browser', () => {
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
    browser = await launchBrowser(profileDir);
    page = browser.pages()[0] ?? (await browser.newPage());
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(profileDir, { recursive: true, force: true });
  });

  it('pushes files through the form, opens the artifact in the registry UI, and downloads a file back identical', async () => {
    const data = bytes(600_000, 9);
    const text = Buffer.from('hello from the browser\n');
    await page.goto(`${server.url}/push.html`);
    await page.fill('input[name=repository]', 'browser/files');
    await page.fill('input[name=tag]', 'v1');
    await page.fill('input[name=artifactType]', 'application/vnd.example.files.v1');
    await page.setInputFiles('input[name=files]', [
      { name: 'hello.txt', mimeType: 'text/plain', buffer: text },
      { name: 'data.bin', mimeType: 'application/octet-stream', buffer: data },
    ]);
    for (const width of [360, 1280]) {
      await page.setViewportSize({ width, height: 900 });
      await expectFits(page, `the push form at ${width} px`);
      await page.screenshot({ path: join(OUTPUT, `push-form-${width}.png`), fullPage: true });
      expect(await seriousViolations(page)).toEqual([]);
    }
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

    // The message links to the artifact in the registry UI: its files with titles, types and sizes.
    const pushed = (await page.textContent('#upload-message'))!;
    const digest = /\((sha256:[0-9a-f]{64})\)/.exec(pushed)![1];
    await page.click('#upload-message a:text-is("Open it")');
    await page.waitForSelector('h2:text-is("Files (2, 586 KiB)")');
    expect(new URL(page.url()).search).toBe('?repository=browser%2Ffiles&reference=v1');
    const files = await page.$$eval('table:has(caption:text-is("Files")) tbody tr', (rows) =>
      rows.map((row) => [...row.querySelectorAll('td')].slice(0, 3).map((cell) => cell.textContent)),
    );
    expect(files).toEqual([
      ['hello.txt', 'text/plain', '23 B'],
      ['data.bin', 'application/octet-stream', '586 KiB'],
    ]);
    expect(await page.textContent('.facts')).toContain('application/vnd.example.files.v1');
    await page.waitForSelector(`.facts code[title="${digest}"]`);
    await page.screenshot({ path: join(OUTPUT, 'page.png'), fullPage: true });

    const [download] = await Promise.all([page.waitForEvent('download'), page.click('a[download="data.bin"]')]);
    expect(download.suggestedFilename()).toBe('data.bin');
    expect(Buffer.compare(readFileSync((await download.path())!), data)).toBe(0);

    expect(eventLines.some((line) => line.startsWith('event manifestPushed repository=browser/files') && line.includes('tag=v1'))).toBe(true);
  }, 60_000);

  it('has form patterns the browser compiles, so it refuses a bad name or tag before sending a byte', async () => {
    await page.goto(`${server.url}/push.html`);
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
    await page.goto(`${server.url}/push.html`);
    await page.fill('input[name=repository]', 'a'.repeat(300));
    await page.setInputFiles('input[name=files]', [{ name: 'x.txt', mimeType: 'text/plain', buffer: Buffer.from('x') }]);
    await page.click('button[type=submit]');
    await page.waitForSelector('#upload-message.error');
    expect(await page.textContent('#upload-message')).toMatch(/^Push failed: NAME_INVALID: invalid repository name/);
    await page.screenshot({ path: join(OUTPUT, 'page-error.png'), fullPage: true });
  }, 30_000);
});
