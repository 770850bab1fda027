// The page's shell: reads the view from the URL, renders it, keeps links in history so back, forward and reload work.

import { settings } from './api.js';
import { el, errorMessage, isDigest, shortDigest } from './dom.js';
import { renderManifest } from './manifest.js';
import { href, navigate } from './nav.js';
import { renderRepositories } from './repositories.js';
import { renderTags } from './tags.js';

const main = document.getElementById('main');
let generation = 0;

/** The breadcrumb trail and document title of the view `params` name, set before it loads, so a failed load shows where it failed. */
function showPlace({ repository, reference, platform }) {
  const items = [['Repositories', href({})]];
  if (repository) items.push([repository, href({ repository })]);
  if (repository && reference) items.push([isDigest(reference) ? shortDigest(reference) : reference, href({ repository, reference })]);
  if (repository && reference && platform) items.push([platform]);
  const list = document.getElementById('crumbs');
  list.replaceChildren(
    ...items.map(([text, link], index) =>
      el('li', {}, index === items.length - 1 ? el('span', { 'aria-current': 'page' }, text) : el('a', { href: link }, text)),
    ),
  );
  const place = items.slice(1).map(([text]) => text);
  document.title = place.length ? `${place.join(' › ')} · ${settings.title}` : settings.title;
}

/** Renders the view the URL names; a later navigation makes an earlier, slower render stop touching the page. */
async function render(moveFocus) {
  const current = ++generation;
  const params = Object.fromEntries(new URLSearchParams(location.search));
  const view = { main, params, isCurrent: () => current === generation };
  showPlace(params);
  main.replaceChildren(el('p', { class: 'muted' }, 'Loading…'));
  try {
    if (params.repository && params.reference) await renderManifest(view);
    else if (params.repository) await renderTags(view);
    else await renderRepositories(view);
  } catch (error) {
    if (view.isCurrent()) main.replaceChildren(el('h1', { tabIndex: -1 }, params.repository ?? 'Repositories'), errorMessage(error));
  }
  // After a click, focus goes to the new view's heading, where a screen reader or the Tab key carries on.
  if (moveFocus && view.isCurrent()) (main.querySelector('h1') ?? main).focus({ preventScroll: false });
}

// Links to the page's own views change the view in place instead of loading the page again.
document.addEventListener('click', (event) => {
  const link = event.target instanceof Element ? event.target.closest('a[href]') : null;
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  if (link.hasAttribute('download') || link.target) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || url.pathname !== location.pathname || url.hash) return;
  event.preventDefault();
  navigate(url.search || location.pathname, { state: link.dataset.state ? JSON.parse(link.dataset.state) : null });
});
window.addEventListener('popstate', () => void render(true));
window.addEventListener('ui:navigate', () => void render(true));

document.getElementById('links').replaceChildren(...settings.links.map((link) => el('a', { href: link.href }, link.text)));
void render(false);
