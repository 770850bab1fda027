/**
 * The registry UI mounted under /ui in a host app whose `authorize` gives each user their own
 * view (by the session cookie its own login would set): the page shows only what the user may pull and offers delete only where the registry
 * serves it and the user may; `readOnly` and `deleteEnabled: false` offer none; a registry under a
 * path prefix is reached through `registry: '/prefix'`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import type { BrowserContext, Page } from 'playwright-core';
import supertest from 'supertest';
import { createRegistryRouter, MemoryStorage, type AccessRequest } from '../../lib';
import { createRegistryUi } from '../../lib/ui';
import { expectFits, launchBrowser, OUTPUT, seriousViolations } from '../support/browser';
import { listen, makeApp } from '../support/http';
import { makeImage, pushImage } from '../support/oci';

/** The host app's sessions, as its own login page would have set them in a cookie. */
const SESSIONS: Record<string, string> = { 'alice-session': 'alice', 'admin-session': 'admin' };

function userOf(req: IncomingMessage): string | undefined {
  const session = /(?:^|;\s*)session=([^;]+)/.exec(req.headers.cookie ?? '')?.[1];
  return session ? SESSIONS[session] : undefined;
}

/**
 * admin does anything; alice pulls team/* and public/*; anonymous users pull public/*. A signed-in
 * user is refused with 'forbidden', so the browser is never asked for Basic credentials.
 */
function authorize(req: IncomingMessage, { repository, actions }: AccessRequest) {
  const user = userOf(req);
  if (user === 'admin' || repository === '') return true;
  const pullOnly = actions.every((action) => action === 'pull');
  const allowed = repository.startsWith('public/') ? pullOnly : user === 'alice' && repository.startsWith('team/') && pullOnly;
  return allowed || (user ? 'forbidden' : false);
}

