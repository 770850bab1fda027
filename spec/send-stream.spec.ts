/** sendStream: streamed responses, recycled chunks, and clients that go away. */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import http, { type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { sendStream } from '../lib/respond';
import { FileReader } from '../lib/storage/fs/file-reader';
import { useTempDir } from './support/temp-dir';

const MiB = 1 << 20;

/**
 * Serves one response through `send`; resolves to what the client received (or the error it
 * saw) and to how `send` settled.
 */
async function serveOnce(send: (res: ServerResponse) => Promise<void>, length: number, readBytes = Number.POSITIVE_INFINITY) {
  let settled!: Promise<unknown>;
  const server = http.createServer((_req, res) => {
    res.setHeader('Content-Length', length);
    settled = send(res).then(
      () => 'sent',
      (error: Error) => error,
    );
  });
  await new Promise<void>((listening) => server.listen(0, '127.0.0.1', listening));
  const { port } = server.address() as AddressInfo;
  try {
    const received = await new Promise<Buffer | Error>((done) => {
      const request = http.get({ host: '127.0.0.1', port, agent: false }, (response) => {
        const chunks: Buffer[] = [];
        let count = 0;
        response.on('data', (chunk: Buffer) => {
          chunks.push(chunk);
          count += chunk.length;
          // The client goes away part way through.
          if (count >= readBytes) request.destroy();
        });
        response.on('end', () => done(Buffer.concat(chunks)));
        response.on('error', done);
        request.on('close', () => done(new Error(`closed after ${count} bytes`)));
      });
      request.on('error', done);
    });
    return { received, outcome: await settled };
  } finally {
    server.close();
  }
}

/** Emits copies of `content` in 64 KiB chunks; overwrites each chunk it takes back, as a reader reusing it would. */
class ScribblingStream extends Readable {
  recycled = 0;
  private offset = 0;

  constructor(
    private readonly content: Buffer,
    private readonly failAt?: number,
  ) {
    super();
  }

  override _read(): void {
    if (this.failAt !== undefined && this.offset >= this.failAt) {
      this.destroy(Object.assign(new Error('input/output error'), { code: 'EIO' }));
      return;
    }
    if (this.offset >= this.content.length) {
      this.push(null);
      return;
    }
    const chunk = Buffer.from(this.content.subarray(this.offset, this.offset + 64 * 1024));
    this.offset += chunk.length;
    this.push(chunk);
  }

  recycle(chunk: Buffer): void {
    this.recycled++;
    chunk.fill(0xee);
  }
}

describe('sendStream', () => {
  const dir = useTempDir('send-stream-');
  const content = randomBytes(4 * MiB + 999);

  it('hands each chunk back only once the socket has taken it: overwriting it then corrupts nothing', async () => {
    const stream = new ScribblingStream(content);
    const { received, outcome } = await serveOnce((res) => sendStream(stream, res), content.length);
    expect(outcome).toBe('sent');
    expect(Buffer.isBuffer(received) && received.equals(content)).toBe(true);
    expect(stream.recycled).toBe(Math.ceil(content.length / (64 * 1024)));
  });

  it('serves a file through a FileReader that reads into the buffers it gets back', async () => {
    const path = join(dir(), 'blob');
    const big = randomBytes(12 * MiB);
    writeFileSync(path, big);
    const reader = new FileReader(await open(path, 'r'), 0, big.length - 1);
    const buffers = new Set<ArrayBufferLike>();
    const recycle = reader.recycle.bind(reader);
    reader.recycle = (chunk) => {
      buffers.add(chunk.buffer);
      recycle(chunk);
    };
    const { received, outcome } = await serveOnce((res) => sendStream(reader, res), big.length);
    expect(outcome).toBe('sent');
    expect(Buffer.isBuffer(received) && received.equals(big)).toBe(true);
    // Twelve reads; at most three in flight, one waiting in the stream, one or two being written.
    expect(buffers.size).toBeLessThanOrEqual(6);
  });

  it('fails with the stream error, and cuts the response short, when the stream fails part way', async () => {
    const stream = new ScribblingStream(content, 2 * MiB);
    const { received, outcome } = await serveOnce((res) => sendStream(stream, res), content.length);
    expect(outcome).toMatchObject({ code: 'EIO' });
    expect(Buffer.isBuffer(received)).toBe(false);
  });

  it('stops reading and closes the stream when the client goes away', async () => {
    const stream = new ScribblingStream(Buffer.alloc(64 * MiB));
    const { outcome } = await serveOnce((res) => sendStream(stream, res), 64 * MiB, MiB);
    expect(outcome).toMatchObject({ code: 'ERR_STREAM_PREMATURE_CLOSE' });
    expect(stream.destroyed).toBe(true);
  });

  it('pipes a stream that does not take chunks back', async () => {
    const { received, outcome } = await serveOnce((res) => sendStream(Readable.from([content.subarray(0, 10), content.subarray(10)]), res), content.length);
    expect(outcome).toBe('sent');
    expect(Buffer.isBuffer(received) && received.equals(content)).toBe(true);
  });
});
