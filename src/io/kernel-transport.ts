/**
 * The transport contract (tcp/transport.ts) over ordinary kernel TCP sockets (`--transport kernel`): the
 * fallback where raw sockets are not allowed, and the baseline the stateless transport is
 * measured against. The kernel keeps the connection state here — a socket, its buffers and
 * TIME_WAIT — which is exactly the cost the stateless transport avoids.
 */
import { addressBytes, isV4Mapped } from '../endpoint.js';
import type { ConnectionEndpoints } from '../dns/proxy-protocol.js';
import net from 'node:net';
import { wholeMessagesBy, type MessageLength, type StreamApplication, type Transport } from '../tcp/transport.js';
import { ByteQueue } from '../tcp/byte-queue.js';
import { TimerWheel, type TimerEntry } from '../tcp/timer-wheel.js';
import { formatEndpoint, type Endpoint } from '../endpoint.js';

/** RFC 7766 §6.2.3 leaves the idle timeout to the server; RFC 9210 §3.4 suggests about 10 s. */
export const IDLE_TIMEOUT_MS = 10_000;

/**
 * Most bytes of a streaming body the application may hold before the socket is paused (the
 * kernel's receive buffer then fills and its window closes): the stateless transport's window.
 */
const BODY_WINDOW_BYTES = 65535;

export class KernelConnection implements TimerEntry<KernelConnection> {
  /** Bytes received and not yet handed over: a partial message, or messages held back by the limits. */
  readonly received = new ByteQueue();
  /** The client's address as bytes, parsed once (`clientAddressBytes`). */
  addressBytes: Uint8Array | null = null;
  answersOwed = 0;
  clientEnded = false;
  /** The application asked to close once its answers are sent (HTTP `Connection: close`). */
  closeRequested = false;
  /** Writes are corked until the end of this turn of the event loop (`write`). */
  corked = false;
  /** Messages are being handed to the application (`deliver`). */
  delivering = false;
  /** A whole message is held back until the connection may take more. */
  held = false;
  /** The socket is paused: a message is held back, or the application holds a window of body. */
  paused = false;
  /** A message's body streams to the application (`beginBody`) until it calls `endBody`. */
  bodyStreaming = false;
  /** Bytes of it the application holds, not yet released. */
  bodyHeld = 0;
  /** Since when its current half window has been awaited, and the bytes of it so far (the responder's rule). */
  bodySinceMs = 0;
  bodyBytesSince = 0;
  /** When the first byte still in `received` arrived (the message deadline counts from it). */
  partialSinceMs = 0;
  /** Bytes given to the socket to write so far; less its `writableLength`, the bytes it has written. */
  bytesQueued = 0;
  /**
   * Since when the socket's write buffer has been full (`write` returned false: the kernel's send
   * buffer is full, the client is not reading), -1 if it is not; and the bytes written by then.
   */
  stalledSinceMs = -1;
  writtenWhenStalled = 0;
  /** Its earliest deadline, and its links in the transport's timer wheel. */
  timerDueMs = 0;
  timerList = -1;
  timerPrev: KernelConnection | null = null;
  timerNext: KernelConnection | null = null;
  constructor(readonly socket: net.Socket) {}

  /** Bytes the socket has written into the kernel. */
  get bytesWritten(): number {
    return this.bytesQueued - this.socket.writableLength;
  }
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
  connection.bytesQueued += length;
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
  /**
   * Connections reset for a deadline (as the responder's `deadlines_missed`): a message not whole
   * within messageDeadlineMs of its first byte, or answers not taken for zeroWindowLimitMs.
   */
  deadlinesMissed: number;
}

export interface KernelTransportOptions {
  /** The protocol's framing (transport.ts Protocol). */
  messageLength: MessageLength;
  /** Most answers a connection may owe; further messages stay unread (the socket is paused). */
  maxPipelined: number;
  /** Close our side once every answer is sent (`--close-after-response`). */
  closeAfterResponse: boolean;
  /**
   * A message must be whole within this long of its first byte, however the client trickles it
   * (the responder's rule; the idle timeout, which every byte restarts, does not catch it).
   */
  messageDeadlineMs: number;
  /** The longest a client may leave its answers unread (the socket's write buffer full, none written): then RST. */
  zeroWindowLimitMs: number;
}

export class KernelTransport implements Transport<KernelConnection> {
  readonly idleTimeoutMs = IDLE_TIMEOUT_MS;
  readonly stats: KernelTransportStats = { accepted: 0, open: 0, answersDropped: 0, pipelineFull: 0, deadlinesMissed: 0 };
  private readonly servers: net.Server[] = [];
  /** Connections by their earliest deadline (`armTimer`), as the responder's flows. */
  private readonly timers: TimerWheel<KernelConnection>;
  private readonly onTimer = (connection: KernelConnection, nowMs: number): void => this.runTimers(connection, nowMs);

