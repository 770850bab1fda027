/** skopeo as the tests run it: with its own trust policy and registries configuration, so the machine's files play no part. */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const runFile = promisify(execFile);

/** Runs skopeo with `args`; resolves to its stdout, or fails with its stderr and `explain()`'s server log. */
export type Skopeo = (...args: string[]) => Promise<string>;

/** Runs skopeo with `args`; resolves to its exit code and output, for tests that expect it to fail. */
export type SkopeoOutcome = (...args: string[]) => Promise<{ code: number; output: string }>;

const NOT_INSTALLED = 'skopeo is not installed: apt-get install -y skopeo (as .ci/run does)';

/** Writes skopeo's trust policy and registries configuration into `work`; resolves to the flags that use them. */
async function configureIn(work: string): Promise<string[]> {
  await writeFile(join(work, 'policy.json'), JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  await writeFile(join(work, 'registries.conf'), '');
  return ['--policy', join(work, 'policy.json'), '--registries-conf', join(work, 'registries.conf')];
}

/** Writes skopeo's configuration into `work` and returns a runner; `explain` adds the servers' logs to a failure. */
export async function skopeoIn(work: string, explain: () => string = () => ''): Promise<Skopeo> {
  const global = await configureIn(work);
  return async (...args) => {
    try {
      const { stdout } = await runFile('skopeo', [...global, ...args], { maxBuffer: 16 * 1024 * 1024 });
      return stdout;
    } catch (error) {
      const { code, stderr } = error as { code?: unknown; stderr?: string };
      if (code === 'ENOENT') throw new Error(NOT_INSTALLED);
      throw new Error(`skopeo ${args.join(' ')} failed:\n${stderr || String(error)}\n${explain()}`);
    }
  };
}

/** Writes skopeo's configuration into `work` and returns a runner that reports failures instead of throwing them. */
export async function skopeoOutcomesIn(work: string): Promise<SkopeoOutcome> {
  const global = await configureIn(work);
  return async (...args) => {
    try {
      const { stdout, stderr } = await runFile('skopeo', [...global, ...args], { maxBuffer: 16 * 1024 * 1024 });
      return { code: 0, output: stdout + stderr };
    } catch (error) {
      const { code, stdout, stderr } = error as { code?: unknown; stdout?: string; stderr?: string };
      if (code === 'ENOENT') throw new Error(NOT_INSTALLED);
      return { code: typeof code === 'number' ? code : -1, output: `${stdout ?? ''}${stderr ?? String(error)}` };
    }
  };
}
