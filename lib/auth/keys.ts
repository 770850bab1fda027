/** The keys tokens are verified with: JWKS, PEM public keys and root certificates, key ids, and x5c chains. */
import { createHash, createPublicKey, X509Certificate, type JsonWebKey, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint } from 'jose';

/**
 * Where {@link tokenAuthorize} finds the key a token was signed with. A token's `x5c` chain must
 * lead to one of `rootCertificates`; otherwise its `kid` names one of the keys (a JWKS key's
 * own `kid`, or any key's RFC 7638 thumbprint or libtrust fingerprint, the two forms token
 * services put there); a token with neither is checked against the only key when there is one.
 */
export interface TokenKeys {
  /** A JSON Web Key Set, `{ keys: [...] }`, as a token service publishes it. */
  jwks?: { keys: JsonWebKey[] };
  /** Public keys, PEM (SPKI) or key objects. */
  publicKeys?: (string | KeyObject)[];
  /** Trusted root certificates, PEM (one string may hold a bundle, as the reference registry's `rootcertbundle`). */
  rootCertificates?: string | string[];
}

/** A verification key and the ids a token may name it by. */
interface NamedKey {
  key: KeyObject;
  ids: Set<string>;
}

/** The keys of {@link TokenKeys}, ready to resolve a token header to its key. */
export class KeyRing {
  private constructor(
    private readonly named: NamedKey[],
    private readonly roots: X509Certificate[],
  ) {}

  static async load(keys: TokenKeys): Promise<KeyRing> {
    const roots = [keys.rootCertificates ?? []].flat().flatMap(splitPem).map((pem) => new X509Certificate(pem));
    const named: NamedKey[] = [];
    for (const jwk of keys.jwks?.keys ?? []) {
      const key = createPublicKey({ key: jwk, format: 'jwk' });
      named.push({ key, ids: new Set([...(await keyIds(key)), ...(typeof jwk.kid === 'string' ? [jwk.kid] : [])]) });
    }
    for (const key of [...(keys.publicKeys ?? []).map(publicKeyOf), ...roots.map((root) => root.publicKey)]) {
      named.push({ key, ids: new Set(await keyIds(key)) });
    }
    if (!named.length) throw new Error('tokenAuthorize needs at least one key: jwks, publicKeys or rootCertificates');
    return new KeyRing(named, roots);
  }

  /** The key that verifies a token with this header, or an Error saying why there is none. */
  resolve(header: { kid?: string; x5c?: string[] }, now: Date): KeyObject | Error {
    if (header.x5c?.length) return this.x5cKey(header.x5c, now);
    if (header.kid !== undefined) return this.named.find(({ ids }) => ids.has(header.kid!))?.key ?? new Error(`no trusted key has id ${header.kid}`);
    return this.named.length === 1 ? this.named[0].key : new Error('the token names no key (kid or x5c) and several are trusted');
  }

  /**
   * The leaf's key when it is one of the trusted keys (the chain then adds nothing), or when `x5c`
   * (leaf first, each certificate issued by the next) is in force at `now` and ends at a root
   * certificate or at a certificate a root issued.
   */
  private x5cKey(x5c: string[], now: Date): KeyObject | Error {
    let chain: X509Certificate[];
    try {
      chain = x5c.map((der) => new X509Certificate(Buffer.from(der, 'base64')));
    } catch {
      return new Error('the x5c chain holds a malformed certificate');
    }
    const trustedKey = this.named.find(({ key }) => key.equals(chain[0].publicKey));
    if (trustedKey) return trustedKey.key;
    if (chain.some((cert) => now < new Date(cert.validFrom) || now > new Date(cert.validTo))) return new Error('a certificate of the x5c chain is not in force');
    for (let index = 0; index + 1 < chain.length; index++) {
      if (!issued(chain[index], chain[index + 1])) return new Error(`certificate ${index} of the x5c chain is not issued by the next one`);
    }
    const last = chain[chain.length - 1];
    const trusted = this.roots.some((root) => root.fingerprint256 === last.fingerprint256 || issued(last, root));
    return trusted ? chain[0].publicKey : new Error('the x5c chain does not lead to a trusted root certificate');
  }
}

/** The ids token services name `key` by: its RFC 7638 thumbprint and its libtrust fingerprint. */
export async function keyIds(key: KeyObject): Promise<string[]> {
  const publicKey = publicKeyOf(key);
  return [await calculateJwkThumbprint(publicKey.export({ format: 'jwk' })), libtrustKeyId(publicKey)];
}

/**
 * The key id of Docker's libtrust (used by Distribution 2.x and token services of its time):
 * the first 240 bits of the SHA-256 of the DER public key, base32, in colon-separated groups of four.
 */
export function libtrustKeyId(publicKey: KeyObject): string {
  const digest = createHash('sha256')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest()
    .subarray(0, 30);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const byte of digest) bits += byte.toString(2).padStart(8, '0');
  const encoded = bits.match(/.{5}/g)!.map((chunk) => alphabet[parseInt(chunk, 2)]).join('');
  return encoded.match(/.{4}/g)!.join(':');
}

/** The public key of PEM text or of a key object (public or private). */
function publicKeyOf(key: string | KeyObject): KeyObject {
  return typeof key !== 'string' && key.type === 'public' ? key : createPublicKey(key);
}

/** Splits PEM text into its certificates. */
export function splitPem(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/** Whether `issuer` is a CA certificate that signed `cert`. */
function issued(cert: X509Certificate, issuer: X509Certificate): boolean {
  return issuer.ca && cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
}
