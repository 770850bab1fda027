// The repositories view: the catalog filtered as you type, a page at a time, through a catalog of any size.

import { catalogPage } from './api.js';
import { el, errorMessage } from './dom.js';
import { href } from './nav.js';

const PAGE = 50;
/** Names asked of the catalog per request. */
const BATCH = 200;
/** Names scanned for one page of a filter before asking the user whether to search on. */
const SCAN_LIMIT = 5000;

/**
 * Up to one page of names after `after` that contain `filter`, walking the catalog in batches.
 * `next` is where the following page starts, or undefined at the catalog's end; `partial` says
 * the scan stopped at its limit before filling the page.
 */
async function findPage(filter, after, isCurrent) {
  const needle = filter.toLowerCase();
  const found = [];
  let cursor = after;
  let scanned = 0;
  for (;;) {
    const { repositories, more } = await catalogPage(cursor, BATCH);
    if (!isCurrent()) return undefined;
    for (const name of repositories) {
      scanned++;
      cursor = name;
      if (needle && !name.includes(needle)) continue;
      found.push(name);
      if (found.length > PAGE) return { names: found.slice(0, PAGE), next: found[PAGE - 1], partial: false };
    }
    if (!more || repositories.length === 0) return { names: found, next: undefined, partial: false };
    if (scanned >= SCAN_LIMIT) return { names: found, next: cursor, partial: true };
  }
}

export async function renderRepositories({ main, params, isCurrent }) {
  const filter = params.q ?? '';
  const after = params.after ?? '';
  // Cursors of the pages before this one, kept in history so "Previous" can go back to them.
  const earlier = Array.isArray(history.state?.earlier) ? history.state.earlier : [];

  const input = el('input', { type: 'search', id: 'filter', value: filter, autocomplete: 'off', spellcheck: false, placeholder: 'e.g. team/app' });
  const results = el('div', { id: 'repository-results', 'aria-live': 'polite' });
  main.replaceChildren(
    el('h1', { tabIndex: -1 }, 'Repositories'),
    el('div', { class: 'filter' }, el('label', { for: 'filter' }, 'Filter repositories'), input),
    results,
  );

  let pending;
  input.addEventListener('input', () => {
    clearTimeout(pending);
    pending = setTimeout(() => {
      // Typing refines the same view, so it replaces the history entry rather than adding one per key.
      history.replaceState(null, '', href({ q: input.value.trim() }));
      void list(input.value.trim(), '', []);
    }, 150);
  });

  async function list(needle, start, before) {
    const token = {};
    list.token = token;
    const current = () => isCurrent() && list.token === token;
    results.replaceChildren(el('p', { class: 'muted' }, 'Loading…'));
    let page;
    try {
      page = await findPage(needle, start, current);
    } catch (error) {
      if (current()) results.replaceChildren(errorMessage(error));
      return;
    }
    if (!page || !current()) return;
    const items = page.names.map((name) => el('li', {}, el('a', { href: href({ repository: name }) }, name)));
    const parts = [];
    if (items.length) {
      const range = `${items.length} ${items.length === 1 ? 'repository' : 'repositories'}${needle ? ` containing “${needle}”` : ''}${start ? ` after ${start}` : ''}`;
      parts.push(el('p', { class: 'muted count' }, range), el('ul', { class: 'repositories' }, items));
    }
    else if (page.partial) parts.push(el('p', { class: 'muted' }, `No match among the first ${SCAN_LIMIT} names searched.`));
    else if (needle) parts.push(el('p', { class: 'empty' }, `No repository ${start ? 'further on ' : ''}contains “${needle}”.`));
    else if (start) parts.push(el('p', { class: 'empty' }, 'No more repositories.'));
    else parts.push(el('p', { class: 'empty' }, `This registry holds no repository you may see yet. Push one with podman push ${location.host}/NAME:TAG.`));

    const pager = el('nav', { class: 'pager', 'aria-label': 'Repository pages' });
    if (start) {
      const previous = before.at(-1) ?? '';
      pager.append(
        el('a', { href: href({ q: needle, after: previous }), 'data-state': JSON.stringify({ earlier: before.slice(0, -1) }) }, before.length ? 'Previous page' : 'First page'),
      );
    }
    if (page.next !== undefined) {
      pager.append(
        el('a', { href: href({ q: needle, after: page.next }), 'data-state': JSON.stringify({ earlier: [...before, start] }), rel: 'next' }, page.partial ? 'Search further' : 'Next page'),
      );
    }
    if (pager.childElementCount) parts.push(pager);
    results.replaceChildren(...parts);
  }

  await list(filter, after, earlier);
}
