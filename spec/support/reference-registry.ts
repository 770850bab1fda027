/** The reference registry (Debian's `docker-registry`, distribution/distribution) as a test upstream: filesystem storage and htpasswd Basic auth, on loopback. */
import { execFile, spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';

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
  stop(): Promise<void>;
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
 * one user. Resolves once it logs that it listens.
 */
export async function startReferenceRegistry(dir: string, username = 'mirror', password = 'mirror secret'): Promise<ReferenceRegistry> {
  await mkdir(join(dir, 'storage'), { recursive: true });
  let htpasswd: string;
  try {
    htpasswd = (await run('htpasswd', ['-Bbn', username, password])).stdout;
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ENOENT') throw new Error('htpasswd is not installed: apt-get install -y apache2-utils (as .ci/run does)');
    throw error;
  }
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
  const child = spawn('docker-registry', ['serve', join(dir, 'config.yml')], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const keep = (chunk: Buffer) => {
    lines.push(...chunk.toString('utf8').trimEnd().split('\n'));
    lines.splice(0, Math.max(0, lines.length - 200));
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const logTail = () => lines.slice(-40).join('\n');
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  };
  await new Promise<void>((resolve, reject) => {
    const onOutput = (chunk: Buffer) => {
      if (!/listening on/.test(chunk.toString('utf8'))) return;
      child.stderr.off('data', onOutput);
      child.stdout.off('data', onOutput);
      resolve();
    };
    child.stderr.on('data', onOutput);
    child.stdout.on('data', onOutput);
    child.once('exit', (code, signal) => reject(new Error(`docker-registry exited (${code ?? signal}) before listening:\n${logTail()}`)));
    child.once('error', (error) =>
      reject((error as { code?: unknown }).code === 'ENOENT' ? new Error('docker-registry is not installed: apt-get install -y docker-registry (as .ci/run does)') : error),
    );
  });
  return { url: `http://127.0.0.1:${port}`, host: `127.0.0.1:${port}`, username, password, logTail, stop };
}
