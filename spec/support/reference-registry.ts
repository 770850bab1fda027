/** The reference registry (Debian's `docker-registry`, distribution/distribution) as a test upstream: filesystem storage and htpasswd Basic auth, on loopback. */
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startServerProcess } from './example-server';

const run = promisify(execFile);

/** A running reference registry. */
export interface ReferenceRegistry {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** `127.0.0.1:<port>` */
  host: string;
  username: string;
  password: string;
  /** Its last log lines, for failure messages. */
  logTail(): string;
  stop(): Promise<unknown>;
}

/** A port that was free a moment ago: bound to 0, then released for the registry to take. */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * Starts `/usr/bin/docker-registry` with its config, htpasswd file and storage under `dir`, and
 * one user. Resolves once it logs that it listens (it must be installed: see `describeWithPrograms`).
 */
export async function startReferenceRegistry(dir: string, username = 'mirror', password = 'mirror secret'): Promise<ReferenceRegistry> {
  await mkdir(join(dir, 'storage'), { recursive: true });
  const htpasswd = (await run('htpasswd', ['-Bbn', username, password])).stdout;
  await writeFile(join(dir, 'htpasswd'), htpasswd);
  const port = await freePort();
  const config = [
    'version: 0.1',
    'log:',
    '  level: info',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${join(dir, 'storage')}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    'auth:',
    '  htpasswd:',
    '    realm: upstream',
    `    path: ${join(dir, 'htpasswd')}`,
    '',
  ].join('\n');
  await writeFile(join(dir, 'config.yml'), config);
  const server = await startServerProcess('docker-registry', ['serve', join(dir, 'config.yml')], {}, /listening on (127\.0\.0\.1:\d+)/);
  return { ...server, host: `127.0.0.1:${port}`, username, password };
}
