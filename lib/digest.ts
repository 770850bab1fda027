/** Content digests: the supported algorithms, parsing and validating `algorithm:hex`, and running hashes. */
import { createHash, type Hash } from 'node:crypto';
import { RegistryError } from './errors';

/** Digest algorithms the registry verifies content with, and the hex length of each. */
export const SUPPORTED_ALGORITHMS = { sha256: 64, sha512: 128 } as const;

/** A supported digest algorithm. */
export type DigestAlgorithm = keyof typeof SUPPORTED_ALGORITHMS;

/** A parsed, validated content digest such as `sha256:…`. */
export interface Digest {
  algorithm: DigestAlgorithm;
  hex: string;
  /** The canonical `algorithm:hex` string. */
  value: string;
}

// The spec's digest grammar: algorithm-component ([+._-] algorithm-component)* ":" encoded.
const DIGEST_GRAMMAR = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

/**
 * Parses and validates a digest string. Throws `DIGEST_INVALID` when it is missing, malformed,
 * of an unsupported algorithm, or of the wrong length.
 */
export function parseDigest(input: unknown): Digest {
  if (typeof input !== 'string' || input.length === 0) {
    throw new RegistryError('DIGEST_INVALID', 'a digest is required');
  }
  if (input.length > 256 || !DIGEST_GRAMMAR.test(input)) {
    throw new RegistryError('DIGEST_INVALID', `malformed digest: ${truncate(input)}`);
  }
  const colon = input.indexOf(':');
  const algorithm = input.slice(0, colon);
  const hex = input.slice(colon + 1);
  const expectedLength = SUPPORTED_ALGORITHMS[parseAlgorithm(algorithm)];
  if (hex.length !== expectedLength || !/^[a-f0-9]+$/.test(hex)) {
    throw new RegistryError('DIGEST_INVALID', `a ${algorithm} digest is ${expectedLength} lowercase hex characters`);
  }
  return { algorithm: algorithm as DigestAlgorithm, hex, value: input };
}

/** A digest algorithm's name (a digest's prefix, an upload's `digest-algorithm`): one of {@link SUPPORTED_ALGORITHMS}, else `DIGEST_INVALID`. */
export function parseAlgorithm(input: string): DigestAlgorithm {
  if (!Object.hasOwn(SUPPORTED_ALGORITHMS, input)) {
    throw new RegistryError('DIGEST_INVALID', `unsupported digest algorithm "${truncate(input)}"; supported: ${Object.keys(SUPPORTED_ALGORITHMS).join(', ')}`);
  }
  return input as DigestAlgorithm;
}

/** Whether `input` is a digest {@link parseDigest} accepts. */
export function isDigest(input: unknown): boolean {
  try {
    parseDigest(input);
    return true;
  } catch {
    return false;
  }
}

/** A fresh incremental hash for `algorithm`. */
export function createDigestHash(algorithm: DigestAlgorithm): Hash {
  return createHash(algorithm);
}

/** The digest string of `data` under `algorithm` (for small in-memory documents such as manifests). */
export function digestOf(data: Buffer, algorithm: DigestAlgorithm = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(data).digest('hex')}`;
}

function truncate(text: string): string {
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
}
