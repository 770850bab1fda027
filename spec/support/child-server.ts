// Registry servers run as child processes (a script that prints `listening <port>`), and their output.
import { spawn, type ChildProcess } from 'node:child_process';

/** A server script running as a child process. */
export interface ChildServer {
  /** `http://127.0.0.1:<port>` */
  url: string;
  port: number;
  child: ChildProcess;
  /** Resolves with the signal that ended the child (null when it exited by itself). */
  exited: Promise<NodeJS.Signals | null>;
  /** Resolves with the first line of the child's stdout, from now on, that matches `pattern`. */
  nextLine(pattern: RegExp): Promise<string>;
  /** What the child wrote to stderr, for failure messages. */
  stderr(): string;
}

/** Spawns `node <script>` with `env` on top of the test's environment and waits until it listens. */
export async function startChild(script: string, env: Record<string, string> = {}): Promise<ChildServer> {
  const child = spawn(process.execPath, [script], { env: { ...process.env, PORT: '0', HOST: '127.0.0.1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
  let errors = '';
  child.stderr!.on('data', (chunk: Buffer) => (errors = (errors + chunk.toString()).slice(-8000)));
  const waiters: { pattern: RegExp; resolve: (line: string) => void }[] = [];
  let partial = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    const lines = (partial + chunk.toString()).split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      const index = waiters.findIndex((waiter) => waiter.pattern.test(line));
      if (index >= 0) waiters.splice(index, 1)[0].resolve(line);
    }
  });
  const nextLine = (pattern: RegExp) => new Promise<string>((resolve) => waiters.push({ pattern, resolve }));
  const listeningLine = /listening (?:on http:\/\/127\.0\.0\.1:)?(\d+)(?:\s|$)/;
  const listening = nextLine(listeningLine);
  const line = await Promise.race([listening, exited.then(() => Promise.reject(new Error(`${script} exited before listening: ${errors}`)))]);
  const port = Number(listeningLine.exec(line)![1]);
  return { url: `http://127.0.0.1:${port}`, port, child, exited, nextLine, stderr: () => errors };
}
