// The manifest view: an index's platforms, an image's config, history and layers, an artifact's files, and referrers of each.

import { blobUrl, deleteManifest, getConfig, getManifest, getReferrers, mayDelete } from './api.js';
import { commandLine, confirmDelete, digestCell, el, errorMessage, facts, formatSize, formatTime, isDigest, shortDigest, table, toast } from './dom.js';
import { href, navigate } from './nav.js';
import { isAttestation, kindOf, platformName, summarize, totalSize } from './summary.js';

const TITLE = 'org.opencontainers.image.title';
const REFERENCE_DIGEST = 'vnd.docker.reference.digest';

export async function renderManifest({ main, params, isCurrent }) {
  const { repository, reference, platform } = params;
  const top = await getManifest(repository, reference);
  let shown = top;
  if (platform) {
    // A platform of an index: the URL keeps the tag, so the link follows the tag to wherever it moves.
    const children = top.manifest.manifests ?? [];
    const child = children.find((entry) => !isAttestation(entry) && platformName(entry.platform) === platform);
    if (!child) throw new Error(`${repository}:${reference} has no image for ${platform}`);
    shown = await getManifest(repository, child.digest);
  }
  if (!isCurrent()) return;

  const name = isDigest(reference) ? `${repository}@${shortDigest(reference)}` : `${repository}:${reference}`;
  const kind = kindOf(shown.manifest);
  const kindText = { index: 'Multi-platform index', image: 'Image', artifact: 'Artifact' }[kind];
  const [summary, deletable] = await Promise.all([summarize(repository, shown.digest, shown).catch(() => undefined), mayDelete(repository)]);
  if (!isCurrent()) return;

  const sections = [
    el('h1', { tabIndex: -1 }, name, platform ? el('span', { class: 'badge' }, platform) : null),
    overview(repository, shown, kindText, summary),
    pullCommands(repository, reference, shown.digest, platform),
  ];
  if (deletable) sections.push(deleteActions(repository, reference, shown.digest, platform));

  if (kind === 'index') sections.push(platformsSection(repository, reference, shown.manifest));
  if (kind === 'image') sections.push(...(await imageSections(repository, shown.manifest)));
  if (kind === 'artifact') sections.push(filesSection(repository, shown.manifest));
  if (shown.manifest.annotations && Object.keys(shown.manifest.annotations).length) {
    sections.push(el('section', {}, el('h2', {}, 'Annotations'), annotations(shown.manifest.annotations)));
  }
  sections.push(await referrersSection(repository, shown.digest));
  if (!isCurrent()) return;
  main.replaceChildren(...sections);
}

function overview(repository, shown, kindText, summary) {
  const subject = shown.manifest.subject;
  return facts([
    ['Kind', kindText],
    ['Digest', digestCell(shown.digest)],
    ['Media type', el('code', {}, shown.mediaType)],
    ['Artifact type', shown.manifest.artifactType ? el('code', {}, shown.manifest.artifactType) : undefined],
    ['Size', summary?.size !== undefined ? `${formatSize(summary.size)} (manifest ${formatSize(shown.size)})` : formatSize(shown.size)],
    ['Created', summary?.created ? formatTime(summary.created) : undefined],
    ['Platforms', summary?.platforms.length ? summary.platforms.join(', ') : undefined],
    ['Subject', subject ? el('a', { href: href({ repository, reference: subject.digest }) }, `${shortDigest(subject.digest)} (open)`) : undefined],
  ]);
}

/** `podman pull` and `docker pull` with the host the page came from; a platform of an index is pulled by its own digest. */
function pullCommands(repository, reference, digest, platform) {
  const target = platform || isDigest(reference) ? `${location.host}/${repository}@${digest}` : `${location.host}/${repository}:${reference}`;
  return el(
    'section',
    { class: 'pull', 'aria-label': 'Pull commands' },
    commandLine(`podman pull ${target}`, 'podman pull command'),
    commandLine(`docker pull ${target}`, 'docker pull command'),
  );
}

