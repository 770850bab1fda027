/** Name patterns the policies match repositories and tags with. */

/** A copy of `pattern` without the global and sticky flags, whose `lastIndex` would make `test` depend on earlier calls. */
export function statelessPattern(pattern: RegExp): RegExp {
  return new RegExp(pattern.source, pattern.flags.replace(/[gy]/g, ''));
}

/**
 * A test of repository names against globs: `*` matches within one path segment, `**` across
 * segments, `?` one character other than `/`; everything else matches itself.
 */
export function globMatcher(globs: string | string[]): (name: string) => boolean {
  const patterns = [globs].flat().map((glob) => {
    const source = glob.replace(/\*\*|\*|\?|[.+^${}()|[\]\\]/g, (token) => {
      if (token === '**') return '.*';
      if (token === '*') return '[^/]*';
      if (token === '?') return '[^/]';
      return `\\${token}`;
    });
    return new RegExp(`^${source}$`);
  });
  return (name) => patterns.some((pattern) => pattern.test(name));
}
