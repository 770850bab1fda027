// The tags view: one repository's tags a page at a time, each with its digest, size, created time and platforms.

import { deleteManifest, mayDelete, tagsPage } from './api.js';
import { confirmDelete, digestCell, el, errorMessage, formatSize, formatTime, table, toast } from './dom.js';
import { href } from './nav.js';
import { summarize } from './summary.js';

const PAGE = 50;
/** Tags described at once; each needs a few requests. */
const CONCURRENCY = 4;

/** Runs `work` on every item, at most `limit` at a time, stopping early once `keepGoing` says so. */
async function eachLimited(items, limit, keepGoing, work) {
  let next = 0;
  const worker = async () => {
    while (next < items.length && keepGoing()) await work(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

export async function renderTags({ main, params, isCurrent }) {
  const { repository } = params;
  const after = params.after ?? '';
  const earlier = Array.isArray(history.state?.earlier) ? history.state.earlier : [];
  const heading = el('h1', { tabIndex: -1 }, repository);
  const [page, deletable] = await Promise.all([tagsPage(repository, after, PAGE), mayDelete(repository)]);
  if (!isCurrent()) return;

  const status = el('div', { class: 'status' });
  if (page.tags.length === 0) {
    const text = after
      ? 'No more tags.'
      : `${repository} has no tags. Its manifests, if any, are reachable only by digest. Tag one with podman push ${location.host}/${repository}:TAG.`;
    main.replaceChildren(heading, el('p', { class: 'empty' }, text));
    return;
  }

  const columns = ['Tag', 'Digest', 'Size', 'Created', 'Platforms'];
  if (deletable) columns.push('Actions');
  const rows = page.tags.map((tag) => {
    const cells = [
      el('a', { href: href({ repository, reference: tag }), class: 'tag' }, tag),
      el('span', { class: 'muted' }, '…'),
      el('span', { class: 'muted' }, '…'),
      el('span', { class: 'muted' }, '…'),
      el('span', { class: 'muted' }, '…'),
    ];
    if (deletable) {
      cells.push(
        el('button', { type: 'button', class: 'danger small', 'aria-label': `Delete tag ${tag}`, onclick: (event) => deleteTag(event.currentTarget, tag) }, 'Delete'),
      );
    }
    return cells;
  });
  const grid = table(`Tags of ${repository}`, columns, rows, 'tags');
  const pager = el('nav', { class: 'pager', 'aria-label': 'Tag pages' });
  if (after) {
    pager.append(
      el('a', { href: href({ repository, after: earlier.at(-1) }), 'data-state': JSON.stringify({ earlier: earlier.slice(0, -1) }) }, earlier.length ? 'Previous page' : 'First page'),
    );
  }
  if (page.more) {
    pager.append(el('a', { href: href({ repository, after: page.tags.at(-1) }), 'data-state': JSON.stringify({ earlier: [...earlier, after] }), rel: 'next' }, 'Next page'));
  }
  main.replaceChildren(heading, status, grid, ...(pager.childElementCount ? [pager] : []));

  async function deleteTag(button, tag) {
    const sure = await confirmDelete(`Delete tag ${tag}?`, `The tag ${tag} goes from ${repository}. The manifest it points to stays, reachable by its digest.`);
    if (!sure) return;
    try {
      await deleteManifest(repository, tag);
      button.closest('tr').remove();
      toast(`Deleted tag ${tag}`);
      status.replaceChildren();
    } catch (error) {
      status.replaceChildren(errorMessage(error));
    }
  }

  const bodyRows = [...grid.tBodies[0].rows];
  await eachLimited(page.tags.map((tag, index) => [tag, bodyRows[index]]), CONCURRENCY, isCurrent, async ([tag, row]) => {
    const fill = (index, content) => row.cells[index].replaceChildren(content);
    try {
      const summary = await summarize(repository, tag);
      fill(1, digestCell(summary.digest, href({ repository, reference: summary.digest })));
      fill(2, el('span', {}, formatSize(summary.size)));
      fill(3, formatTime(summary.created));
      fill(4, platformsCell(summary));
    } catch (error) {
      fill(1, el('span', { class: 'error' }, error.message));
      for (const index of [2, 3, 4]) fill(index, el('span', { class: 'muted' }, '—'));
    }
  });
}

function platformsCell(summary) {
  if (summary.kind === 'artifact') return el('span', { class: 'badge' }, summary.artifactType ?? 'artifact');
  if (!summary.platforms.length) return el('span', { class: 'muted' }, '—');
  return el('ul', { class: 'platforms' }, summary.platforms.map((platform) => el('li', { class: 'badge' }, platform)));
}