function deleteActions(repository, reference, digest, platform) {
  const status = el('div', { class: 'status' });
  const run = async (title, text, target, after) => {
    if (!(await confirmDelete(title, text))) return;
    try {
      await deleteManifest(repository, target);
      toast(`Deleted ${target === digest ? shortDigest(digest) : target}`);
      navigate(after, { replace: true });
    } catch (error) {
      status.replaceChildren(errorMessage(error));
    }
  };
  const buttons = [];
  if (!isDigest(reference) && !platform) {
    buttons.push(
      el(
        'button',
        {
          type: 'button',
          class: 'danger',
          onclick: () => run(`Delete tag ${reference}?`, `The tag ${reference} goes from ${repository}. The manifest stays, reachable by its digest.`, reference, href({ repository })),
        },
        `Delete tag ${reference}`,
      ),
    );
  }
  buttons.push(
    el(
      'button',
      {
        type: 'button',
        class: 'danger',
        onclick: () =>
          run(
            `Delete manifest ${shortDigest(digest)}?`,
            `The manifest ${digest} goes from ${repository}, with every tag that points to it. Pulls of it fail from then on.`,
            digest,
            href({ repository }),
          ),
      },
      'Delete manifest',
    ),
  );
  return el('section', { class: 'actions', 'aria-label': 'Delete' }, ...buttons, status);
}

function platformsSection(repository, reference, index) {
  const entries = index.manifests;
  const counts = new Map();
  for (const entry of entries) if (!isAttestation(entry)) counts.set(platformName(entry.platform), (counts.get(platformName(entry.platform)) ?? 0) + 1);
  const rows = entries.map((entry) => {
    const name = platformName(entry.platform);
    const attestation = isAttestation(entry);
    // A platform named once opens by name (the URL stays valid when the tag moves); otherwise by digest.
    const link = !attestation && name && counts.get(name) === 1 ? href({ repository, reference, platform: name }) : href({ repository, reference: entry.digest });
    const label = attestation ? `attestation of ${shortDigest(entry.annotations?.[REFERENCE_DIGEST] ?? '')}` : name || 'unnamed platform';
    return [el('a', { href: link, class: 'platform' }, label), digestCell(entry.digest), formatSize(entry.size), el('code', {}, entry.mediaType)];
  });
  return el('section', {}, el('h2', {}, `Platforms (${entries.filter((entry) => !isAttestation(entry)).length})`), table('Platforms', ['Platform', 'Digest', 'Manifest size', 'Media type'], rows));
}

/** The command an image runs, as one line; JSON arrays are joined with spaces. */
function commandText(value) {
  if (!value) return undefined;
  return el('code', {}, Array.isArray(value) ? value.join(' ') : String(value));
}

async function imageSections(repository, manifest) {
  const config = await getConfig(repository, manifest.config).catch((error) => error);
  const sections = [];
  if (config instanceof Error) {
    sections.push(el('section', {}, el('h2', {}, 'Configuration'), errorMessage(config)));
  } else if (config) {
    const run = config.config ?? {};
    const env = (run.Env ?? []).map((line) => el('li', {}, el('code', {}, line)));
    sections.push(
      el(
        'section',
        {},
        el('h2', {}, 'Configuration'),
        facts([
          ['Platform', platformName(config)],
          ['Created', config.created ? formatTime(config.created) : undefined],
          ['Author', config.author],
          ['Entrypoint', commandText(run.Entrypoint)],
          ['Command', commandText(run.Cmd)],
          ['Working directory', run.WorkingDir ? el('code', {}, run.WorkingDir) : undefined],
          ['User', run.User ? el('code', {}, run.User) : undefined],
          ['Exposed ports', run.ExposedPorts ? Object.keys(run.ExposedPorts).join(', ') : undefined],
          ['Stop signal', run.StopSignal],
          ['Environment', env.length ? el('ul', { class: 'plain' }, env) : undefined],
          ['Config blob', el('a', { href: blobUrl(repository, manifest.config.digest), download: `config-${manifest.config.digest.replace(':', '-')}.json` }, `download (${formatSize(manifest.config.size)})`)],
        ]),
        run.Labels && Object.keys(run.Labels).length ? el('div', {}, el('h3', {}, 'Labels'), annotations(run.Labels)) : null,
      ),
    );
    if (Array.isArray(config.history) && config.history.length) sections.push(historySection(config.history, manifest.layers ?? []));
  }
  sections.push(layersSection(repository, manifest.layers ?? []));
  return sections;
}

