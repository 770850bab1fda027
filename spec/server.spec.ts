/** The standalone server's parts: the registry app (read-only start, event lines), htpasswd sign-in, and the serve command's flags. */
import { hashSync } from 'bcryptjs';
import supertest from 'supertest';
import { MemoryStorage } from '../lib';
import { parseFlags, UsageError } from '../lib/cli/command';
import { serveCommand, serveSettings } from '../lib/cli/serve-command';
import { createRegistryApp, htpasswdAuthorize, parseHtpasswd } from '../lib/server';
import { sha256 } from './support/http';

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

describe('createRegistryApp', () => {
  it('readOnly starts the router read-only: reads are served, every write is refused with 405 UNSUPPORTED', async () => {
    const storage = new MemoryStorage();
    const data = Buffer.from('stored before');
    await supertest(createRegistryApp({ storage }).app).post(`/v2/ro/app/blobs/uploads/?digest=${sha256(data)}`).set('Content-Type', 'application/octet-stream').send(data).expect(201);
    const agent = supertest(createRegistryApp({ storage, readOnly: true }).app);
    expect((await agent.get(`/v2/ro/app/blobs/${sha256(data)}`).expect(200)).body).toEqual(data);
    await agent.head(`/v2/ro/app/blobs/${sha256(data)}`).expect(200);
    for (const [method, path] of [['post', '/v2/ro/app/blobs/uploads/'], ['delete', `/v2/ro/app/blobs/${sha256(data)}`], ['put', '/v2/ro/app/manifests/v1']] as const) {
      const refused = await agent[method](path).expect(405);
      expect(refused.body.errors[0]).toMatchObject({ code: 'UNSUPPORTED', detail: expect.stringContaining('read-only') });
    }
    expect(await storage.listDocuments('uploads/')).toEqual([]);
  });

  it('writes each registry event as one line', async () => {
    const lines: string[] = [];
    const data = Buffer.from('logged');
    const agent = supertest(createRegistryApp({ storage: new MemoryStorage(), logEvent: (line) => lines.push(line) }).app);
    await agent.post(`/v2/log/app/blobs/uploads/?digest=${sha256(data)}`).set('Content-Type', 'application/octet-stream').send(data).expect(201);
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^event blobCommitted repository=log/app uploadId=\\S+ digest=${sha256(data)} size=6( |$)`)));
  });
});

describe('htpasswd sign-in', () => {
  const file = ['# users', `alice:${hashSync('alice secret', 4).replace(/^\$2b\$/, '$2y$')}`, ''].join('\n');

  it('admits the file\'s users with their password and asks everyone else to sign in', async () => {
    const agent = supertest(createRegistryApp({ storage: new MemoryStorage(), authorize: htpasswdAuthorize(file) }).app);
    await agent.get('/v2/').set('Authorization', basic('alice', 'alice secret')).expect(200);
    for (const header of [basic('alice', 'wrong'), basic('bob', 'alice secret'), 'Basic !!!']) {
      expect((await agent.get('/v2/').set('Authorization', header).expect(401)).body.errors[0].code).toBe('UNAUTHORIZED');
    }
    await agent.get('/v2/').expect(401);
  });

  it('refuses a file with a hash other than bcrypt, or a line that is not name:hash, naming the line', () => {
    expect(() => parseHtpasswd('alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=')).toThrow('htpasswd line 1 (alice) is not a bcrypt hash');
    expect(() => parseHtpasswd('# comment\nno-colon')).toThrow('htpasswd line 2 is not name:hash');
    expect([...parseHtpasswd(file).keys()]).toEqual(['alice']);
  });
});

describe('serve flags', () => {
  const settings = (...argv: string[]) => serveSettings(parseFlags(serveCommand.flags, argv));

  it('describe a folder, or an S3 bucket with its settings', () => {
    expect(settings('--root', 'data', '--port', '0', '--host', '::1', '--read-only')).toMatchObject({ root: 'data', port: 0, host: '::1', readOnly: true, logEvents: true, directReads: false });
    expect(settings('--direct-reads')).toMatchObject({ directReads: true });
    expect(settings('--s3-bucket', 'b', '--s3-prefix', 'p', '--s3-part-size-mib', '8', '--s3-force-path-style', '--quiet')).toMatchObject({
      s3: { bucket: 'b', prefix: 'p', partSize: 8 * 1024 * 1024, forcePathStyle: true },
      logEvents: false,
    });
  });

  it.each([
    [['--port', '65536'], "--port must be a whole number from 0 to 65535, not '65536'"],
    [['--s3-bucket', 'b', '--s3-part-size-mib', '4'], "--s3-part-size-mib must be a whole number from 5 to 5120, not '4'"],
    [['--s3-endpoint', 'http://x'], '--s3-endpoint needs --s3-bucket'],
    [['--root', 'a', '--s3-bucket', 'b'], '--root and --s3-bucket exclude each other'],
    [['--s3-bucket', 'b', '--direct-reads'], '--direct-reads is for a folder, not --s3-bucket'],
    [['--htpasswd'], "Option '--htpasswd <value>' argument missing"],
  ])('refuse %j: %s', (argv, message) => {
    expect(() => settings(...argv)).toThrow(UsageError);
    expect(() => settings(...argv)).toThrow(message);
  });
});
