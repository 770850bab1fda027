/**
 * Headless Chromium for the browser specs: the launch every spec shares, the screenshot folder,
 * and the two checks each view of a page must pass (no sideways overflow; axe-core).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { chromium, type BrowserContext, type BrowserContextOptions, type Page } from 'playwright-core';

/** Where screenshots go (gitignored). */
export const OUTPUT = resolve(__dirname, '../../test-output');

/** Debian's chromium, headless, offline apart from loopback, with a profile of its own in `profileDir`. */
export function launchBrowser(profileDir: string, options: BrowserContextOptions = {}): Promise<BrowserContext> {
  return chromium.launchPersistentContext(profileDir, {
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    acceptDownloads: true,
    viewport: { width: 1280, height: 900 },
    ...options,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

/**
 * Asserts the page scrolls nowhere sideways: the document is no wider than the viewport and no
 * visible element reaches past its right edge.
 */
export async function expectFits(page: Page, what: string): Promise<void> {
  const fit = await page.evaluate(() => {
    // This runs in the page; the spec project has no DOM types, so it names what it uses.
    interface PageElement {
      tagName: string;
      id: string;
      classList: Iterable<string>;
      parentElement: PageElement | null;
      getBoundingClientRect(): { left: number; right: number; width: number; height: number };
    }
    const { document, getComputedStyle } = globalThis as unknown as {
      document: { documentElement: { clientWidth: number; scrollWidth: number }; body: { querySelectorAll(selector: string): Iterable<PageElement> } };
      getComputedStyle(element: PageElement): { clipPath: string };
    };
    // Content clipped away for screen readers only (a visually hidden table head) is never seen.
    const clipped = (element: PageElement | null): boolean => element !== null && (getComputedStyle(element).clipPath !== 'none' || clipped(element.parentElement));
    const root = document.documentElement;
    const width = root.clientWidth;
    const wide: string[] = [];
    for (const element of document.body.querySelectorAll('*')) {
      const box = element.getBoundingClientRect();
      if (box.width === 0 || box.height === 0 || clipped(element)) continue;
      if (box.right > width + 0.5 || box.left < -0.5) {
        wide.push(`${element.tagName.toLowerCase()}${element.id ? `#${element.id}` : ''}.${[...element.classList].join('.')} ${Math.round(box.left)}..${Math.round(box.right)}`);
      }
    }
    return { scrollWidth: root.scrollWidth, clientWidth: width, wide: wide.slice(0, 10) };
  });
  expect({ what, ...fit, fits: fit.scrollWidth <= fit.clientWidth }).toEqual({ what, ...fit, fits: true, wide: [] });
}

const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

/** axe-core's serious and critical violations on the page as it stands, one line each. */
export async function seriousViolations(page: Page): Promise<string[]> {
  if (!(await page.evaluate(() => 'axe' in globalThis))) await page.addScriptTag({ content: AXE });
  return page.evaluate(async () => {
    const { axe, document } = globalThis as unknown as {
      document: unknown;
      axe: { run: (context: unknown) => Promise<{ violations: { id: string; impact: string; nodes: { target: string[] }[] }[] }> };
    };
    const { violations } = await axe.run(document);
    return violations
      .filter((violation) => violation.impact === 'serious' || violation.impact === 'critical')
      .map((violation) => `${violation.id} (${violation.impact}): ${violation.nodes.map((node) => node.target.join(' ')).join(', ')}`);
  });
}