/** Build steps, each matched with the layer it made: entries not marked `empty_layer` take the layers in order. */
function historySection(history, layers) {
  let layerIndex = 0;
  const dated = history.some((step) => step.created);
  const rows = history.map((step) => {
    const layer = step.empty_layer ? undefined : layers[layerIndex++];
    const cells = [el('code', { class: 'step' }, step.created_by ?? step.comment ?? '—'), layer ? formatSize(layer.size) : el('span', { class: 'muted' }, 'no layer')];
    return dated ? [formatTime(step.created), ...cells] : cells;
  });
  const columns = dated ? ['Created', 'Step', 'Layer size'] : ['Step', 'Layer size'];
  return el('section', {}, el('h2', {}, `History (${history.length} ${history.length === 1 ? 'step' : 'steps'})`), table('History', columns, rows, 'history'));
}

function layersSection(repository, layers) {
  const rows = layers.map((layer, index) => [
    String(index + 1),
    el('code', {}, layer.mediaType),
    formatSize(layer.size),
    digestCell(layer.digest),
    el('a', { href: blobUrl(repository, layer.digest), download: layer.annotations?.[TITLE] ?? `layer-${index + 1}-${layer.digest.replace(':', '-')}`, 'aria-label': `Download layer ${index + 1}` }, 'Download'),
  ]);
  return el('section', {}, el('h2', {}, `Layers (${layers.length}, ${formatSize(totalSize(layers))})`), table('Layers', ['#', 'Media type', 'Size', 'Digest', 'Download'], rows, 'layers'));
}

function filesSection(repository, manifest) {
  const layers = manifest.layers ?? [];
  const rows = layers.map((layer, index) => {
    const title = layer.annotations?.[TITLE];
    return [
      title ? el('span', { class: 'file' }, title) : el('span', { class: 'muted' }, `blob ${index + 1}`),
      el('code', {}, layer.mediaType),
      formatSize(layer.size),
      digestCell(layer.digest),
      el('a', { href: blobUrl(repository, layer.digest), download: title ?? layer.digest.replace(':', '-'), 'aria-label': `Download ${title ?? `blob ${index + 1}`}` }, 'Download'),
    ];
  });
  const config = manifest.config;
  return el(
    'section',
    {},
    el('h2', {}, `Files (${layers.length}, ${formatSize(totalSize(layers))})`),
    layers.length ? table('Files', ['Name', 'Media type', 'Size', 'Digest', 'Download'], rows, 'files') : el('p', { class: 'empty' }, 'This artifact holds no files.'),
    config ? facts([['Config', el('span', {}, el('code', {}, config.mediaType), ` (${formatSize(config.size)})`)]]) : null,
  );
}

function annotations(values) {
  return facts(
    Object.entries(values).map(([key, value]) => [key, el('span', { class: 'value' }, String(value))]),
    'facts annotations',
  );
}

async function referrersSection(repository, digest) {
  const heading = el('h2', {}, 'Referrers');
  let referrers;
  try {
    referrers = await getReferrers(repository, digest);
  } catch (error) {
    return el('section', { id: 'referrers' }, heading, errorMessage(error));
  }
  heading.textContent = `Referrers (${referrers.length})`;
  if (!referrers.length) return el('section', { id: 'referrers' }, heading, el('p', { class: 'empty' }, 'No signatures, SBOMs or attestations refer to this manifest.'));
  const rows = referrers.map((referrer) => [
    el('a', { href: href({ repository, reference: referrer.digest }) }, el('code', {}, referrer.artifactType ?? referrer.mediaType)),
    digestCell(referrer.digest),
    formatSize(referrer.size),
    referrer.annotations && Object.keys(referrer.annotations).length ? annotations(referrer.annotations) : el('span', { class: 'muted' }, '—'),
  ]);
  return el('section', { id: 'referrers' }, heading, table('Referrers', ['Artifact type', 'Digest', 'Size', 'Annotations'], rows, 'referrers'));
}
