/** Suites that need programs installed (skopeo, podman, the reference registry): skipped where one is missing, failed in CI. */
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/** Whether `name` is an executable on PATH. */
export function installed(name: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/**
 * `describe`, when every one of `programs` is installed. Otherwise the suite is skipped on a
 * developer's machine, and in CI (CI=true) it fails, since there a missing program is a broken setup.
 */
export function describeWithPrograms(programs: string[], name: string, suite: () => void): void {
  const missing = programs.filter((program) => !installed(program));
  if (!missing.length) describe(name, suite);
  else if (process.env.CI === 'true') {
    describe(name, () => {
      it(`needs ${missing.join(', ')}`, () => {
        throw new Error(`${missing.join(', ')} not installed: .ci/run installs them (apt-get install -y ${missing.join(' ')})`);
      });
    });
  } else describe.skip(`${name} (needs ${missing.join(', ')})`, suite);
}
