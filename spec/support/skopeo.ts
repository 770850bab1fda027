/** skopeo as the tests run it: with its own trust policy and registries configuration, so the machine's files play no part. */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const runFile = promisify(execFile);

/** Runs skopeo with `args`; resolves to its stdout, or fails with its stderr and `explain()`'s server log. */
export type Skopeo = (...args: string[]) => Promise<string>;

/** Writes skopeo's configuration into `work` and returns a runner; `explain` adds the servers' logs to a failure. */
export async function skopeoIn(work: string, explain: () => string = () => ''): Promise<Skopeo> {
  await writeFile(join(work, 'policy.json'), JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  await writeFile(join(work, 'registries.conf'), '');
  const global = ['--policy', join(work, 'policy.json'), '--registries-conf', join(work, 'registries.conf')];
  return async (...args) => {
    try {
      const { stdout } = await runFile('skopeo', [...global, ...args], { maxBuffer: 16 * 1024 * 1024 });
      return stdout;
    } catch (error) {
      const { code, stderr } = error as { code?: unknown; stderr?: string };
      if (code === 'ENOENT') throw new Error('skopeo is not installed: apt-get install -y skopeo (as .ci/run does)');
      throw new Error(`skopeo ${args.join(' ')} failed:\n${stderr || String(error)}\n${explain()}`);
    }
  };
}
