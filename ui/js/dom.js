// Building blocks of every view: elements, formatting, copy buttons, the confirmation dialog and the status toast.

/** Creates an element with properties (`class`, `dataset`, attributes, handlers as `onclick`) and children. */
export function el(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') element.className = value;
    else if (key.startsWith('on')) element.addEventListener(key.slice(2), value);
    else if (key in element && key !== 'list') element[key] = value;
    else element.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

/** A size in bytes as people read it: `512 B`, `1.5 MiB`. */
export function formatSize(bytes) {
  if (typeof bytes !== 'number' || !Number.isFinite(bytes)) return '—';
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = -1;
  do {
    value /= 1024;
    unit++;
  } while (value >= 1024 && unit < units.length - 1);
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** A timestamp as a local date and time, with the exact value as its title; `—` when absent or unreadable. */
export function formatTime(value) {
  const date = value ? new Date(value) : undefined;
  if (!date || Number.isNaN(date.getTime())) return el('span', { class: 'muted' }, '—');
  return el('time', { dateTime: date.toISOString(), title: value }, date.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' }));
}

/** Whether a manifest reference is a digest (`algorithm:encoded`) rather than a tag. */
export function isDigest(reference) {
  return /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/.test(reference);
}

/** The first 12 hex digits of a digest, which is how people tell images apart. */
export function shortDigest(digest) {
  const [algorithm, hex = ''] = String(digest).split(':');
  return hex.length > 12 ? `${algorithm}:${hex.slice(0, 12)}…` : String(digest);
}

/** Copies text, with the clipboard API where the page is a secure context and a selected textarea elsewhere. */
async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const area = el('textarea', { value: text, readOnly: true, class: 'offscreen', 'aria-hidden': 'true' });
  document.body.append(area);
  area.select();
  const copied = document.execCommand('copy');
  area.remove();
  if (!copied) throw new Error('the browser refused to copy');
}

/** A button that copies `text`; `label` names what it copies for screen readers. */
export function copyButton(text, label) {
  return el(
    'button',
    {
      type: 'button',
      class: 'copy',
      title: `Copy ${label}`,
      'aria-label': `Copy ${label}`,
      onclick: () =>
        copyText(text).then(
          () => toast(`Copied ${label}`),
          (error) => toast(`Could not copy: ${error.message}`, true),
        ),
    },
    'Copy',
  );
}

/** A digest shortened, with its full value in the title and a copy button beside it. */
export function digestCell(digest, href) {
  const text = el('code', { title: digest }, shortDigest(digest));
  return el('span', { class: 'digest' }, href ? el('a', { href }, text) : text, copyButton(digest, `digest ${shortDigest(digest)}`));
}

/** A command line with its copy button. */
export function commandLine(command, label) {
  return el('div', { class: 'command' }, el('code', {}, command), copyButton(command, label));
}

let toastTimer;
/** Shows a short message in the page's live region. */
export function toast(message, failed = false) {
  const box = document.getElementById('toast');
  box.textContent = message;
  box.classList.toggle('failed', failed);
  box.classList.add('shown');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => box.classList.remove('shown'), 4000);
}

/** Asks in the modal dialog; resolves true when the user chooses Delete. */
export function confirmDelete(title, text) {
  const dialog = document.getElementById('confirm');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-text').textContent = text;
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'delete'), { once: true });
    dialog.showModal();
  });
}

/** A definition list from `[term, value]` pairs, leaving out pairs whose value is empty. */
export function facts(pairs, className = 'facts') {
  const list = el('dl', { class: className });
  for (const [term, value] of pairs) {
    if (value === undefined || value === null || value === '' || (Array.isArray(value) && value.length === 0)) continue;
    list.append(el('div', {}, el('dt', {}, term), el('dd', {}, value)));
  }
  return list;
}

/**
 * A table whose cells carry their column's name, so that on a narrow screen each row reads as a
 * card of labelled lines. `columns` are header texts; each row is an array of cell contents.
 */
export function table(caption, columns, rows, className = '') {
  const head = el('tr', {}, columns.map((column) => el('th', { scope: 'col' }, column)));
  const body = el(
    'tbody',
    {},
    rows.map((cells) => el('tr', {}, cells.map((cell, index) => el('td', { 'data-label': columns[index] }, cell)))),
  );
  return el('table', { class: `grid ${className}` }, el('caption', { class: 'offscreen' }, caption), el('thead', {}, head), body);
}

/** A message for a failed load: the registry's own error text. */
export function errorMessage(error) {
  return el('p', { class: 'error', role: 'alert' }, error.message);
}
