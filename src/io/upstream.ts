/**
 * Sockets to the upstream DNS resolver: connected UDP sockets for queries, each on its own random
 * port (a pool of them for a resolver off this host, udp-port-pool.ts; batched both ways,
 * udp-batch.ts), and a few persistent TCP connections for queries whose UDP answer was truncated.
 */
import { randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import { RelayCounter, type TcpAnswerHandler, type UpstreamTransport } from '../dns/relay.js';
import { readId, wholeMessages, writeId } from '../dns/message.js';
import { ByteQueue } from '../tcp/byte-queue.js';
import { UdpPortPool } from './udp-port-pool.js';
import { addressBytes, formatEndpoint, type Endpoint } from '../endpoint.js';
import { ConnectionEndpoints, proxyHeaderLength, writeProxyHeader } from '../dns/proxy-protocol.js';

const UDP_RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024;

/** DNS IDs: a connection has at most this many queries outstanding. */
const ID_SPACE = 65536;

/** Persistent TCP connections to the upstream, for truncated answers, at most. */
const TCP_CONNECTIONS = 4;
/** Queries outstanding on each connection before another is opened (`connectionForQuery`); dnsdist's maxInFlight in the bench. */
const QUERIES_PER_CONNECTION = 100;
/**
 * What every upstream TCP connection of a thread reads into (net.Socket `onread`): each read is
 * copied into the connection's queue at once, so one buffer serves them all. Without it node
 * allocates an ArrayBuffer per read, garbage that set off V8's mark-compactor (byte-queue.ts).
 */
const readBuffer = Buffer.allocUnsafe(64 * 1024);

/** How the UDP queries leave: from how many sockets, and how long each keeps its port. */
export interface UpstreamPorts {
  /** Sockets (ports) queries are spread over at random. */
  sockets: number;
  /** A socket is replaced by one on a new random port after this many queries (Infinity: never for that reason)… */
  queriesPerPort: number;
  /** … or after this long, whichever comes first (Infinity: never for that reason). */
  portLifetimeMs: number;
}

export interface UdpTcpUpstreamOptions {
  ports: UpstreamPorts;
  /** Each UDP answer in place, `bytes[offset, offset+length)`, and the number of the socket it came on. */
  onAnswer: (bytes: Uint8Array, offset: number, length: number, socket: number) => void;
  /** The relay's counters: the upstream counts its port re-binds into them (RelayCounter.PORT_REBINDS…). */
  counts: Float64Array;
  /** The clock at start (the first sockets' age counts from it). */
  nowMs: number;
}

export class UdpTcpUpstream implements UpstreamTransport {
  private readonly udp: UdpPortPool;
  private readonly tcp: TcpUpstreamConnection[] = [];

  /**
   * Opens the UDP sockets, each connected from a random source port (RFC 5452 §9.2) so that only
   * the resolver's datagrams arrive. Throws an Error naming the failed call.
   */
  constructor(
    private readonly address: Endpoint,
    options: UdpTcpUpstreamOptions,
  ) {
    const { counts } = options;
    // Answers come in bursts while the event loop works through a batch of captured packets; the
    // default 208 KiB receive buffer overflowed under dnsperf (each lost answer is a SERVFAIL
    // after --timeout).
    this.udp = new UdpPortPool(
      {
        host: address.address,
        port: address.port,
        receiveBufferBytes: UDP_RECEIVE_BUFFER_BYTES,
        ...options.ports,
        onDatagram: options.onAnswer,
        onRebind: (postponed) => counts[postponed ? RelayCounter.PORT_REBINDS_POSTPONED : RelayCounter.PORT_REBINDS]!++,
      },
      options.nowMs,
    );
  }

  sendDatagram(query: Uint8Array, nowMs: number): number {
    return this.udp.send(query, nowMs);
  }

  resendDatagram(query: Uint8Array, socket: number): void {
    this.udp.resend(query, socket);
  }

  queryDone(socket: number): void {
    this.udp.queryDone(socket);
  }

  /** UDP sockets open now, those in use and those draining after their replacement (for tests). */
  get openUdpSockets(): number {
    return this.udp.openSockets;
  }

  /**
   * Asks over one of a few persistent TCP connections, pipelined (RFC 7766 §6.2.1.1): truncated
   * answers are common with DNSSEC, and a connection per retry would cost a handshake and leave
   * a TIME_WAIT socket behind each time.
   */
  queryOverTcp(query: Uint8Array, timeoutMs: number, onAnswer: TcpAnswerHandler, preamble?: Uint8Array): void {
    if (preamble !== undefined) {
      // A PROXY protocol header names one client for the whole connection: this query's own.
      const connection = new TcpUpstreamConnection(this.address, () => {}, preamble);
      connection.ask(query, timeoutMs, (answer, offset, length) => {
        onAnswer(answer === CONNECTION_CLOSED ? null : answer, offset, length);
        // Not from inside its own read loop: once that is done.
        queueMicrotask(() => connection.close());
      });
      return;
    }
    const deadline = Date.now() + timeoutMs;
    // A resolver closes TCP connections it finds idle or has too many of (unbound: tcp-idle-timeout,
    // incoming-num-tcp), and may do so just as a query is sent: that is no answer, so the query is
    // asked once more on another connection (RFC 7766 §6.2.1: a closed connection's outstanding
    // queries are retried), within the same time.
    let attempts = 0;
    const ask = (): void => {
      attempts++;
      this.connectionForQuery().ask(query, Math.max(1, deadline - Date.now()), (answer, offset, length) => {
        if (answer !== CONNECTION_CLOSED) onAnswer(answer, offset, length);
        else if (attempts < 2) queueMicrotask(ask);
        else onAnswer(null, 0, 0);
      });
    };
    ask();
  }

  /**
   * The least busy connection, and another (up to TCP_CONNECTIONS) only once every one has
   * QUERIES_PER_CONNECTION outstanding: queries are kept together on as few connections as will
   * carry them, because a resolver that leaves Nagle's algorithm on (unbound does) holds back an
   * answer until its previous one is acknowledged, and on a quiet connection our kernel delays
   * that ACK up to 40 ms. Measured (lab, 4 KB answers, 2026-12-03): spreading each shard's queries
   * over four connections, answers waited 0.9 ms at the median and 37 ms at p99 from our write
   * to their read; on one connection 0.7 ms and 5 ms, and stateless-tcp answered 36k qps, not 21k.
   */
  private connectionForQuery(): TcpUpstreamConnection {
    let least: TcpUpstreamConnection | undefined;
    for (const c of this.tcp) if (c.usable && (least === undefined || c.pending.size < least.pending.size)) least = c;
    if ((least === undefined || least.pending.size >= QUERIES_PER_CONNECTION) && this.tcp.length < TCP_CONNECTIONS) {
      const added: TcpUpstreamConnection = new TcpUpstreamConnection(this.address, () => {
        const index = this.tcp.indexOf(added);
        if (index >= 0) this.tcp.splice(index, 1);
      });
      this.tcp.push(added);
      return added;
    }
    // None usable and no room for another: a closing one, whose ask() reports it closed (and the
    // query is asked again, once, by then on a new connection).
    return least ?? this.tcp[0]!;
  }

  close(): void {
    this.udp.close();
    for (const connection of [...this.tcp]) connection.close();
  }
}

/**
 * One persistent TCP connection to the resolver. Each query gets an ID of this connection's own
 * (the relay restores the client's ID), so answers may come in any order (RFC 7766 §7).
 */
/** What `TcpUpstreamConnection.ask` hands over when the connection closed before the answer came. */
const CONNECTION_CLOSED = Symbol('connection closed');

/** `TcpAnswerHandler`, or CONNECTION_CLOSED. */
type AskHandler = (answer: Uint8Array | null | typeof CONNECTION_CLOSED, offset: number, length: number) => void;

class TcpUpstreamConnection {
  readonly pending = new Map<number, { onAnswer: AskHandler; timer: NodeJS.Timeout }>();
  private readonly socket: net.Socket;
  /** Bytes received that do not yet make a whole message. */
  private readonly received = new ByteQueue();
  private nextId = 0;
  private closed = false;
  /**
   * Whether the socket is corked until the next tick: the queries of one batch of captured frames
   * are asked in one turn, and go to the resolver in one write(2) instead of one each — on
   * loopback the writer also runs the resolver's side of TCP, per write (measured: writeBuffer
   * was 23 % of a shard worker's time under the big scenario).
   */
  private corked = false;
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  /** `preamble`: bytes the connection starts with (a PROXY protocol header). */
  constructor(
    address: Endpoint,
    private readonly onClose: () => void,
    preamble?: Uint8Array,
  ) {
    this.socket = net.connect({
      host: address.address,
      port: address.port,
      onread: { buffer: readBuffer, callback: (bytesRead: number, buffer: Uint8Array) => this.onData(buffer, bytesRead) },
    });
    if (preamble !== undefined) this.socket.write(preamble);
    this.socket.setNoDelay(true);
    this.socket.on('error', () => this.close());
    this.socket.on('close', () => this.close());
  }

  /** False once closing: no new queries (the resolver may close idle connections; a new one is made). */
  get usable(): boolean {
    return !this.closed;
  }

  /**
   * Hands `onAnswer` the answer, in place and valid during the call only; null after `timeoutMs`
   * or with every ID in use; CONNECTION_CLOSED if the connection closed first. Never from inside
   * this call.
   */
  ask(query: Uint8Array, timeoutMs: number, onAnswer: AskHandler): void {
    if (this.closed || this.pending.size === ID_SPACE) {
      const failure = this.closed ? CONNECTION_CLOSED : null;
      queueMicrotask(() => onAnswer(failure, 0, 0));
      return;
    }
    let id = this.nextId;
    while (this.pending.has(id)) id = (id + 1) & 0xffff;
    this.nextId = (id + 1) & 0xffff;
    const framed = Buffer.allocUnsafe(2 + query.length);
    framed.writeUInt16BE(query.length, 0);
    framed.set(query, 2);
    writeId(framed, 2, id);
    const timer = setTimeout(() => {
      this.pending.delete(id);
      onAnswer(null, 0, 0);
    }, timeoutMs);
    this.pending.set(id, { onAnswer, timer });
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.uncork);
    }
    this.socket.write(framed);
  }

  /** Always true: the socket keeps reading (false would pause it). */
  private onData(chunk: Uint8Array, bytesRead: number): boolean {
    const queue = this.received;
    queue.append(chunk, 0, bytesRead);
    const end = queue.start + wholeMessages(queue.bytes, queue.start, queue.length);
    for (let p = queue.start; p < end; ) {
      const length = (queue.bytes[p]! << 8) | queue.bytes[p + 1]!;
      const at = p + 2;
      p = at + length;
      const id = length < 2 ? -1 : readId(queue.bytes, at);
      const waiting = this.pending.get(id);
      if (waiting === undefined) continue; // timed out already
      this.pending.delete(id);
      clearTimeout(waiting.timer);
      // In place, no copy: the relay takes it now (a 4 KB copy per answer, as a new ArrayBuffer
      // each, kept V8's garbage collector busy under the big benchmark).
      waiting.onAnswer(queue.bytes, at, length);
    }
    queue.consume(end - queue.start);
    return true;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.destroy();
    for (const { onAnswer, timer } of this.pending.values()) {
      clearTimeout(timer);
      onAnswer(CONNECTION_CLOSED, 0, 0);
    }
    this.pending.clear();
    this.onClose();
  }
}

