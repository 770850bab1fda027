/**
 * The example registry as an Express app: the registry app of the package (the router under
 * `/v2`), the registry UI at `/`, a push form at `/push.html` whose `POST /api/artifacts` turns files into an OCI artifact through
 * the multer bridge, `GET /api/usage?repository=<name>` (a repository's storage usage under its
 * quota), and the operator's endpoints `/metrics`, `/healthz` and `/readyz`.
 * `server.ts` runs it; tests build it over their own storage.
 */
import express, { type NextFunction, type Request, type Response } from 'express';
import multer from 'multer';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import {
  multerStorage,
  OCI_MANIFEST,
  RegistryError,
  sendError,
  type RegistryFileInfo,
  type RegistryRouter,
  validateTag,
} from '../lib';
import { registryMetrics, type RegistryMetrics } from '../lib/metrics';
import { createRegistryApp, type RegistryAppOptions } from '../lib/server';
import { createRegistryUi } from '../lib/ui';

/** The empty config of an artifact manifest, as `oras push` writes it. */
const EMPTY_CONFIG = { mediaType: 'application/vnd.oci.empty.v1+json', bytes: Buffer.from('{}') };
/** The artifact type when the form names none. */
const DEFAULT_ARTIFACT_TYPE = 'application/vnd.unknown.artifact.v1';
const TITLE = 'org.opencontainers.image.title';

/** The form's text fields; the page sends them before the files, so multer has them when a file arrives. */
interface ArtifactForm {
  repository?: string;
  tag?: string;
  artifactType?: string;
}

/** The push form's files: `examples/public`, beside this file in the sources and two levels up from `dist/examples`. */
function publicDirectory(): string {
  const beside = join(__dirname, 'public');
  return existsSync(beside) ? beside : join(__dirname, '..', '..', 'examples', 'public');
}

/** Builds the example app, its registry router and the router's metrics (in a prom-client registry of their own). */
export function createExampleApp(options: RegistryAppOptions): { app: express.Express; registry: RegistryRouter; metrics: RegistryMetrics } {
  const { app, registry } = createRegistryApp(options);
  return { app, registry, ...addExampleRoutes(app, registry) };
}

/** Adds the operator's endpoints, the registry UI, the push form and its `POST /api/artifacts` to an app that serves `registry`. */
export function addExampleRoutes(app: express.Express, registry: RegistryRouter): { metrics: RegistryMetrics } {
  const metrics = registryMetrics(registry, { registry: new Registry() });

  const upload = multer({
    storage: multerStorage(registry, {
      // Checking the tag here, before the first file is stored, keeps a bad tag from leaving blobs behind.
      repository: (req) => {
        const form = req.body as ArtifactForm;
        validateTag(form.tag || 'latest');
        return form.repository ?? '';
      },
    }),
    limits: { files: 100, fields: 10 },
  });

  app.get('/metrics', metrics.handler);
  // Liveness: the process answers. Readiness: its storage answers too.
  app.get('/healthz', (_req: Request, res: Response) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', (_req: Request, res: Response) => {
    registry.health().then(
      () => res.json({ status: 'ready', readOnly: registry.isReadOnly() }),
      (error: unknown) => res.status(503).json({ status: 'unavailable', reason: (error as Error).message }),
    );
  });
  app.post('/api/artifacts', refuseWhenReadOnly(registry), upload.array('files'), (req: Request, res: Response, next: NextFunction) => {
    pushArtifact(registry, req.body as ArtifactForm, (req.files ?? []) as (Express.Multer.File & RegistryFileInfo)[]).then(
      (pushed) => res.status(201).json(pushed),
      next,
    );
  });
  app.get('/api/usage', (req: Request, res: Response, next: NextFunction) => {
    registry.usage(String(req.query.repository ?? '')).then((usage) => res.json(usage), next);
  });
  app.use(createRegistryUi({ registry, title: 'express-oci-registry', links: [{ href: 'push.html', text: 'Push an artifact' }] }));
  app.use(express.static(publicDirectory()));
  app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => sendError(res, asRegistryError(error)));
  return { metrics };
}

/** The form upload writes too, so read-only mode refuses it as the registry's own routes do. */
function refuseWhenReadOnly(registry: RegistryRouter) {
  return (_req: Request, _res: Response, next: NextFunction) => {
    next(registry.isReadOnly() ? new RegistryError('UNSUPPORTED', 'the registry is read-only for now: uploads are refused until writes are enabled again') : undefined);
  };
}

/**
 * Pushes the uploaded files as an OCI artifact: an empty config and one layer per file, titled
 * with its file name, the same manifest `oras push` makes, tagged as the form says.
 */
async function pushArtifact(registry: RegistryRouter, form: ArtifactForm, files: (Express.Multer.File & RegistryFileInfo)[]) {
  if (files.length === 0) throw new RegistryError('MANIFEST_INVALID', 'choose at least one file');
  const repository = files[0].repository;
  const tag = validateTag(form.tag || 'latest');
  const config = await registry.store.putBlob(repository, EMPTY_CONFIG.bytes);
  const manifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: form.artifactType || DEFAULT_ARTIFACT_TYPE,
    config: { mediaType: EMPTY_CONFIG.mediaType, digest: config.digest.value, size: config.size, data: EMPTY_CONFIG.bytes.toString('base64') },
    layers: files.map((file) => ({ mediaType: file.mediaType, digest: file.digest, size: file.size, annotations: { [TITLE]: file.originalname } })),
    annotations: { 'org.opencontainers.image.created': new Date().toISOString() },
  };
  const { digest } = await registry.store.manifests.put(repository, { tag }, Buffer.from(JSON.stringify(manifest)), OCI_MANIFEST);
  return { repository, tag, digest: digest.value, manifest };
}

/** multer's own errors (limits, malformed forms) in the registry's error format. */
function asRegistryError(error: unknown): unknown {
  if (!(error instanceof multer.MulterError)) return error;
  if (error.code === 'LIMIT_FILE_SIZE') return new RegistryError('SIZE_INVALID', error.message, { status: 413 });
  return new RegistryError('BLOB_UPLOAD_INVALID', `${error.message}${error.field ? ` (${error.field})` : ''}`);
}
