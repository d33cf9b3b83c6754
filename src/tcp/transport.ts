/**
 * The contract between a TCP transport and the application protocol on top of it. Two transports
 * implement it: the stateless responder (responder.ts, connection = its soft-state `Flow`) and
 * ordinary kernel sockets (io/kernel-transport.ts, connection = a socket). Two applications use
 * it: the DNS relay (dns/relay.ts) and the HTTP relay (http/relay.ts). Either relay runs on
 * either transport unchanged.
 *
 *   transport ── onMessages(whole messages) ──▶ relay ── upstream (UDP resolver, web server)
 *             ── onBody(a message's body, as it arrives) ──▶
 *   transport ◀── expectAnswer / answerPart / answer / closeWhenAnswered / reset ── relay
 *             ◀── beginBody / endBody / releaseBody ──
 *
 * Time: calls from the transport carry the time (`nowMs`); the relay reads its injected clock
 * for what happens on its own sockets (an upstream answer, a backend's response).
 */
import type { ConnectionEndpoints } from '../dns/proxy-protocol.js';

/**
 * The length of the whole message at the start of `buf[offset, offset+length)`, or 0 while it is
 * not whole yet (DNS: 2-byte length prefix + message, RFC 1035 §4.2.2; HTTP: a request, RFC 9112
 * §6). Bytes that can never start a message count as one whole message: the application answers
 * it with an error. Transports hand messages over one at a time, so that a connection never has
 * more than its limit of answers owed (`maxPipelined`).
 */
export type MessageLength = (buf: Uint8Array, offset: number, length: number) => number;

/** The bytes of the whole messages at the start of `buf[offset, offset+length)`, by `messageLength`. */
export function wholeMessagesBy(messageLength: MessageLength, buf: Uint8Array, offset: number, length: number): number {
  let p = 0;
  for (let n = messageLength(buf, offset, length); n > 0; n = messageLength(buf, offset + p, length - p)) p += n;
  return p;
}

/** What a transport offers the application for each connection of type `C`. */
export interface Transport<C> {
  /** One more answer will be given on `connection`: the transport keeps its state until then. */
  expectAnswer(connection: C): void;
  /**
   * Part of an answer still being produced (an HTTP body as it streams in), queued and sent as
   * the client's window allows; the answer stays owed. False once the connection's send buffer
   * is full (wait for `onDrain`) or the connection is closed.
   */
  answerPart(connection: C, data: Uint8Array, offset: number, length: number): boolean;
  /** The (last bytes of an) answer owed on `connection`; dropped and counted if it was closed meanwhile. */
  answer(connection: C, data: Uint8Array, offset: number, length: number): void;
  /**
   * Close our side once every owed answer is sent (HTTP `Connection: close`). What the client
   * sends after this is acknowledged but never delivered: RFC 9112 §9.6, a server "MUST NOT
   * process any further requests received on that connection".
   */
  closeWhenAnswered(connection: C, nowMs: number): void;
  /** Gives up on the connection with RST (a response that broke off mid-body). */
  reset(connection: C, nowMs: number): void;
  /**
   * Called during `onMessages`: the message just handed over is followed by a body the
   * application reads as it arrives (an HTTP upload), of a length only it can tell. Every byte
   * from here on goes to `onBody`, however few answers the connection may owe, until the
   * application calls `endBody`. What `onBody` took is held for the application and counts
   * against the connection's receive window and the queued-byte bounds until `releaseBody`, so
   * the client sends no faster than the application passes the body on.
   */
  beginBody(connection: C, nowMs: number): void;
  /**
   * Called during `onBody`: the body ended with the bytes it took; what follows is framed as
   * messages again.
   */
  endBody(connection: C): void;
  /**
   * The application is done with `length` bytes `onBody` took (its upstream has them, or they
   * were dropped): the receive window opens by as much.
   */
  releaseBody(connection: C, length: number, nowMs: number): void;
  /** Reset, aborted or given up: nothing more can be sent on it. */
  isClosed(connection: C): boolean;
  /** The client's address, for X-Forwarded-For. */
  clientAddress(connection: C): string;
  /**
   * Writes the client's address into `out` (4 or 16 bytes, network order) and returns its
   * length, without allocating: for per-client limits (dns/rate-limit.ts).
   */
  clientAddressBytes?(connection: C, out: Uint8Array): number;
  /** Both ends of the connection, written into `out` (PROXY protocol headers, dns/proxy-protocol.ts). */
  connectionEndpoints?(connection: C, out: ConnectionEndpoints): void;
  /** How long a connection may stay idle and still be served (RFC 7828 edns-tcp-keepalive tells DNS clients); unknown if absent. */
  readonly idleTimeoutMs?: number;
}

