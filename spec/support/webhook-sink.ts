// A webhook receiver on loopback for the notification specs, which can fail, be down or hang on demand.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Socket } from 'node:net';

/** One POST the sink answered with 200. */
export interface Delivery {
  contentType: string;
  headers: http.IncomingHttpHeaders;
  body: unknown;
}

/** How the sink treats the next request: answer it, fail it with a status, reset the connection, or never answer. */
export type SinkMode = 'up' | 'down' | 'hang';

/**
 * A webhook receiver on loopback: records what it accepts, and can fail the next N requests
 * with a 500, be down (every connection reset as it opens) or hang (never answer).
 */
export interface WebhookSink {
  url: string;
  /** Deliveries answered with 200, in arrival order. */
  readonly accepted: Delivery[];
  /** Requests that reached the sink, answered or not, and connections it reset while down. */
  readonly attempts: number;
  /** Answers the next `count` requests with 500. */
  failNext(count: number): void;
  setMode(mode: SinkMode): void;
  close(): Promise<void>;
}

export async function startWebhookSink(): Promise<WebhookSink> {
  const accepted: Delivery[] = [];
  let attempts = 0;
  let failures = 0;
  let mode: SinkMode = 'up';
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
    attempts++;
    if (mode === 'hang') return;
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      if (failures > 0) {
        failures--;
        res.writeHead(500).end('try later');
        return;
      }
      accepted.push({ contentType: String(req.headers['content-type']), headers: req.headers, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) });
      res.writeHead(200).end();
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    if (mode === 'down') {
      attempts++;
      socket.destroy();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/events`,
    accepted,
    get attempts() {
      return attempts;
    },
    failNext: (count) => {
      failures = count;
    },
    setMode: (next) => {
      mode = next;
      // Connections kept alive from before must not carry requests past the switch.
      if (next !== 'up') for (const socket of sockets) socket.destroy();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