  constructor(
    private readonly app: StreamApplication<KernelConnection>,
    private readonly options: KernelTransportOptions,
  ) {
    this.timers = new TimerWheel(Math.max(options.messageDeadlineMs, options.zeroWindowLimitMs));
  }

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
    if (length > 0) this.send(connection, data, offset, length);
    this.deliver(connection);
    this.closeIfDone(connection);
    // Owing nothing now, a partial message behind the answered ones is under its deadline again.
    this.armTimer(connection);
  }

  answerPart(connection: KernelConnection, data: Uint8Array, offset: number, length: number): boolean {
    if (this.isClosed(connection)) return false;
    return this.send(connection, data, offset, length);
  }

  beginBody(connection: KernelConnection, nowMs: number): void {
    connection.bodyStreaming = true;
    restartBodyClock(connection, nowMs);
  }

  endBody(connection: KernelConnection): void {
    connection.bodyStreaming = false;
  }

  releaseBody(connection: KernelConnection, length: number, nowMs: number): void {
    const wasHeldUp = connection.bodyHeld >= BODY_WINDOW_BYTES / 2;
    connection.bodyHeld -= length;
    // Time spent waiting for the application's upstream does not count against the client.
    if (wasHeldUp && connection.bodyHeld < BODY_WINDOW_BYTES / 2) restartBodyClock(connection, nowMs);
    this.updatePause(connection);
    this.armTimer(connection);
  }

  closeWhenAnswered(connection: KernelConnection): void {
    connection.closeRequested = true;
    connection.bodyStreaming = false; // a body still arriving is read and dropped with the rest
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

  connectionEndpoints(connection: KernelConnection, out: ConnectionEndpoints): void {
    const { socket } = connection;
    const client = unmapped(addressBytes(socket.remoteAddress ?? '::'));
    const server = unmapped(addressBytes(socket.localAddress ?? '::'));
    out.family = client.length === 4 && server.length === 4 ? 4 : 6;
    out.clientAddress.set(client);
    out.serverAddress.set(server);
    out.clientPort = socket.remotePort ?? 0;
    out.serverPort = socket.localPort ?? 0;
  }

  clientAddressBytes(connection: KernelConnection, out: Uint8Array): number {
    connection.addressBytes ??= addressBytes(connection.socket.remoteAddress ?? '::');
    out.set(connection.addressBytes);
    return connection.addressBytes.length;
  }

  /** The deadlines; call every few milliseconds. Looks only at the connections whose earliest deadline has come. */
  tick(nowMs: number): void {
    this.timers.expire(nowMs, this.onTimer);
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
      if (connection.received.length === 0) connection.partialSinceMs = Date.now();
      connection.received.append(chunk, 0, chunk.length);
      this.deliver(connection);
      this.armTimer(connection);
    });
    socket.on('end', () => {
      connection.clientEnded = true;
      // A message cut off by the client's FIN can never complete; whole ones held back still get answers.
      const queue = connection.received;
      queue.truncate(wholeMessagesBy(this.options.messageLength, queue.bytes, queue.start, queue.length));
      if (connection.bodyStreaming) {
        connection.bodyStreaming = false;
        this.app.onBodyCutOff?.(connection);
      }
      this.closeIfDone(connection);
    });
    socket.on('drain', () => {
      connection.stalledSinceMs = -1;
      this.app.onDrain?.(connection, Date.now());
      this.deliver(connection);
      this.armTimer(connection);
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      this.timers.cancel(connection);
      this.stats.open--;
      if (connection.answersOwed > 0) this.app.onClosed?.(connection);
    });
  }

  /**
   * Hands the whole messages received to the application, one at a time, while the connection
   * owes fewer than `maxPipelined` answers and its socket's send buffer has room; past that the
   * socket is paused, so the kernel's receive buffer fills and the client's TCP holds the rest.
   * A body goes on as it comes (the socket paused while the application holds a window of it).
   */
  private deliver(connection: KernelConnection): void {
    if (connection.delivering) return; // the loop below looks again after each message
    connection.delivering = true;
    const queue = connection.received;
    let held = false;
    while (!connection.closeRequested && !this.isClosed(connection)) {
      if (connection.bodyStreaming) {
        if (queue.length === 0) break;
        // Held while the application looks at it, as in the responder (`Responder.deliver`).
        const offered = queue.length;
        connection.bodyHeld += offered;
        const taken = this.app.onBody!(connection, queue.bytes, queue.start, offered, Date.now());
        connection.bodyHeld -= offered - taken;
        queue.consume(taken);
        connection.bodyBytesSince += taken;
        if (connection.bodyBytesSince >= BODY_WINDOW_BYTES / 2) restartBodyClock(connection, Date.now());
        if (connection.bodyStreaming) break;
        continue;
      }
      const n = this.options.messageLength(queue.bytes, queue.start, queue.length);
      if (n === 0) break;
      if (connection.answersOwed >= this.options.maxPipelined || connection.socket.writableNeedDrain) {
        held = true;
        break;
      }
      const nowMs = Date.now();
      this.app.onMessages(connection, queue.bytes, queue.start, n, nowMs);
      queue.consume(n);
      // A message was completed: the deadline of what follows counts from now.
      connection.partialSinceMs = nowMs;
    }
    connection.delivering = false;
    if (connection.closeRequested) queue.consume(queue.length);
    if (held && !connection.held) this.stats.pipelineFull++;
    connection.held = held;
    this.updatePause(connection);
  }

  /** Reads while nothing is held back and the application holds less than a window of body. */
  private updatePause(connection: KernelConnection): void {
    const pause = connection.held || connection.bodyHeld >= BODY_WINDOW_BYTES;
    if (pause === connection.paused) return;
    connection.paused = pause;
    if (pause) connection.socket.pause();
    else connection.socket.resume();
  }

  /** Half-close our side once no answer is owed and nothing partial is held (as the stateless transport). */
  private closeIfDone(connection: KernelConnection): void {
    if (connection.answersOwed > 0 || connection.received.length > 0) return;
    if (this.options.closeAfterResponse || connection.clientEnded || connection.closeRequested) connection.socket.end();
  }

  /** Queues an answer's bytes; a full write buffer starts the clock of zeroWindowLimitMs. False once the buffer is full. */
  private send(connection: KernelConnection, data: Uint8Array, offset: number, length: number): boolean {
    if (write(connection, data, offset, length)) return true;
    if (connection.stalledSinceMs < 0) {
      connection.stalledSinceMs = Date.now();
      connection.writtenWhenStalled = connection.bytesWritten;
      this.armTimer(connection);
    }
    return false;
  }

  /** A connection's timer came due: the responder's deadlines, over a socket. */
  private runTimers(connection: KernelConnection, nowMs: number): void {
    if (connection.socket.destroyed) return;
    if (connection.stalledSinceMs >= 0 && nowMs - connection.stalledSinceMs >= this.options.zeroWindowLimitMs) {
      // The write buffer has stayed full: if the client took some of it meanwhile (as an ACK of
      // new data reopens the responder's window), its clock starts again; if none, it goes.
      const written = connection.bytesWritten;
      if (written === connection.writtenWhenStalled) {
        this.missedDeadline(connection);
        return;
      }
      connection.stalledSinceMs = nowMs;
      connection.writtenWhenStalled = written;
    }
    if (this.partialDeadline(connection) <= nowMs || bodyDeadline(connection, this.options.messageDeadlineMs) <= nowMs) {
      this.missedDeadline(connection);
    } else {
      this.armTimer(connection);
    }
  }

  /** When the partial message held (owing nothing) must be whole; Infinity if none is held. */
  private partialDeadline(connection: KernelConnection): number {
    if (connection.received.length === 0 || connection.answersOwed > 0) return Number.POSITIVE_INFINITY;
    return connection.partialSinceMs + this.options.messageDeadlineMs;
  }

  /** Files the connection in the timer wheel at its next deadline, or takes it out if it has none. */
  private armTimer(connection: KernelConnection): void {
    let dueMs = Math.min(this.partialDeadline(connection), bodyDeadline(connection, this.options.messageDeadlineMs));
    if (connection.stalledSinceMs >= 0) dueMs = Math.min(dueMs, connection.stalledSinceMs + this.options.zeroWindowLimitMs);
    if (dueMs === Number.POSITIVE_INFINITY || connection.socket.destroyed) this.timers.cancel(connection);
    else this.timers.schedule(connection, dueMs);
  }

  /** RST, as the responder drops a flow that missed a deadline. */
  private missedDeadline(connection: KernelConnection): void {
    this.stats.deadlinesMissed++;
    connection.socket.resetAndDestroy();
  }
}

/**
 * When a streaming body must have brought its next half window: within `deadlineMs`, counted
 * while the application holds less than half a window (the responder's rule, `bodyDeadline`).
 */
function bodyDeadline(connection: KernelConnection, deadlineMs: number): number {
  if (!connection.bodyStreaming || connection.bodyHeld >= BODY_WINDOW_BYTES / 2) return Number.POSITIVE_INFINITY;
  return connection.bodySinceMs + deadlineMs;
}

function restartBodyClock(connection: KernelConnection, nowMs: number): void {
  connection.bodySinceMs = nowMs;
  connection.bodyBytesSince = 0;
}

/** An IPv4-mapped IPv6 address (::ffff:a.b.c.d, how a dual-stack socket shows an IPv4 peer) as its 4 IPv4 bytes. */
function unmapped(address: Uint8Array): Uint8Array {
  return isV4Mapped(address) ? address.subarray(12) : address;
}
