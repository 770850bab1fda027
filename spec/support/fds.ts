import { readdir, readlink } from 'node:fs/promises';

/**
 * Files open in this process (from /proc/self/fd), without sockets, pipes and devices: the test
 * client and the server share the process, and only the server's file handles are of interest.
 */
export async function openFiles(): Promise<string[]> {
  const files: string[] = [];
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target.startsWith('/') && !target.startsWith('/dev/') && !target.startsWith('/proc/')) files.push(target);
  }
  return files;
}

/** Open files under `root`: what the registry's storage holds open. */
export async function openFilesUnder(root: string): Promise<string[]> {
  return (await openFiles()).filter((path) => path.startsWith(root));
}
