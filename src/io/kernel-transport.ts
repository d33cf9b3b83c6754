/**
 * The same DNS relay over ordinary kernel TCP sockets (`--transport kernel`): the fallback where
 * raw sockets are not allowed, and the baseline the stateless transport is measured against.
 * The kernel keeps the connection state here — a socket, its buffers and TIME_WAIT — which is
 * exactly the cost the stateless transport avoids.
 */
import net from 'node:net';
import type { AnswerSink } from '../dns/relay.js';
import { wholeMessages } from '../dns/message.js';
import { ByteQueue } from '../tcp/flow.js';
import type { Endpoint } from '../endpoint.js';

/** RFC 7766 §6.2.3 leaves the idle timeout to the server; RFC 9210 §3.4 suggests about 10 s. */
const IDLE_TIMEOUT_MS = 10_000;

export class KernelConnection {
  /** Bytes received that do not yet make a whole message. */
  readonly received = new ByteQueue();
  answersOwed = 0;
  clientEnded = false;
  constructor(readonly socket: net.Socket) {}
}

export interface KernelTransportStats {
  accepted: number;
  open: number;
  answersDropped: number;
}

export class KernelTransport implements AnswerSink<KernelConnection> {
  readonly stats: KernelTransportStats = { accepted: 0, open: 0, answersDropped: 0 };
  private readonly servers: net.Server[] = [];

  constructor(
    private readonly onMessages: (connection: KernelConnection, buf: Uint8Array, offset: number, length: number, nowMs: number) => void,
    private readonly closeAfterResponse: boolean,
  ) {}

  /** Listens on every endpoint; throws an Error with a one-line message naming the fix. */
  async listen(endpoints: readonly Endpoint[]): Promise<void> {
    for (const endpoint of endpoints) {
      const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.accept(socket));
      await new Promise<void>((resolve, reject) => {
        server.once('error', (error: NodeJS.ErrnoException) => {
          const where = endpoint.family === 6 ? `[${endpoint.address}]:${endpoint.port}` : `${endpoint.address}:${endpoint.port}`;
          const fix =
            error.code === 'EADDRINUSE' ? 'another server listens there: stop it or pick another --listen'
            : error.code === 'EADDRNOTAVAIL' ? 'no interface has that address: pick one from `ip address show`'
            : error.code === 'EACCES' ? 'ports below 1024 need root or CAP_NET_BIND_SERVICE'
            : error.message;
          reject(new Error(`cannot listen on ${where}: ${fix}`));
        });
        server.listen({ host: endpoint.address, port: endpoint.port, backlog: 4096 }, resolve);
      });
      this.servers.push(server);
    }
  }

  close(): void {
    for (const server of this.servers) server.close();
  }

  expectAnswer(connection: KernelConnection): void {
    connection.answersOwed++;
  }

  answer(connection: KernelConnection, data: Uint8Array, offset: number, length: number): void {
    connection.answersOwed--;
    const socket = connection.socket;
    if (socket.destroyed || !socket.writable) {
      this.stats.answersDropped++;
      return;
    }
    // A copy: the relay reuses `data` for the next answer, and write(2) may happen later.
    socket.write(Buffer.from(data.subarray(offset, offset + length)));
    this.closeIfDone(connection);
  }

  private accept(socket: net.Socket): void {
    this.stats.accepted++;
    this.stats.open++;
    const connection = new KernelConnection(socket);
    socket.setTimeout(IDLE_TIMEOUT_MS, () => {
      if (connection.answersOwed === 0) socket.destroy();
    });
    socket.on('data', (chunk: Buffer) => {
      const queue = connection.received;
      queue.append(chunk, 0, chunk.length);
      const whole = wholeMessages(queue.bytes, queue.start, queue.length);
      if (whole > 0) {
        this.onMessages(connection, queue.bytes, queue.start, whole, Date.now());
        queue.consume(whole);
      }
    });
    socket.on('end', () => {
      connection.clientEnded = true;
      this.closeIfDone(connection);
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.stats.open--);
  }

  /** Half-close our side once no answer is owed and nothing partial is held (as the stateless transport). */
  private closeIfDone(connection: KernelConnection): void {
    if (connection.answersOwed > 0 || connection.received.length > 0) return;
    if (this.closeAfterResponse || connection.clientEnded) connection.socket.end();
  }
}
