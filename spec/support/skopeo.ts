/** skopeo as the specs run it: with its own trust policy and registries configuration, so the machine's files play no part. */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const runFile = promisify(execFile);

/** Runs skopeo with `args`; resolves to its stdout. */
export type Skopeo = (...args: string[]) => Promise<string>;

/**
 * Writes `policy.json` (accept anything) and an empty `registries.conf` into `work` and returns
 * a runner that uses them. A failure's message carries skopeo's stderr and `logs()`.
 */
export async function prepareSkopeo(work: string, logs: () => string): Promise<Skopeo> {
  const policy = join(work, 'policy.json');
  const registries = join(work, 'registries.conf');
  await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  await writeFile(registries, '');
  return async (...args) => {
    try {
      const { stdout } = await runFile('skopeo', ['--policy', policy, '--registries-conf', registries, ...args], { maxBuffer: 16 * 1024 * 1024 });
      return stdout;
    } catch (error) {
      const { code, stderr } = error as { code?: unknown; stderr?: string };
      if (code === 'ENOENT') throw new Error('skopeo is not installed: apt-get install -y skopeo (as .ci/run does)');
      throw new Error(`skopeo ${args.join(' ')} failed:\n${stderr || String(error)}\n${logs()}`);
    }
  };
}
