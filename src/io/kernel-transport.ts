/**
 * The transport contract (tcp/transport.ts) over ordinary kernel TCP sockets (`--transport kernel`): the
 * fallback where raw sockets are not allowed, and the baseline the stateless transport is
 * measured against. The kernel keeps the connection state here — a socket, its buffers and
 * TIME_WAIT — which is exactly the cost the stateless transport avoids.
 */
import net from 'node:net';
import type { MessageFramer, StreamApplication, Transport } from '../tcp/transport.js';
import { ByteQueue } from '../tcp/byte-queue.js';
import { formatEndpoint, type Endpoint } from '../endpoint.js';

/** RFC 7766 §6.2.3 leaves the idle timeout to the server; RFC 9210 §3.4 suggests about 10 s. */
const IDLE_TIMEOUT_MS = 10_000;

export class KernelConnection {
  /** Bytes received that do not yet make a whole message. */
  readonly received = new ByteQueue();
  answersOwed = 0;
  clientEnded = false;
  /** The application asked to close once its answers are sent (HTTP `Connection: close`). */
  closeRequested = false;
  /** Writes are corked until the end of this turn of the event loop (`write`). */
  corked = false;
  constructor(readonly socket: net.Socket) {}
}

/**
 * Queues a copy of `data[offset, offset + length)` on the connection (the relay reuses `data`
 * for the next answer, and write(2) may happen later). The answers and response parts of one
 * turn of the event loop leave in one writev(2): a write is a syscall that also runs the
 * receiver's TCP stack, and pipelined DNS answers or a response's head and body would otherwise
 * each pay it. False once the socket's buffer is full.
 */
function write(connection: KernelConnection, data: Uint8Array, offset: number, length: number): boolean {
  if (!connection.corked) {
    connection.corked = true;
    connection.socket.cork();
    process.nextTick(uncork, connection);
  }
  return connection.socket.write(Buffer.from(data.subarray(offset, offset + length)));
}

function uncork(connection: KernelConnection): void {
  connection.corked = false;
  connection.socket.uncork();
}

export interface KernelTransportStats {
  accepted: number;
  open: number;
  answersDropped: number;
}

export class KernelTransport implements Transport<KernelConnection> {
  readonly stats: KernelTransportStats = { accepted: 0, open: 0, answersDropped: 0 };
  private readonly servers: net.Server[] = [];

  /** `framer` says how many bytes of what arrived are whole messages (as for the responder). */
  constructor(
    private readonly app: StreamApplication<KernelConnection>,
    private readonly framer: MessageFramer,
    private readonly closeAfterResponse: boolean,
  ) {}

  /** Listens on every endpoint; throws an Error with a one-line message naming the fix. */
  async listen(endpoints: readonly Endpoint[]): Promise<void> {
    for (const endpoint of endpoints) {
      const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.accept(socket));
      await new Promise<void>((resolve, reject) => {
        server.once('error', (error: NodeJS.ErrnoException) => {
          const where = formatEndpoint(endpoint);
          const fix =
            error.code === 'EADDRINUSE'
              ? 'another server listens there: stop it or pick another --listen'
              : error.code === 'EADDRNOTAVAIL'
                ? 'no interface has that address: pick one from `ip address show`'
                : error.code === 'EACCES'
                  ? 'ports below 1024 need root or CAP_NET_BIND_SERVICE'
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
    if (this.isClosed(connection)) {
      this.stats.answersDropped++;
      return;
    }
    if (length > 0) write(connection, data, offset, length);
    this.closeIfDone(connection);
  }

  answerPart(connection: KernelConnection, data: Uint8Array, offset: number, length: number): boolean {
    if (this.isClosed(connection)) return false;
    return write(connection, data, offset, length);
  }

  closeWhenAnswered(connection: KernelConnection): void {
    connection.closeRequested = true;
    // Part of a request after the closing one can never be answered: it no longer holds the FIN back.
    connection.received.consume(connection.received.length);
    this.closeIfDone(connection);
  }

  reset(connection: KernelConnection): void {
    connection.socket.resetAndDestroy();
  }

  isClosed(connection: KernelConnection): boolean {
    return connection.socket.destroyed || !connection.socket.writable;
  }

  clientAddress(connection: KernelConnection): string {
    return connection.socket.remoteAddress ?? '';
  }

  private accept(socket: net.Socket): void {
    this.stats.accepted++;
    this.stats.open++;
    const connection = new KernelConnection(socket);
    socket.setTimeout(IDLE_TIMEOUT_MS, () => {
      if (connection.answersOwed === 0) socket.destroy();
    });
    socket.on('data', (chunk: Buffer) => {
      // The application asked to close (transport.ts closeWhenAnswered): read, not delivered.
      if (connection.closeRequested) return;
      const queue = connection.received;
      queue.append(chunk, 0, chunk.length);
      const whole = this.framer(queue.bytes, queue.start, queue.length);
      if (whole > 0) {
        this.app.onMessages(connection, queue.bytes, queue.start, whole, Date.now());
        queue.consume(whole);
      }
    });
    socket.on('end', () => {
      connection.clientEnded = true;
      this.closeIfDone(connection);
    });
    socket.on('drain', () => this.app.onDrain?.(connection, Date.now()));
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      this.stats.open--;
      if (connection.answersOwed > 0) this.app.onClosed?.(connection);
    });
  }

  /** Half-close our side once no answer is owed and nothing partial is held (as the stateless transport). */
  private closeIfDone(connection: KernelConnection): void {
    if (connection.answersOwed > 0 || connection.received.length > 0) return;
    if (this.closeAfterResponse || connection.clientEnded || connection.closeRequested) connection.socket.end();
  }
}