/** What the transport calls on the application. */
export interface StreamApplication<C> {
  /**
   * A whole message `buf[offset, offset+length)` (as the protocol's `messageLength` found it)
   * arrived on `connection`; the bytes are valid only during the call. For each answer it will
   * give, the application calls `expectAnswer(connection)` before returning. A transport holds
   * further messages back (unread, and out of the client's window) while the connection owes
   * `maxPipelined` answers or its send buffer is full, so one client's pipelining cannot take
   * what the others need.
   */
  onMessages(connection: C, buf: Uint8Array, offset: number, length: number, nowMs: number): void;
  /**
   * The next bytes of a body (after `beginBody`), valid only during the call; returns how many
   * belong to it — all of them, unless the body ends among them (and `endBody` was called).
   * They stay held (out of the receive window) until `releaseBody`.
   */
  onBody?(connection: C, buf: Uint8Array, offset: number, length: number, nowMs: number): number;
  /** The client closed its side (FIN) before the body ended: the rest will never come. */
  onBodyCutOff?(connection: C): void;
  /** After `answerPart` returned false: the connection's send queue has drained to half its bound. */
  onDrain?(connection: C, nowMs: number): void;
  /** The connection was reset or given up while answers were still owed on it: stop producing them. */
  onClosed?(connection: C): void;
}

/** The upstreams of a relay that has several (a pool of resolvers or web servers), as metrics.ts shows each one. */
export interface UpstreamsView {
  /** Each upstream's address as given (ADDR:PORT), in order: index N is the counters' `upstreamN_`. */
  readonly names: readonly string[];
  /** Whether upstream `index` is up (its health checks). */
  isUp(index: number): boolean;
  /** Called with each answer's latency in seconds, from the query leaving for upstream `index` (set by metrics.ts). */
  observeLatency: ((index: number, seconds: number) => void) | null;
}

/** A relay: the application of one protocol, with its own upstream sockets. */
export interface Relay<C> extends StreamApplication<C> {
  /** Counters, indexed like the protocol's `counterNames`. */
  readonly counts: Float64Array;
  /** Called with each upstream latency in seconds (metrics.ts), if set. */
  observeLatency: ((seconds: number) => void) | null;
  /** Several upstreams (a pool): each one's state and latency; else absent or null. */
  readonly upstreams?: UpstreamsView | null;
  /** Connects the transport that answers go to (built with this relay as its application). */
  attach(transport: Transport<C>): void;
  /** Timers (upstream timeouts and resends); call every few milliseconds. */
  tick(nowMs: number): void;
  /** Closes the upstream sockets. */
  close(): void;
}

/** What the transport needs to know of a protocol, and what its counters are called. */
export interface Protocol {
  readonly kind: 'dns' | 'http';
  readonly messageLength: MessageLength;
  /** Most answers a connection may owe before further messages are held back (`--max-pipelined`). */
  readonly maxPipelined: number;
  /**
   * Whether bytes could be the start of a message. The responder asks when a connection without
   * soft state sends data that its cookie does not prove to be the stream's first byte: if an
   * earlier segment was lost, this one starts mid-message and must not be read as a new one.
   */
  readonly plausibleStart: (buf: Uint8Array, offset: number, length: number) => boolean;
  /** Names of the relay's counters (`Relay.counts`), for metrics and the stop summary. */
  readonly counterNames: readonly string[];
}

/** A protocol bound to its upstream: how to check the upstream at start, and how to open relays to it. */
export interface Application extends Protocol {
  /**
   * Checks at start that the upstream answers; a one-line problem naming the fix, or null. Problems
   * that do not stop the start (a resolver of a pool whose others answer) go to `log`.
   */
  probe(log?: (line: string) => void): Promise<string | null>;
  /** A relay with its own upstream sockets (one per shard, or one for the kernel transport). */
  open<C>(): Relay<C>;
}
