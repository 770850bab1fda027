/** Test certificates made with the openssl CLI: a root CA and a token-signing leaf it issued, both EC P-256. */
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A CA and a leaf it signed, as PEM. */
export interface CertificateChain {
  caPem: string;
  leafPem: string;
  /** The leaf's private key (PKCS#8). */
  leafKeyPem: string;
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args);
  } catch (error) {
    const { code, stderr } = error as { code?: unknown; stderr?: string };
    if (code === 'ENOENT') throw new Error('openssl is not installed: apt-get install -y openssl (as .ci/run does)');
    throw new Error(`openssl ${args[0]} failed: ${stderr ?? String(error)}`);
  }
}

/** Makes a CA and a leaf under `dir` (files `ca.pem`, `leaf.pem`, `leaf.key`), valid from now for `days`. */
export async function makeCertificateChain(dir: string, name: string, days = 2): Promise<CertificateChain> {
  const file = (base: string) => join(dir, `${name}-${base}`);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await openssl(['req', '-x509', ...ec, '-keyout', file('ca.key'), '-out', file('ca.pem'), '-days', String(days), '-subj', `/CN=${name} CA`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  await openssl(['req', ...ec, '-keyout', file('leaf.key'), '-out', file('leaf.csr'), '-subj', `/CN=${name} token signer`]);
  await writeFile(file('leaf.ext'), 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n');
  await openssl(['x509', '-req', '-in', file('leaf.csr'), '-CA', file('ca.pem'), '-CAkey', file('ca.key'), '-set_serial', '2', '-days', String(days), '-extfile', file('leaf.ext'), '-out', file('leaf.pem')]);
  const [caPem, leafPem, leafKeyPem] = await Promise.all([readFile(file('ca.pem'), 'utf8'), readFile(file('leaf.pem'), 'utf8'), readFile(file('leaf.key'), 'utf8')]);
  return { caPem, leafPem, leafKeyPem };
}
