// The example's push form: files sent as one artifact through POST /api/artifacts (the multer bridge),
// each file's progress shown as it uploads; the pushed artifact then opens in the registry UI.

// The registry UI, mounted beside this page, lends its element and size helpers.
import { el, formatSize } from './js/dom.js';

const $ = (selector) => document.querySelector(selector);

/** Sends the form as one multipart request; each file's bar follows its share of the bytes sent. */
function pushArtifact(form) {
  const files = [...form.elements.files.files];
  const data = new FormData();
  // Text fields first: the server picks the repository before the first file arrives.
  for (const name of ['repository', 'tag', 'artifactType']) data.append(name, form.elements[name].value.trim());
  for (const file of files) data.append('files', file, file.name);

  const progressList = $('#upload-progress');
  const bars = files.map((file) => {
    const bar = el('progress', { max: Math.max(file.size, 1), value: 0 });
    const percent = el('span', {}, '0%');
    progressList.append(el('li', {}, el('span', { title: file.name }, `${file.name} (${formatSize(file.size)})`), bar, percent));
    return { bar, percent, size: Math.max(file.size, 1) };
  });
  const update = (sent) => {
    let offset = 0;
    for (const { bar, percent, size } of bars) {
      const done = Math.min(Math.max(sent - offset, 0), size);
      bar.value = done;
      percent.textContent = `${Math.floor((done / size) * 100)}%`;
      offset += size;
    }
  };

  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open('POST', '/api/artifacts');
    request.upload.addEventListener('progress', (event) => update(event.loaded));
    request.addEventListener('load', () => {
      let body;
      try {
        body = JSON.parse(request.responseText);
      } catch {
        body = undefined;
      }
      if (request.status === 201) {
        update(Number.POSITIVE_INFINITY);
        resolve(body);
        return;
      }
      const error = body?.errors?.[0];
      reject(new Error(error ? `${error.code}: ${typeof error.detail === 'string' ? error.detail : error.message}` : `HTTP ${request.status}`));
    });
    request.addEventListener('error', () => reject(new Error('the connection failed')));
    request.send(data);
  });
}

$('#upload-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const form = event.target;
  const message = $('#upload-message');
  const button = form.querySelector('button');
  $('#upload-progress').replaceChildren();
  $('#upload-progress').classList.remove('failed');
  message.className = '';
  message.textContent = 'Pushing…';
  button.disabled = true;
  try {
    const pushed = await pushArtifact(form);
    message.className = 'ok';
    const view = `./?${new URLSearchParams({ repository: pushed.repository, reference: pushed.tag })}`;
    message.replaceChildren(`Pushed ${pushed.repository}:${pushed.tag} (${pushed.digest}). `, el('a', { href: view }, 'Open it'));
  } catch (error) {
    // The bytes may all have been sent; the bars turn red so they do not read as success.
    $('#upload-progress').classList.add('failed');
    message.className = 'error';
    message.textContent = `Push failed: ${error.message}`;
  } finally {
    button.disabled = false;
  }
});

