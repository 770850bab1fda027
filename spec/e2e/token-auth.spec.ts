/**
 * The token protocol with real clients: skopeo and podman against the bearer example (its token
 * service and its registry), and interop both ways with the reference registry (Debian's
 * docker-registry, Distribution 2.8): it accepts the tokens our service issues, and our registry
 * accepts tokens signed as its token services sign them (ES256 with an x5c chain to a root).
 */
import { execFile } from 'node:child_process';
import { createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import express from 'express';
import { SignJWT } from 'jose';
import { bearerChallenge, createRegistryRouter, MemoryStorage } from '../../lib';
import { basicCredentials, createTokenService, narrow, parseScopes, tokenAuthorize } from '../../lib/auth';
import { userLine } from '../../examples/basic-auth';
import { exampleGrant, SERVICE } from '../../examples/bearer-auth';
import { describeWithPrograms } from '../support/binaries';
import { makeCertificateChain, type CertificateChain } from '../support/certificates';
import { buildExampleServer, startExampleServer, startServerProcess, type ExampleServer } from '../support/example-server';
import { writeImageLayout, type GeneratedImage } from '../support/oci-layout';

const runFile = promisify(execFile);
const MiB = 1024 * 1024;

/** Runs a client program; a failure rejects with its stderr (and the servers' logs, when given). */
async function client(program: string, args: string[], logs: () => string = () => ''): Promise<string> {
  try {
    const { stdout } = await runFile(program, args, { maxBuffer: 16 * MiB });
    return stdout;
  } catch (error) {
    const { stderr } = error as { stderr?: string };
    throw new Error(`${program} ${args.join(' ')} failed:\n${stderr || String(error)}\n${logs()}`);
  }
}

/** A free loopback port: bound and released, for the reference registry, which cannot listen on port 0. */
function freePort(): Promise<number> {
  const probe = createServer();
  return new Promise((resolve, reject) => {
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

function listen(app: express.Express): Promise<Server> {
  return new Promise((resolve) => {
    const server = app.listen(0, '127.0.0.1', () => resolve(server));
  });
}

/** Closes `server` and the keep-alive connections clients left open. */
function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

describeWithPrograms(['skopeo', 'openssl'], 'token auth with real clients', () => {
  let work: string;
  let buildDir: string | undefined;
  let server: ExampleServer | undefined;
  let chain: CertificateChain;
  let image: GeneratedImage;
  /** host:port of the bearer example. */
  let registry: string;
  const layout = () => join(work, 'image');
  const logs = () => `example server log:\n${server?.logTail()}`;

  beforeAll(async () => {
    // Lowercase throughout: podman names an image it pulls from an OCI layout after the layout's path.
    work = join(tmpdir(), `oci-token-e2e-${randomBytes(6).toString('hex')}`);
    await mkdir(work);
    [buildDir, image, chain] = await Promise.all([
      buildExampleServer(),
      writeImageLayout(join(work, 'image'), { tag: 'v1', fileSizes: [100, 300_000] }),
      makeCertificateChain(work, 'example'),
    ]);
    await Promise.all([
      writeFile(join(work, 'policy.json'), JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] })),
      writeFile(join(work, 'registries.conf'), ''),
      writeFile(join(work, 'users.txt'), [userLine('alice', 'alice secret'), userLine('bob', 'bob secret')].join('\n')),
      writeFile(join(work, 'token-key.pem'), chain.leafKeyPem),
      writeFile(join(work, 'token-chain.pem'), chain.leafPem + chain.caPem),
    ]);
    server = await startExampleServer(buildDir, join(work, 'data'), {
      script: join('examples', 'bearer-auth.js'),
      env: { USERS_FILE: join(work, 'users.txt'), TOKEN_KEY_FILE: join(work, 'token-key.pem'), TOKEN_CERT_FILE: join(work, 'token-chain.pem'), ANONYMOUS_PULL: '1' },
    });
    registry = new URL(server.url).host;
  }, 120_000);

  afterAll(async () => {
    await server?.stop();
    if (work) await rm(work, { recursive: true, force: true });
    if (buildDir) await rm(buildDir, { recursive: true, force: true });
  });

  const skopeo = (...args: string[]) => client('skopeo', ['--policy', join(work, 'policy.json'), '--registries-conf', join(work, 'registries.conf'), ...args], logs);
  const authFile = (name: string) => join(work, `${name}-auth.json`);
  const issuer = () => `${server!.url}/token`;

  it('skopeo logs in, and a wrong password is refused', async () => {
    expect(await skopeo('login', '--tls-verify=false', '--authfile', authFile('alice'), '-u', 'alice', '-p', 'alice secret', registry)).toMatch(/Login Succeeded/);
    await expect(skopeo('login', '--tls-verify=false', '--authfile', authFile('wrong'), '-u', 'alice', '-p', 'not it', registry)).rejects.toThrow(/invalid username\/password/);
  }, 30_000);

  it('skopeo pushes under its own name, pulls, lists tags (anonymously too) and deletes; other names are denied', async () => {
    const target = `docker://${registry}/alice/app`;
    await skopeo('copy', '--preserve-digests', '--dest-tls-verify=false', '--authfile', authFile('alice'), `oci:${layout()}:v1`, `${target}:v1`);
    await skopeo('copy', '--preserve-digests', '--dest-tls-verify=false', '--authfile', authFile('alice'), `oci:${layout()}:v1`, `${target}:v2`);
    // The token alice gets for bob's repository holds no push: the registry answers insufficient_scope, which clients call "denied".
    await expect(skopeo('copy', '--dest-tls-verify=false', '--authfile', authFile('alice'), `oci:${layout()}:v1`, `docker://${registry}/bob/app:v1`)).rejects.toThrow(/denied/);
    await expect(skopeo('copy', '--dest-tls-verify=false', '--dest-no-creds', `oci:${layout()}:v1`, `docker://${registry}/alice/anon:v1`)).rejects.toThrow(/denied/);

    expect(JSON.parse(await skopeo('list-tags', '--tls-verify=false', '--no-creds', target)).Tags).toEqual(['v1', 'v2']);
    const pulled = join(work, 'pulled');
    await skopeo('copy', '--preserve-digests', '--src-tls-verify=false', '--src-no-creds', `${target}:v1`, `oci:${pulled}:v1`);
    expect((await readdir(join(pulled, 'blobs', 'sha256'))).sort()).toEqual([image.manifest, image.config, ...image.layers].map((each) => each.digest.slice('sha256:'.length)).sort());

    // skopeo asks for `*` to delete: granted under one's own name only.
    await skopeo('login', '--tls-verify=false', '--authfile', authFile('bob'), '-u', 'bob', '-p', 'bob secret', registry);
    // (skopeo delete shows the error body rather than the challenge's insufficient_scope.)
    await expect(skopeo('delete', '--tls-verify=false', '--authfile', authFile('bob'), `${target}:v2`)).rejects.toThrow(/the token does not grant delete on alice\/app/);
    await skopeo('delete', '--tls-verify=false', '--authfile', authFile('alice'), `${target}:v2`);
    await expect(skopeo('inspect', '--tls-verify=false', '--no-creds', `${target}:v1`)).rejects.toThrow(/manifest unknown/i);
  }, 90_000);

  it('a refresh token (an identity token in the auth file) gets fresh tokens; an expired token, or one for another service, is refused', async () => {
    const signingKey = createPrivateKey(chain.leafKeyPem);
    const issue = async (service: string, now: () => number) => {
      const app = express().use(createTokenService({ service, issuer: issuer(), signingKey, authenticate: () => true, grant: (subject, requested) => exampleGrant(subject, requested, false), now }));
      const tokens = await listen(app);
      try {
        const url = `http://127.0.0.1:${(tokens.address() as AddressInfo).port}/token?service=${service}&scope=repository:alice/refreshed:pull`;
        const res = await fetch(url, { headers: { Authorization: `Basic ${Buffer.from('alice:x').toString('base64')}` } });
        return ((await res.json()) as { token: string }).token;
      } finally {
        await close(tokens);
      }
    };
    // The OAuth2 password grant with access_type=offline gives a refresh token; an auth file holding it
    // as identitytoken (and no password) makes skopeo use the refresh_token grant for every token it needs.
    const form = new URLSearchParams({ grant_type: 'password', username: 'alice', password: 'alice secret', service: SERVICE, access_type: 'offline', client_id: 'e2e' });
    const login = (await (await fetch(issuer(), { method: 'POST', body: form })).json()) as { refresh_token: string };
    await writeFile(authFile('identity'), JSON.stringify({ auths: { [registry]: { auth: Buffer.from('alice:').toString('base64'), identitytoken: login.refresh_token } } }));
    await skopeo('copy', '--dest-tls-verify=false', '--authfile', authFile('identity'), `oci:${layout()}:v1`, `docker://${registry}/alice/refreshed:v1`);
    // The same auth file without the identity token has an empty password, which the token service refuses.
    await writeFile(authFile('no-identity'), JSON.stringify({ auths: { [registry]: { auth: Buffer.from('alice:').toString('base64') } } }));
    await expect(skopeo('copy', '--dest-tls-verify=false', '--authfile', authFile('no-identity'), `oci:${layout()}:v1`, `docker://${registry}/alice/refreshed:v2`)).rejects.toThrow(/unauthorized|invalid username/i);

    const target = `docker://${registry}/alice/refreshed`;
    const fresh = await issue(SERVICE, Date.now);
    expect(JSON.parse(await skopeo('list-tags', '--tls-verify=false', '--registry-token', fresh, target)).Tags).toEqual(['v1']);
    const expired = await issue(SERVICE, () => Date.now() - 3600_000);
    await expect(skopeo('list-tags', '--tls-verify=false', '--registry-token', expired, target)).rejects.toThrow(/unauthorized|authentication required/i);
    // A token of this issuer and key, but for another registry, is refused too.
    const elsewhere = await issue('other-registry', Date.now);
    await expect(skopeo('list-tags', '--tls-verify=false', '--registry-token', elsewhere, target)).rejects.toThrow(/unauthorized|authentication required/i);
  }, 60_000);

  describeWithPrograms(['podman'], 'podman (as root, vfs storage)', () => {
    const podman = (...args: string[]) =>
      client('podman', ['--root', join(work, 'podman-root'), '--runroot', join(work, 'podman-run'), '--storage-driver', 'vfs', '--cgroup-manager', 'cgroupfs', '--events-backend', 'file', ...args], logs);
    const tls = '--tls-verify=false';

    it('logs in, pushes under its own name, pulls, searches the catalog, and is refused with a wrong password', async () => {
      const auth = ['--authfile', authFile('podman')];
      const policy = ['--signature-policy', join(work, 'policy.json')];
      await expect(podman('login', tls, ...auth, '-u', 'bob', '-p', 'wrong', registry)).rejects.toThrow(/invalid username\/password/);
      expect(await podman('login', tls, ...auth, '-u', 'bob', '-p', 'bob secret', registry)).toMatch(/Login Succeeded/);
      const id = (await podman('pull', ...policy, ...auth, `oci:${layout()}:v1`)).trim().split('\n').at(-1)!;
      await podman('push', tls, ...policy, ...auth, id, `docker://${registry}/bob/podman:v1`);
      await expect(podman('push', tls, ...policy, ...auth, id, `docker://${registry}/alice/podman:v1`)).rejects.toThrow(/denied/);
      await podman('rmi', '--force', id);
      const pulled = (await podman('pull', tls, ...policy, ...auth, `${registry}/bob/podman:v1`)).trim().split('\n').at(-1);
      expect(pulled).toBe(id);
      // podman search lists the catalog, for which it asks a registry:catalog:* token.
      const found = (await podman('search', tls, ...auth, '--format', '{{.Name}}', `${registry}/`)).trim().split('\n').sort();
      expect(found).toEqual(expect.arrayContaining([`${registry}/alice/app`, `${registry}/bob/podman`]));
      expect((await podman('search', tls, ...auth, '--format', '{{.Name}}', `${registry}/podman`)).trim()).toBe(`${registry}/bob/podman`);
      await podman('logout', ...auth, registry);
    }, 90_000);
  });

  describeWithPrograms(['docker-registry'], 'interop with the reference registry', () => {
    let reference: ExampleServer | undefined;
    afterAll(() => reference?.stop());

    it('the reference registry accepts the tokens our token service issues (x5c to its rootcertbundle): skopeo pushes and pulls', async () => {
      const port = await freePort();
      const dir = join(work, 'reference');
      await mkdir(dir);
      await writeFile(join(dir, 'ca.pem'), chain.caPem);
      const config = [
        'version: 0.1',
        'log: { level: info }',
        `storage: { filesystem: { rootdirectory: ${JSON.stringify(join(dir, 'data'))} }, delete: { enabled: true } }`,
        `http: { addr: "127.0.0.1:${port}", secret: e2e-secret }`,
        `auth: { token: { realm: "${issuer()}", service: ${SERVICE}, issuer: "${issuer()}", rootcertbundle: ${JSON.stringify(join(dir, 'ca.pem'))} } }`,
      ].join('\n');
      await writeFile(join(dir, 'config.yml'), config);
      reference = await startServerProcess('docker-registry', ['serve', join(dir, 'config.yml')], {}, /listening on (127\.0\.0\.1:\d+)/);
      const host = new URL(reference.url).host;
      const both = () => `${logs()}\nreference registry log:\n${reference?.logTail()}`;
      const refSkopeo = (...args: string[]) => client('skopeo', ['--policy', join(work, 'policy.json'), '--registries-conf', join(work, 'registries.conf'), ...args], both);

      await refSkopeo('copy', '--preserve-digests', '--dest-tls-verify=false', '--dest-creds', 'alice:alice secret', `oci:${layout()}:v1`, `docker://${host}/alice/ref:v1`);
      const pulled = join(work, 'reference-pulled');
      await refSkopeo('copy', '--preserve-digests', '--src-tls-verify=false', '--src-creds', 'bob:bob secret', `docker://${host}/alice/ref:v1`, `oci:${pulled}:v1`);
      expect((await readdir(join(pulled, 'blobs', 'sha256'))).length).toBe(2 + image.layers.length);
      expect(JSON.parse(await refSkopeo('list-tags', '--tls-verify=false', '--no-creds', `docker://${host}/alice/ref`)).Tags).toEqual(['v1']);
      // Bob's token has no push on alice/ref: the reference registry refuses it as ours does.
      await expect(refSkopeo('copy', '--dest-tls-verify=false', '--dest-creds', 'bob:bob secret', `oci:${layout()}:v1`, `docker://${host}/alice/ref:v2`)).rejects.toThrow(/denied/);
    }, 60_000);
  });

  it('our registry accepts tokens signed the reference way: ES256 with an x5c chain to a trusted root', async () => {
    const issuerChain = await makeCertificateChain(work, 'external');
    const signer = createPrivateKey(issuerChain.leafKeyPem);
    const x5c = [issuerChain.leafPem, issuerChain.caPem].map((pem) => new X509Certificate(pem).raw.toString('base64'));
    const externalIssuer = 'external-token-issuer';
    // A token endpoint that is not ours: it signs with jose directly, the header and claims as the token spec shows them.
    const tokens = express().get('/auth', (req, res) => {
      const user = basicCredentials(req)?.user;
      const requested = parseScopes([req.query.scope ?? []].flat().map(String));
      const access = narrow(requested, requested.map(({ type, name }) => ({ type, name, actions: user === 'carol' ? ['*'] : ['pull'] })));
      const now = Math.floor(Date.now() / 1000);
      void new SignJWT({ iss: externalIssuer, sub: user ?? '', aud: 'our-registry', exp: now + 300, nbf: now, iat: now, jti: String(Math.random()), access })
        .setProtectedHeader({ typ: 'JWT', alg: 'ES256', x5c })
        .sign(signer)
        .then((token) => res.json({ token }));
    });
    const tokenServer = await listen(tokens);
    const realm = `http://127.0.0.1:${(tokenServer.address() as AddressInfo).port}/auth`;
    const ours = express().use(
      createRegistryRouter({
        storage: new MemoryStorage(),
        authorize: tokenAuthorize({ service: 'our-registry', issuer: externalIssuer, keys: { rootCertificates: issuerChain.caPem } }),
        challenge: bearerChallenge({ realm, service: 'our-registry' }),
      }),
    );
    const oursServer = await listen(ours);
    try {
      const host = `127.0.0.1:${(oursServer.address() as AddressInfo).port}`;
      await skopeo('copy', '--preserve-digests', '--dest-tls-verify=false', '--dest-creds', 'carol:any', `oci:${layout()}:v1`, `docker://${host}/carol/app:v1`);
      expect(JSON.parse(await skopeo('list-tags', '--tls-verify=false', '--creds', 'dave:any', `docker://${host}/carol/app`)).Tags).toEqual(['v1']);
      await expect(skopeo('delete', '--tls-verify=false', '--creds', 'dave:any', `docker://${host}/carol/app:v1`)).rejects.toThrow(/the token does not grant delete on carol\/app/);
      await skopeo('delete', '--tls-verify=false', '--creds', 'carol:any', `docker://${host}/carol/app:v1`);
    } finally {
      await Promise.all([close(tokenServer), close(oursServer)]);
    }
  }, 60_000);
});
