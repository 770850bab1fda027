// The example registry's page: browse repositories → tags → a manifest through the registry's own
// /v2 API, and push files as an artifact through POST /api/artifacts (the multer bridge).

const MANIFEST_TYPES = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');
const TITLE = 'org.opencontainers.image.title';

const $ = (selector) => document.querySelector(selector);
const selection = { repository: undefined, tag: undefined };

/** Creates an element with text or children. */
function el(tag, props = {}, ...children) {
  const element = Object.assign(document.createElement(tag), props);
  for (const child of children) element.append(child instanceof Node ? child : String(child));
  return element;
}

function formatSize(bytes) {
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

/** The message of a registry error body, `CODE: detail`, or the HTTP status. */
async function errorText(response) {
  try {
    const [error] = (await response.json()).errors;
    return `${error.code}: ${typeof error.detail === 'string' ? error.detail : error.message}`;
  } catch {
    return `HTTP ${response.status} ${response.statusText}`;
  }
}

async function getJson(url, headers = {}) {
  const response = await fetch(url, { headers });
  if (!response.ok) throw new Error(await errorText(response));
  return { body: await response.json(), headers: response.headers };
}

function listInto(list, items, onChoose, selected) {
  list.replaceChildren();
  if (items.length === 0) list.append(el('li', { className: 'empty', textContent: 'Nothing yet.' }));
  for (const item of items) {
    const button = el('button', { type: 'button', className: item === selected ? 'selected' : '' }, item);
    button.addEventListener('click', () => onChoose(item));
    list.append(el('li', {}, button));
  }
}

function showError(container, error) {
  container.replaceChildren(el('p', { className: 'empty' }, `Could not load: ${error.message}`));
}

async function loadRepositories() {
  const list = $('#repositories');
  try {
    const { body } = await getJson('/v2/_catalog?n=1000');
    listInto(list, body.repositories, chooseRepository, selection.repository);
  } catch (error) {
    showError(list, error);
  }
}

async function chooseRepository(repository) {
  selection.repository = repository;
  selection.tag = undefined;
  $('#tags-of').textContent = repository;
  for (const button of document.querySelectorAll('#repositories button')) button.classList.toggle('selected', button.textContent === repository);
  $('#manifest').replaceChildren(el('p', { className: 'empty' }, 'Choose a tag.'));
  const list = $('#tags');
  try {
    const { body } = await getJson(`/v2/${repository}/tags/list`);
    listInto(list, body.tags ?? [], (tag) => showManifest(repository, tag), selection.tag);
  } catch (error) {
    showError(list, error);
  }
}

function blobLink(repository, digest, name) {
  return el('a', { href: `/v2/${repository}/blobs/${digest}`, download: name || digest.replace(':', '-') }, 'download');
}

/**
 * A table of descriptors. Blobs (`link: 'download'`) get download links; manifests (`link: 'open'`)
 * open in the manifest view. An artifact type column appears when any descriptor has one.
 */
function descriptorTable(repository, descriptors, link) {
  const withArtifactType = descriptors.some((descriptor) => descriptor.artifactType);
  const head = el('tr', {}, el('th', {}, 'title'), el('th', {}, 'media type'));
  if (withArtifactType) head.append(el('th', {}, 'artifact type'));
  head.append(el('th', {}, 'size'), el('th', {}, 'digest'), el('th', {}, ''));
  const table = el('table', {}, el('thead', {}, head));
  const body = el('tbody');
  for (const descriptor of descriptors) {
    const title = descriptor.annotations?.[TITLE] ?? '';
    const row = el('tr', {}, el('td', {}, title), el('td', {}, el('code', {}, descriptor.mediaType)));
    if (withArtifactType) row.append(el('td', {}, el('code', {}, descriptor.artifactType ?? '')));
    row.append(el('td', { className: 'nowrap' }, formatSize(descriptor.size)), el('td', {}, el('code', { title: descriptor.digest }, `${descriptor.digest.slice(0, 19)}…`)));
    if (link === 'download') {
      row.append(el('td', { className: 'nowrap' }, blobLink(repository, descriptor.digest, title)));
    } else {
      const open = el('a', { href: '#', className: 'open' }, 'open');
      open.addEventListener('click', (event) => {
        event.preventDefault();
        showManifest(repository, descriptor.digest);
      });
      row.append(el('td', { className: 'nowrap' }, open));
    }
    body.append(row);
  }
  table.append(body);
  return table;
}

function annotationList(annotations) {
  const list = el('dl');
  for (const [key, value] of Object.entries(annotations ?? {})) list.append(el('dt', {}, key), el('dd', {}, value));
  return list;
}

async function showManifest(repository, reference) {
  selection.tag = reference;
  for (const button of document.querySelectorAll('#tags button')) button.classList.toggle('selected', button.textContent === reference);
  const container = $('#manifest');
  try {
    const { body: manifest, headers } = await getJson(`/v2/${repository}/manifests/${reference}`, { Accept: MANIFEST_TYPES });
    const digest = headers.get('Docker-Content-Digest');
    const parts = [
      el(
        'dl',
        {},
        el('dt', {}, 'reference'),
        el('dd', {}, `${repository}:${reference}`),
        el('dt', {}, 'digest'),
        el('dd', {}, el('code', {}, digest)),
        el('dt', {}, 'media type'),
        el('dd', {}, el('code', {}, manifest.mediaType ?? headers.get('Content-Type'))),
        el('dt', {}, 'artifact type'),
        el('dd', {}, manifest.artifactType ?? '—'),
      ),
    ];
    if (manifest.subject) {
      const subject = el('a', { href: '#', className: 'open' }, el('code', {}, manifest.subject.digest));
      subject.addEventListener('click', (event) => {
        event.preventDefault();
        showManifest(repository, manifest.subject.digest);
      });
      parts[0].append(el('dt', {}, 'subject'), el('dd', {}, subject));
    }
    if (manifest.config) {
      parts.push(el('h3', {}, 'Config'), descriptorTable(repository, [manifest.config], 'download'));
    }
    if (manifest.layers) {
      parts.push(el('h3', {}, `Layers (${manifest.layers.length}, ${formatSize(manifest.layers.reduce((sum, layer) => sum + layer.size, 0))})`));
      parts.push(descriptorTable(repository, manifest.layers, 'download'));
    }
    if (manifest.manifests) {
      parts.push(el('h3', {}, 'Manifests'), descriptorTable(repository, manifest.manifests, 'open'));
    }
    if (manifest.annotations) parts.push(el('h3', {}, 'Annotations'), annotationList(manifest.annotations));
    const { body: referrers } = await getJson(`/v2/${repository}/referrers/${digest}`);
    parts.push(el('h3', {}, 'Referrers'));
    parts.push(referrers.manifests.length ? descriptorTable(repository, referrers.manifests, 'open') : el('p', { className: 'empty' }, 'None.'));
    container.replaceChildren(...parts);
  } catch (error) {
    showError(container, error);
  }
}

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
    message.textContent = `Pushed ${pushed.repository}:${pushed.tag} (${pushed.digest.slice(0, 19)}…)`;
    selection.repository = pushed.repository;
    await loadRepositories();
    await chooseRepository(pushed.repository);
    await showManifest(pushed.repository, pushed.tag);
  } catch (error) {
    // The bytes may all have been sent; the bars turn red so they do not read as success.
    $('#upload-progress').classList.add('failed');
    message.className = 'error';
    message.textContent = `Push failed: ${error.message}`;
  } finally {
    button.disabled = false;
  }
});

loadRepositories();
