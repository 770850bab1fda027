// A loopback TCP forwarder that tests close and reopen, to make a shared backend unreachable without stopping it.
import net from 'node:net';

/** A TCP forwarder on 127.0.0.1 in front of one upstream; see {@link startTcpForwarder}. */
export interface TcpForwarder {
  /** `http://127.0.0.1:<port>`: the address to give the client instead of the upstream's. */
  url: string;
  /** Bytes relayed from clients to the upstream so far. */
  readonly bytesUp: number;
  /**
   * Resolves once `bytes` more bytes than now have gone up; with `thenClose`, the forwarder closes
   * in the same step, right after relaying the chunk that reached the count.
   */
  afterBytesUp(bytes: number, thenClose?: boolean): Promise<void>;
  /** Stops listening and cuts every connection: clients then get ECONNREFUSED (or ECONNRESET mid-request). */
  close(): Promise<void>;
  /** Listens again on the same port. */
  reopen(): Promise<void>;
}

/** Starts a forwarder on an ephemeral loopback port that relays every connection to `upstream` (host:port). */
export async function startTcpForwarder(upstream: URL): Promise<TcpForwarder> {
  const sockets = new Set<net.Socket>();
  let bytesUp = 0;
  let watch: { at: number; thenClose: boolean; resolve: () => void } | undefined;
  const cutAll = () => {
    for (const socket of sockets) socket.destroy();
    sockets.clear();
  };
  const server = net.createServer((client) => {
    const target = net.connect(Number(upstream.port), upstream.hostname);
    for (const socket of [client, target]) {
      sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => {
        sockets.delete(socket);
        (socket === client ? target : client).destroy();
      });
    }
    client.on('data', (chunk: Buffer) => {
      bytesUp += chunk.length;
      target.write(chunk);
      if (watch && bytesUp >= watch.at) {
        const { thenClose, resolve } = watch;
        watch = undefined;
        if (thenClose) {
          server.close();
          cutAll();
        }
        resolve();
      }
    });
    target.pipe(client);
  });
  const listenOn = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  await listenOn(0);
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    get bytesUp() {
      return bytesUp;
    },
    afterBytesUp: (bytes, thenClose = false) => new Promise((resolve) => (watch = { at: bytesUp + bytes, thenClose, resolve })),
    close: async () => {
      const closed = server.listening ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
      cutAll();
      await closed;
    },
    reopen: () => listenOn(port),
  };
}
