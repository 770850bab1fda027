// An unreachable object store: 503 with Retry-After while it is down, and the session resumes and verifies once it is back.
import { S3Storage } from '../lib/storage/s3';
import { bytes, listen, makeApp, request, sha256 } from './support/http';
import { ensureBucket, s3Settings, s3TestStorage, S3_SKIP_REASON } from './support/s3';
import { startTcpForwarder, type TcpForwarder } from './support/tcp-forwarder';

const settings = s3Settings();
const MiB = 1024 * 1024;

/** The answer must be 503 `UNAVAILABLE` with a Retry-After of whole seconds. */
function expectUnavailable(res: { status: number; headers: Record<string, unknown>; body: Buffer }): void {
  expect(res.status).toBe(503);
  expect(String(res.headers['retry-after'])).toMatch(/^[1-9][0-9]*$/);
  const body = JSON.parse(res.body.toString('utf8')) as { errors: { code: string; detail: unknown }[] };
  expect(body.errors[0].code).toBe('UNAVAILABLE');
  expect(String(body.errors[0].detail)).toMatch(/storage is unavailable/);
}

(settings ? describe : describe.skip)(`S3Storage behind a forwarder that goes down${settings ? '' : ` ${S3_SKIP_REASON}`}`, () => {
  let forwarder: TcpForwarder;
  let test: ReturnType<typeof s3TestStorage>;
  let storage: S3Storage;
  let server: Awaited<ReturnType<typeof listen>>;
  beforeAll(() => ensureBucket(settings!));
  beforeEach(async () => {
    forwarder = await startTcpForwarder(new URL(settings!.endpoint!));
    // Few retries, so that each request gives up on the closed forwarder quickly.
    test = s3TestStorage({ ...settings!, endpoint: forwarder.url, clientOptions: { maxAttempts: 2 } }, { partSize: 5 * MiB });
    storage = test.storage;
    server = await listen(makeApp(storage));
  });
  afterEach(async () => {
    await server.close();
    await forwarder.reopen().catch(() => undefined);
    await test.cleanup();
    await forwarder.close();
  });

  const patch = (location: string, body: Buffer, start: number) =>
    request(`${server.url}${location}`, {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `${start}-${start + body.length - 1}`, 'Content-Length': String(body.length) },
      body,
    });
  const storedSize = async (location: string) => {
    const res = await request(`${server.url}${location}`, { method: 'GET' });
    expect(res.status).toBe(204);
    return Number(/^0-(\d+)$/.exec(String(res.headers.range))![1]) + 1;
  };

  it('answers 503 with Retry-After between chunks, then resumes the session and verifies it', async () => {
    const data = bytes(7 * MiB, 21);
    const started = await request(`${server.url}/v2/repo/blobs/uploads/`, { method: 'POST' });
    expect(started.status).toBe(202);
    const location = String(started.headers.location);
    expect((await patch(location, data.subarray(0, 6 * MiB), 0)).status).toBe(202);

    await forwarder.close();
    expectUnavailable(await patch(location, data.subarray(6 * MiB, 6 * MiB + 64 * 1024), 6 * MiB));
    expectUnavailable(await request(`${server.url}${location}`, { method: 'GET' }));
    expectUnavailable(await request(`${server.url}${location}?digest=${sha256(data)}`, { method: 'PUT' }));
    expectUnavailable(await request(`${server.url}/v2/repo/blobs/uploads/`, { method: 'POST' }));
    expect((await request(`${server.url}/v2/`, { method: 'GET' })).status).toBe(200);

    await forwarder.reopen();
    expect(await storedSize(location)).toBe(6 * MiB);
    expect((await patch(location, data.subarray(6 * MiB), 6 * MiB)).status).toBe(202);
    expect((await request(`${server.url}${location}?digest=${sha256(data)}`, { method: 'PUT' })).status).toBe(201);
    const pulled = await request(`${server.url}/v2/repo/blobs/${sha256(data)}`, { method: 'GET' });
    expect(pulled.status).toBe(200);
    expect(sha256(pulled.body)).toBe(sha256(data));
  });

  it('answers 503 with Retry-After when the store goes away while a part streams to it, keeping the parts it confirmed', async () => {
    const data = bytes(11 * MiB, 22);
    const started = await request(`${server.url}/v2/repo/blobs/uploads/`, { method: 'POST' });
    const location = String(started.headers.location);
    // One part (5 MiB) confirmed, 1 MiB in the tail.
    expect((await patch(location, data.subarray(0, 6 * MiB), 0)).status).toBe(202);
    // The next 4 MiB fill the second part with the tail; the forwarder closes once most of that part has gone up.
    const cut = forwarder.afterBytesUp(5 * MiB, true);
    const answer = patch(location, data.subarray(6 * MiB, 10 * MiB), 6 * MiB);
    await cut;
    expectUnavailable(await answer);

    await forwarder.reopen();
    const resumeAt = await storedSize(location);
    // The part that was cut was never confirmed, so the session is where the last confirmed state left it.
    expect(resumeAt).toBe(6 * MiB);
    expect((await patch(location, data.subarray(resumeAt), resumeAt)).status).toBe(202);
    expect((await request(`${server.url}${location}?digest=${sha256(data)}`, { method: 'PUT' })).status).toBe(201);
    const pulled = await request(`${server.url}/v2/repo/blobs/${sha256(data)}`, { method: 'GET' });
    expect(sha256(pulled.body)).toBe(sha256(data));
  });
});
