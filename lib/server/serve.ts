/** A registry server from settings: its storage (a folder or an S3 bucket), htpasswd sign-in, listening and shutdown; the `serve` command and the example server both run it. */
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { resolve } from 'node:path';
import type express from 'express';
import { basicChallenge } from '../access';
import type { RegistryOptions, RegistryRouter } from '../router';
import type { StorageAdapter } from '../storage/adapter';
import { FileSystemStorage } from '../storage/fs';
import type { S3StorageOptions } from '../storage/s3';
import { createRegistryApp } from './app';
import { htpasswdAuthorize } from './htpasswd';

/** What {@link startRegistryServer} serves, and where. */
export interface ServeSettings {
  /** The folder `FileSystemStorage` keeps everything in, when `s3` is not set. Default `./registry-data`. */
  root?: string;
  /** Read large blobs from `root` past the page cache (`FileSystemStorage`'s `directReads`). Default false. */
  directReads?: boolean;
  /** Keep everything in an S3 bucket instead (needs `@aws-sdk/client-s3`); see `S3StorageOptions`. */
  s3?: S3StorageOptions;
  /** TCP port; 0 picks a free one. Default 5000. */
  port?: number;
  /** Address to listen on. Default `127.0.0.1`. */
  host?: string;
  /** An htpasswd file of bcrypt entries: its users may do everything, everyone else gets 401 (needs `bcryptjs`). Default: no sign-in. */
  htpasswd?: string;
  /** Start read-only: every write gets 405 `UNSUPPORTED`, reads go on (`registry.setReadOnly` switches it). Default false. */
  readOnly?: boolean;
  /** Where the listening line and every registry event are written; default: nowhere. */
  log?: (line: string) => void;
  /** Whether registry events are written to `log` too. Default true. */
  logEvents?: boolean;
  /** Further router options (the example server's `allowSparseManifests`). */
  registry?: Omit<RegistryOptions, 'storage' | 'authorize' | 'challenge'>;
  /** Adds host routes after the registry (the example server's page and form). */
  routes?: (app: express.Express, registry: RegistryRouter) => void;
}

/** A listening registry server. */
export interface RegistryServer {
  /** `http://<host>:<port>`, with the port actually bound. */
  readonly url: string;
  readonly server: Server;
  readonly registry: RegistryRouter;
  /** Stops listening, ends every open connection, then closes the router (its timers and deliveries). */
  close(): Promise<void>;
}

/** Builds the storage, the sign-in and the app that `settings` describe, and listens. */
export async function startRegistryServer(settings: ServeSettings = {}): Promise<RegistryServer> {
  // Every fsync and file operation holds one of libuv's threads (4 by default) until it returns, so
  // concurrent uploads would queue behind each other. Takes effect only before the first one runs.
  process.env.UV_THREADPOOL_SIZE ??= '32';
  const log = settings.log ?? (() => undefined);
  const authorize = settings.htpasswd ? htpasswdAuthorize(readFileSync(settings.htpasswd, 'utf8')) : undefined;
  const { storage, where } = await openStorage(settings);
  const { app, registry } = createRegistryApp({
    ...settings.registry,
    storage,
    ...(authorize && { authorize, challenge: basicChallenge('express-oci-registry') }),
    readOnly: settings.readOnly ?? settings.registry?.readOnly,
    logEvent: settings.logEvents === false ? undefined : log,
  });
  settings.routes?.(app, registry);

  const host = settings.host ?? '127.0.0.1';
  const server = await new Promise<Server>((resolveListen, rejectListen) => {
    const listening = app.listen(settings.port ?? 5000, host, () => resolveListen(listening));
    listening.once('error', rejectListen);
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  const modes = [where, settings.htpasswd && `users from ${settings.htpasswd}`, settings.readOnly && 'read-only'].filter(Boolean);
  log(`registry listening on ${url} (${modes.join('; ')})`);
  return {
    url,
    server,
    registry,
    close: () =>
      new Promise<void>((resolveClose) => {
        server.close(() => void registry.close().finally(resolveClose));
        server.closeAllConnections();
      }),
  };
}

/** Closes `running` on SIGINT or SIGTERM and then exits, so exit hooks such as `node --cpu-prof` get to write their output. */
export function closeOnSignals(running: RegistryServer): void {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => void running.close().then(() => process.exit(0)));
  }
}

async function openStorage(settings: ServeSettings): Promise<{ storage: StorageAdapter; where: string }> {
  if (settings.s3) {
    // Loaded only here: the AWS SDK is an optional peer dependency.
    const { S3Storage } = await import('../storage/s3').catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'MODULE_NOT_FOUND') throw error;
      throw new Error('S3 storage needs the AWS SDK: npm install @aws-sdk/client-s3 @aws-sdk/s3-request-presigner', { cause: error });
    });
    const prefix = settings.s3.prefix ? `/${settings.s3.prefix}` : '';
    return { storage: new S3Storage(settings.s3), where: `data in bucket ${settings.s3.bucket}${prefix}` };
  }
  const root = resolve(settings.root ?? 'registry-data');
  return { storage: new FileSystemStorage({ root, directReads: settings.directReads }), where: `data in ${root}` };
}
