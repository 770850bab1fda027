/** The protocol's small parts on their own: digests, names, tags, ranges, paging, manifest parsing. */
import { parseDigest, RegistryError } from '../lib';
import { validateName, validateTag } from '../lib/names';
import { parseChunkRange, parseRequestRange, uploadRangeHeader } from '../lib/range';

function codeOf(action: () => unknown): string | undefined {
  try {
    action();
  } catch (error) {
    return error instanceof RegistryError ? `${error.status} ${error.code}` : String(error);
  }
  return undefined;
}

describe('digest parsing', () => {
  const hex64 = 'a'.repeat(64);
  it('accepts sha256 and sha512 digests', () => {
    expect(parseDigest(`sha256:${hex64}`)).toEqual({ algorithm: 'sha256', hex: hex64, value: `sha256:${hex64}` });
    expect(parseDigest(`sha512:${'b'.repeat(128)}`).algorithm).toBe('sha512');
  });
  it.each([undefined, '', 'sha256', `sha256:${'a'.repeat(63)}`, `sha256:${'A'.repeat(64)}`, `SHA256:${hex64}`, `sha256:${hex64}\n`, `md5:${'0'.repeat(32)}`, `sha512:${hex64}`])(
    'refuses %p with DIGEST_INVALID',
    (input) => {
      expect(codeOf(() => parseDigest(input))).toBe('400 DIGEST_INVALID');
    },
  );
});

describe('repository names and tags', () => {
  it.each(['a', 'library/ubuntu', 'a-b/c.d/e__f', 'a--b', '0/1/2'])('accepts the name %p', (name) => {
    expect(validateName(name)).toBe(name);
  });
  it.each(['', 'A', 'a/', '/a', 'a//b', 'a..b', 'a._b', '-a', 'a-', '..', 'a/../b', 'a%2Fb', 'a\0b', 'ä', 'x'.repeat(256)])('refuses the name %p', (name) => {
    expect(codeOf(() => validateName(name))).toBe('400 NAME_INVALID');
  });
  it('validates tags, which a digest is not', () => {
    expect(validateTag('latest')).toBe('latest');
    expect(validateTag('v1.2_3-rc')).toBe('v1.2_3-rc');
    expect(codeOf(() => validateTag(`sha256:${'a'.repeat(64)}`))).toBe('400 TAG_INVALID');
    expect(codeOf(() => validateTag('.hidden'))).toBe('400 TAG_INVALID');
    expect(codeOf(() => validateTag('x'.repeat(129)))).toBe('400 TAG_INVALID');
  });
});

describe('ranges', () => {
  it('parses upload chunk ranges in the spec form and the RFC form', () => {
    expect(parseChunkRange('0-99', 0)).toEqual({ start: 0, end: 99 });
    expect(parseChunkRange('bytes 100-199/*', 100)).toEqual({ start: 100, end: 199 });
    expect(parseChunkRange('bytes=5-9', 5)).toEqual({ start: 5, end: 9 });
  });
  it.each(['', '5', '9-5', 'a-b', '-5', '1-2-3', '99999999999999999-999999999999999999'])('refuses the chunk range %p with 416 and the stored Range', (header) => {
    let error: RegistryError | undefined;
    try {
      parseChunkRange(header, 42);
    } catch (caught) {
      error = caught as RegistryError;
    }
    expect(error?.status).toBe(416);
    expect(error?.headers.Range).toBe('0-41');
  });
  it('reports upload sizes as Range headers', () => {
    expect(uploadRangeHeader(0)).toBe('0-0');
    expect(uploadRangeHeader(1)).toBe('0-0');
    expect(uploadRangeHeader(1000)).toBe('0-999');
  });
  it('interprets request ranges against a size', () => {
    expect(parseRequestRange(undefined, 10)).toBeUndefined();
    expect(parseRequestRange('bytes=2-4', 10)).toEqual({ start: 2, end: 4 });
    expect(parseRequestRange('bytes=8-', 10)).toEqual({ start: 8, end: 9 });
    expect(parseRequestRange('bytes=5-100', 10)).toEqual({ start: 5, end: 9 });
    expect(parseRequestRange('bytes=-3', 10)).toEqual({ start: 7, end: 9 });
    expect(parseRequestRange('bytes=-30', 10)).toEqual({ start: 0, end: 9 });
    expect(parseRequestRange('bytes=10-', 10)).toBe('unsatisfiable');
    expect(parseRequestRange('bytes=-0', 10)).toBe('unsatisfiable');
    expect(parseRequestRange('bytes=0-1,3-4', 10)).toBeUndefined();
    expect(parseRequestRange('items=0-1', 10)).toBeUndefined();
    expect(parseRequestRange('bytes=4-2', 10)).toBeUndefined();
  });
});
