/** What a FileSystemStorage root holds: open files, files, and only verified content. */
import { createHash } from 'node:crypto';
import { readdir, readFile, readlink, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';

/**
 * Files open in this process (from /proc/self/fd) under `root`: what the registry's storage holds
 * open. The test client and the server share the process; sockets and pipes are not paths.
 */
export async function openFilesUnder(root: string): Promise<string[]> {
  const files: string[] = [];
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target.startsWith(`${root}/`)) files.push(target);
  }
  return files;
}

/** Every file and symbolic link (FileSystemStorage's locks are symlinks) under `dir`, at any depth. */
export async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => []);
  return entries.filter((entry) => entry.isFile() || entry.isSymbolicLink()).map((entry) => join(entry.parentPath, entry.name));
}

/**
 * FileSystemStorage's invariant: every file under `content/` hashes to the digest its path names,
 * and every blob link in a repository points at such content.
 */
export async function expectOnlyVerifiedContent(root: string): Promise<void> {
  for (const file of await filesUnder(join(root, 'content'))) {
    const [algorithm, , hex] = relative(join(root, 'content'), file).split('/');
    expect(createHash(algorithm).update(await readFile(file)).digest('hex')).toBe(hex);
  }
  for (const link of await filesUnder(join(root, 'documents', 'repositories'))) {
    const match = /\/_blobs\/(sha256|sha512)\/([0-9a-f]+)$/.exec(link);
    if (match) await stat(join(root, 'content', match[1], match[2].slice(0, 2), match[2]));
  }
}
