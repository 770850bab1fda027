/** Registry server processes for the tests: the compiled example server, or any command that prints `listening on <url>`. */
import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const projectRoot = resolve(__dirname, '../..');

/** How a server process ended. */
export interface ServerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A server (the example server, the package's bin, the reference registry) running as a child process. */
export interface ExampleServer {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** The server's last log lines (stdout and its `debug` output), for failure messages. */
  logTail(): string;
  /** Sends the server process a signal (e.g. SIGUSR2, which switches read-only mode). */
  signal(signal: NodeJS.Signals): void;
  /** Sends SIGTERM (unless it has exited) and resolves once it has exited. */
  stop(): Promise<ServerExit>;
}

/**
 * Compiles the project with its own tsconfig into a fresh directory under
 * `node_modules/.cache/` (so `express` and `debug` resolve from the project's `node_modules`,
 * and neither `dist/` nor a concurrent run is touched). Resolves to the directory, which the
 * caller removes.
 */
export async function buildExampleServer(): Promise<string> {
  const cacheDir = join(projectRoot, 'node_modules', '.cache');
  await mkdir(cacheDir, { recursive: true });
  const outDir = await mkdtemp(join(cacheDir, 'e2e-build-'));
  const tsc = require.resolve('typescript/bin/tsc');
  try {
    await run(process.execPath, [tsc, '-p', join(projectRoot, 'tsconfig.json'), '--outDir', outDir, '--declaration', 'false', '--sourceMap', 'false']);
  } catch (error) {
    await rm(outDir, { recursive: true, force: true });
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`compiling the example server failed:\n${stdout ?? ''}${stderr ?? ''}`);
  }
  return outDir;
}

/** What {@link startExampleServer} may change: another example script, more environment. */
export interface ExampleServerOptions {
  /** The script under `buildDir`. Default `examples/server.js`. */
  script?: string;
  env?: Record<string, string>;
}

/**
 * Starts an example (`examples/server.js` unless `options.script` says otherwise) from `buildDir`
 * on a free port (PORT=0) with its data in `dataDir` and every `debug` namespace of the registry on.
 */
export function startExampleServer(buildDir: string, dataDir: string, options: ExampleServerOptions = {}): Promise<ExampleServer> {
  const env = { PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, DEBUG: 'express-oci-registry:*', DEBUG_COLORS: 'no', ...options.env };
  return startServerProcess(process.execPath, [join(buildDir, options.script ?? join('examples', 'server.js'))], env, /listening on (http:\/\/[^\s]+)/);
}

/**
 * Spawns a server process with `env` added to this one's and resolves once a line of its output
 * matches `listening` (whose first group, prefixed with `http://` when it has no scheme, is its URL).
 */
export function startServerProcess(command: string, args: string[], env: Record<string, string>, listening: RegExp): Promise<ExampleServer> {
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const keep = (chunk: Buffer) => {
    lines.push(...chunk.toString('utf8').trimEnd().split('\n'));
    lines.splice(0, Math.max(0, lines.length - 200));
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise<ServerExit>((resolveExit) => child.once('exit', (code, signal) => resolveExit({ code, signal })));
  const logTail = () => lines.slice(-40).join('\n');
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    return exited;
  };
  return new Promise((resolveStart, rejectStart) => {
    const onOutput = (chunk: Buffer) => {
      const match = listening.exec(chunk.toString('utf8'));
      if (!match) return;
      child.stdout.off('data', onOutput);
      child.stderr.off('data', onOutput);
      resolveStart({ url: match[1].includes('://') ? match[1] : `http://${match[1]}`, logTail, signal: (name) => child.kill(name), stop });
    };
    child.stdout.on('data', onOutput);
    child.stderr.on('data', onOutput);
    child.once('exit', (code, signal) => rejectStart(new Error(`${command} exited (${code ?? signal}) before listening:\n${logTail()}`)));
    child.once('error', rejectStart);
  });
}
