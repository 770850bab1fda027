/** A loopback proxy that records every request it forwards (round-robin over several upstreams). */
import http from 'node:http';
import { listen } from './http';

/** One request that went through a {@link RecordingProxy}. */
export interface ProxiedRequest {
  method: string;
  /** Path and query as the client sent them. */
  url: string;
  /** The upstream's status; 0 until it answers. */
  status: number;
  /** Request body bytes the client sent. */
  bodyBytes: number;
  /** Which upstream served it (its index in the list the proxy was started with). */
  upstream: number;
}

/** A transparent HTTP proxy in front of one or more upstream servers that records every request. */
export interface RecordingProxy {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** `127.0.0.1:<port>`, the registry host clients are given. */
  host: string;
  requests: ProxiedRequest[];
  close(): Promise<void>;
}

/**
 * Starts a proxy that forwards every request to `upstream` unchanged (Host included, so relative
 * and absolute `Location`s keep the client on the proxy) and records what the client sent. It
 * shows what went over the wire without relying on the server's own logs. Given several
 * upstreams it is a round-robin load balancer: request n goes to upstream n modulo their number.
 */
export async function startRecordingProxy(upstreams: URL | URL[]): Promise<RecordingProxy> {
  const targets = Array.isArray(upstreams) ? upstreams : [upstreams];
  const requests: ProxiedRequest[] = [];
  const server = await listen((req, res) => {
    const index = requests.length % targets.length;
    const upstream = targets[index];
    const record: ProxiedRequest = { method: req.method ?? '', url: req.url ?? '', status: 0, bodyBytes: 0, upstream: index };
    requests.push(record);
    req.on('data', (chunk: Buffer) => (record.bodyBytes += chunk.length));
    const forwarded = http.request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers, agent: false },
      (upstreamRes) => {
        record.status = upstreamRes.statusCode ?? 0;
        res.writeHead(record.status, upstreamRes.headers);
        // An answer that comes before the client has sent its whole body (a refusal) is ended only
        // once the client stops sending: ending it earlier would close the connection on a client
        // still writing, which then sees a reset instead of the answer.
        upstreamRes.pipe(res, { end: false });
        upstreamRes.once('end', () => (req.complete ? res.end() : req.once('end', () => res.end())));
      },
    );
    forwarded.on('error', () => {
      if (record.status === 0) res.destroy();
      else req.unpipe(forwarded).resume();
    });
    req.pipe(forwarded);
  });
  return { url: server.url, host: `127.0.0.1:${server.port}`, requests, close: server.close };
}