/** The question a probe asks (`--health-check-name`, `--health-check-type`). */
export interface ProbeQuestion {
  name: string;
  /** QTYPE as a number (RFC 3597 types included). */
  type: number;
}

/**
 * Checks that a DNS server answers `question` (by default `. SOA`, dnsdist's health check) at
 * `address` over UDP, at start-up and as a pool's health probe; any answer will do, even REFUSED.
 * Resolves to null, or to a one-line reason naming the fix.
 */
export async function probeUpstream(
  address: Endpoint,
  timeoutMs: number,
  proxyProtocol = false,
  question: ProbeQuestion = { name: '.', type: 6 },
): Promise<string | null> {
  const query = dnsPacket.encode({
    type: 'query',
    id: randomInt(65536),
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: 'A', name: question.name }],
  });
  // QTYPE is the question's (the message's last) 4 bytes' first half: written as a number, so
  // that types dns-packet has no name for (RFC 3597 TYPEnnn) can be asked too.
  query.writeUInt16BE(question.type, query.length - 4);
  const socket = dgram.createSocket({ type: address.family === 6 ? 'udp6' : 'udp4' });
  const where = formatEndpoint(address);
  const fix = proxyProtocol
    ? 'start the resolver, correct --upstream, or let it take PROXY protocol v2 there (unbound: proxy-protocol-port)'
    : 'start the resolver or correct --upstream';
  try {
    return await new Promise<string | null>((resolve) => {
      const timer = setTimeout(() => resolve(`upstream ${where} did not answer a DNS query within ${timeoutMs} ms: ${fix}`), timeoutMs);
      socket.on('error', (error) => {
        clearTimeout(timer);
        resolve(`upstream ${where} is unreachable (${error.message}): ${fix}`);
      });
      socket.on('message', (answer) => {
        if (answer.length >= 2 && answer.readUInt16BE(0) === query.readUInt16BE(0)) {
          clearTimeout(timer);
          resolve(null);
        }
      });
      socket.connect(address.port, address.address, () => {
        if (!proxyProtocol) {
          socket.send(query);
          return;
        }
        // The resolver takes only datagrams with a header there: one naming this socket itself.
        const local = socket.address();
        const endpoints = new ConnectionEndpoints();
        endpoints.family = address.family;
        endpoints.clientAddress.set(addressBytes(local.address));
        endpoints.serverAddress.set(addressBytes(address.address));
        endpoints.clientPort = local.port;
        endpoints.serverPort = address.port;
        const header = new Uint8Array(proxyHeaderLength(address.family));
        writeProxyHeader(endpoints, 'udp', header, 0);
        socket.send(Buffer.concat([header, query]));
      });
    });
  } finally {
    socket.close();
  }
}
