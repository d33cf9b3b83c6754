/**
 * The transport contract (tcp/transport.ts) over ordinary kernel TCP sockets (`--transport kernel`): the
 * fallback where raw sockets are not allowed, and the baseline the stateless transport is
 * measured against. The kernel keeps the connection state here — a socket, its buffers and
 * TIME_WAIT — which is exactly the cost the stateless transport avoids.
 */
import net from 'node:net';
import { wholeMessagesBy, type MessageLength, type StreamApplication, type Transport } from '../tcp/transport.js';
import { ByteQueue } from '../tcp/byte-queue.js';
import { formatEndpoint, type Endpoint } from '../endpoint.js';

/** RFC 7766 §6.2.3 leaves the idle timeout to the server; RFC 9210 §3.4 suggests about 10 s. */
const IDLE_TIMEOUT_MS = 10_000;

export class KernelConnection {
  /** Bytes received and not yet handed over: a partial message, or messages held back by the limits. */
  readonly received = new ByteQueue();
  answersOwed = 0;
  clientEnded = false;
  /** The application asked to close once its answers are sent (HTTP `Connection: close`). */
  closeRequested = false;
  /** Writes are corked until the end of this turn of the event loop (`write`). */
  corked = false;
  /** Messages are being handed to the application (`deliver`). */
  delivering = false;
  /** A whole message is held back, and the socket paused, until the connection may take more. */
  held = false;
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
  /** Times a connection's messages were held back by its limits (as the responder's `pipeline_full`). */
  pipelineFull: number;
}

export interface KernelTransportOptions {
  /** The protocol's framing (transport.ts Protocol). */
  messageLength: MessageLength;
  /** Most answers a connection may owe; further messages stay unread (the socket is paused). */
  maxPipelined: number;
  /** Close our side once every answer is sent (`--close-after-response`). */
  closeAfterResponse: boolean;
}

export class KernelTransport implements Transport<KernelConnection> {
  readonly stats: KernelTransportStats = { accepted: 0, open: 0, answersDropped: 0, pipelineFull: 0 };
  private readonly servers: net.Server[] = [];

  constructor(
    private readonly app: StreamApplication<KernelConnection>,
    private readonly options: KernelTransportOptions,
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
    this.deliver(connection);
    this.closeIfDone(connection);
  }

  answerPart(connection: KernelConnection, data: Uint8Array, offset: number, length: number): boolean {
    if (this.isClosed(connection)) return false;
    return write(connection, data, offset, length);
  }

  closeWhenAnswered(connection: KernelConnection): void {
    connection.closeRequested = true;
    // What came after the closing request is never answered: it no longer holds the FIN back.
    // (While messages are being handed over, `deliver` drops it after.)
    if (!connection.delivering) connection.received.consume(connection.received.length);
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
      connection.received.append(chunk, 0, chunk.length);
      this.deliver(connection);
    });
    socket.on('end', () => {
      connection.clientEnded = true;
      // A message cut off by the client's FIN can never complete; whole ones held back still get answers.
      const queue = connection.received;
      queue.truncate(wholeMessagesBy(this.options.messageLength, queue.bytes, queue.start, queue.length));
      this.closeIfDone(connection);
    });
    socket.on('drain', () => {
      this.app.onDrain?.(connection, Date.now());
      this.deliver(connection);
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      this.stats.open--;
      if (connection.answersOwed > 0) this.app.onClosed?.(connection);
    });
  }

  /**
   * Hands the whole messages received to the application, one at a time, while the connection
   * owes fewer than `maxPipelined` answers and its socket's send buffer has room; past that the
   * socket is paused, so the kernel's receive buffer fills and the client's TCP holds the rest.
   */
  private deliver(connection: KernelConnection): void {
    if (connection.delivering) return; // the loop below looks again after each message
    connection.delivering = true;
    const queue = connection.received;
    let held = false;
    while (!connection.closeRequested && !this.isClosed(connection)) {
      const n = this.options.messageLength(queue.bytes, queue.start, queue.length);
      if (n === 0) break;
      if (connection.answersOwed >= this.options.maxPipelined || connection.socket.writableNeedDrain) {
        held = true;
        break;
      }
      this.app.onMessages(connection, queue.bytes, queue.start, n, Date.now());
      queue.consume(n);
    }
    connection.delivering = false;
    if (connection.closeRequested) queue.consume(queue.length);
    if (held && !connection.held) {
      this.stats.pipelineFull++;
      connection.socket.pause();
    } else if (!held && connection.held) {
      connection.socket.resume();
    }
    connection.held = held;
  }

  /** Half-close our side once no answer is owed and nothing partial is held (as the stateless transport). */
  private closeIfDone(connection: KernelConnection): void {
    if (connection.answersOwed > 0 || connection.received.length > 0) return;
    if (this.options.closeAfterResponse || connection.clientEnded || connection.closeRequested) connection.socket.end();
  }
}