describe('the registry UI under /ui in a host app with authorize', () => {
  const storage = new MemoryStorage();
  let server: Awaited<ReturnType<typeof listen>>;
  let prefixed: Awaited<ReturnType<typeof listen>>;
  const profiles: string[] = [];
  const browsers: BrowserContext[] = [];

  /** A page in a browser of its own, with the session cookie of `user`, or anonymous. */
  async function pageAs(user?: string, url = server.url): Promise<Page> {
    const profile = mkdtempSync(join(tmpdir(), 'oci-ui-access-'));
    profiles.push(profile);
    const browser = await launchBrowser(profile);
    if (user) await browser.addCookies([{ name: 'session', value: `${user}-session`, url }]);
    browsers.push(browser);
    const page = browser.pages()[0] ?? (await browser.newPage());
    page.setDefaultTimeout(10_000);
    return page;
  }

  const repositories = (page: Page) => page.$$eval('.repositories a', (links) => links.map((link) => link.textContent));

  /** Opens a tag's view and resolves to the texts of every delete button the page offers, in both views. */
  async function deleteButtons(page: Page, base: string, repository: string, tag: string): Promise<string[]> {
    await page.goto(`${base}/?repository=${repository}`);
    await page.waitForSelector('table.tags td:has-text("linux/amd64")');
    const inTags = await page.$$eval('main button.danger', (buttons) => buttons.map((button) => button.getAttribute('aria-label') ?? button.textContent));
    await page.click(`table.tags a:text-is("${tag}")`);
    await page.waitForSelector('#referrers');
    const inManifest = await page.$$eval('main button.danger', (buttons) => buttons.map((button) => button.textContent));
    return [...inTags, ...inManifest] as string[];
  }

  beforeAll(async () => {
    // Content goes in through a router of its own over the same storage, with no access control.
    const seed = supertest(makeApp(storage));
    for (const repository of ['public/tools', 'team/app', 'secret/keys']) await pushImage(seed, repository, makeImage(repository), 'v1');

    const registry = createRegistryRouter({ storage, authorize });
    const app = express();
    app.use(registry);
    app.use('/ui', createRegistryUi({ registry, title: 'Team images' }));
    app.use('/readonly', createRegistryUi({ registry, readOnly: true }));
    server = await listen(app);

    // A registry under a path prefix, serving no DELETE.
    const host = express();
    host.use('/registry', createRegistryRouter({ storage, deleteEnabled: false }));
    host.use('/ui', createRegistryUi({ registry: '/registry' }));
    prefixed = await listen(host);
  }, 60_000);

  afterAll(async () => {
    for (const browser of browsers) await browser.close();
    await server?.close();
    await prefixed?.close();
    for (const profile of profiles) rmSync(profile, { recursive: true, force: true });
  });

  it('alice sees only what she may pull, and no delete buttons', async () => {
    const page = await pageAs('alice');
    await page.goto(`${server.url}/ui`);
    // `/ui` redirects to `/ui/`, so the page's relative URLs resolve under the mount.
    expect(new URL(page.url()).pathname).toBe('/ui/');
    await page.waitForSelector('.repositories a');
    expect(await repositories(page)).toEqual(['public/tools', 'team/app']);
    expect(await page.title()).toBe('Team images');
    await expectFits(page, 'alice at 1280 px');
    await page.screenshot({ path: join(OUTPUT, 'ui-access-alice-1280.png'), fullPage: true });
    expect(await seriousViolations(page)).toEqual([]);
    expect(await deleteButtons(page, `${server.url}/ui`, 'team/app', 'v1')).toEqual([]);

    // A repository she may not pull shows the registry's refusal, nothing of its content.
    await page.goto(`${server.url}/ui/?repository=secret/keys`);
    await page.waitForSelector('[role=alert]');
    expect(await page.textContent('[role=alert]')).toMatch(/^DENIED: /);
    expect(await page.$('table.tags')).toBeNull();
  }, 60_000);

  it('an anonymous user sees public repositories only, and the delete probe asks for no login', async () => {
    const page = await pageAs();
    const probes: { status: number; challenge: string | undefined }[] = [];
    page.on('response', (response) => {
      if (response.request().method() === 'DELETE') probes.push({ status: response.status(), challenge: response.headers()['www-authenticate'] });
    });
    await page.goto(`${server.url}/ui/`);
    await page.waitForSelector('.repositories a');
    expect(await repositories(page)).toEqual(['public/tools']);
    expect(await deleteButtons(page, `${server.url}/ui`, 'public/tools', 'v1')).toEqual([]);
    expect(probes).toEqual([{ status: 401, challenge: undefined }]);
  }, 60_000);

  it('admin sees every repository and may delete; the read-only mount offers no delete', async () => {
    const page = await pageAs('admin');
    await page.goto(`${server.url}/ui/`);
    await page.waitForSelector('.repositories a');
    expect(await repositories(page)).toEqual(['public/tools', 'secret/keys', 'team/app']);
    expect(await deleteButtons(page, `${server.url}/ui`, 'secret/keys', 'v1')).toEqual(['Delete tag v1', 'Delete tag v1', 'Delete manifest']);
    expect(await deleteButtons(page, `${server.url}/readonly`, 'secret/keys', 'v1')).toEqual([]);
  }, 60_000);

  it('reaches a registry under a path prefix, and offers no delete when the registry serves none', async () => {
    const page = await pageAs(undefined, prefixed.url);
    await page.goto(`${prefixed.url}/ui/`);
    await page.waitForSelector('.repositories a');
    expect(await repositories(page)).toEqual(['public/tools', 'secret/keys', 'team/app']);
    expect(await deleteButtons(page, `${prefixed.url}/ui`, 'team/app', 'v1')).toEqual([]);
    await page.waitForSelector('h2:text-is("Layers (2, 38 B)")');
    const download = await page.getAttribute('a[aria-label="Download layer 1"]', 'href');
    expect(download).toMatch(/^\/registry\/v2\/team\/app\/blobs\/sha256:/);
  }, 60_000);
});
