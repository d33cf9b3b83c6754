/**
 * The DNS relay behind the TCP responder: each query goes over UDP to the upstream resolver, and
 * each answer goes back on the connection the query came on as soon as it arrives — answers may
 * overtake each other, which RFC 7766 §7 allows and clients match by ID.
 *
 * What it holds per query, only until the answer arrives: the connection, the client's query ID,
 * and the query as sent upstream.
 *
 * Upstream IDs: clients choose their query IDs independently, so each relayed query gets a fresh
 * random ID of ours (the client's is restored in the answer). Random IDs also make it hard for an
 * off-path forger to inject an answer (RFC 5452 §9.2): an answer is accepted only with the ID and
 * question of a pending query, arriving on the upstream socket (our random port) the query left
 * from.
 *
 * No I/O here: the upstream socket, the transport and the clock are injected (tcp/transport.ts).
 * The connection type is a parameter, so the same relay serves either transport.
 */
import {
  ClientSubnet,
  EdnsOption,
  HEADER_LENGTH,
  MessageLayout,
  RELAYED_QUERY_GROWTH,
  Rcode,
  SubnetChange,
  errorAnswer,
  isTruncated,
  readId,
  readQueryLayout,
  refusedAnswer,
  removeEdnsOption,
  removeOptRecord,
  sameQuestion,
  withClientSubnet,
  withEdnsOption,
  writeId,
  writeRelayedQuery,
} from './message.js';
import { TruncatedQuestions } from './truncated.js';
import type { PacketCache } from './cache.js';
import type { ClientRateLimit } from './rate-limit.js';
import { ConnectionEndpoints, proxyHeaderLength, writeProxyHeader } from './proxy-protocol.js';
import { counterNames } from '../counter-names.js';
import { isV4Mapped } from '../endpoint.js';
import type { Relay, Transport, UpstreamsView } from '../tcp/transport.js';

/**
 * The resolver as the relay sees it. UDP queries leave from one of several sockets, each on its own
 * random port (RFC 5452 §9.2); the relay keeps which one for each query, since only that socket may
 * bring its answer (RFC 5452 §9.1: the answer's destination port must be the query's source port).
 */
export interface UpstreamTransport {
  /**
   * Sends one query datagram to the upstream resolver from a socket of the transport's choosing;
   * returns that socket's number, for `resendDatagram`, `queryDone` and matching the answer; or −1
   * when no upstream is up (a pool whose health checks all fail): the query gets SERVFAIL at once.
   */
  sendDatagram(query: Uint8Array, nowMs: number): number;
  /**
   * A pool of upstreams: sends the query again, to another upstream that is up, since the one
   * behind `socket` has not answered within half the timeout; returns the new socket (the one the
   * answer must come on from now), or −1 when there is no other (then it is resent as before).
   * Absent for a single upstream.
   */
  failover?(query: Uint8Array, socket: number, nowMs: number): number;
  /** Sends a query again from the socket it first left from (`sendDatagram`'s number). */
  resendDatagram(query: Uint8Array, socket: number): void;
  /**
   * The query sent from `socket` is answered, `answeredAfterMs` after it was sent there, or given
   * up (UNANSWERED: its time, or its half of the time before a failover, ran out): once a socket
   * that is being replaced owes no answers it closes (each `sendDatagram` and `failover` is
   * followed by exactly one call). A pool counts it for that upstream, and unanswered ones
   * against its health.
   */
  queryDone(socket: number, answeredAfterMs: number): void;
  /**
   * Asks the query over TCP; hands `onAnswer` the answer (in place: valid during the call only),
   * or null on any failure or after `timeoutMs`, later, never from inside this call. With a
   * `preamble` (a PROXY protocol header), on a connection of its own that starts with it.
   */
  queryOverTcp(query: Uint8Array, timeoutMs: number, onAnswer: TcpAnswerHandler, preamble?: Uint8Array): void;
  close(): void;
}

/** An answer over TCP: `answer[offset, offset + length)`, or null for none. */
export type TcpAnswerHandler = (answer: Uint8Array | null, offset: number, length: number) => void;

export interface DnsRelayOptions {
  /** How long to wait for an upstream answer before answering SERVFAIL. */
  timeoutMs: number;
  upstream: UpstreamTransport;
  /** Fills its argument with random bytes (upstream query IDs). */
  fillRandom: (bytes: Uint8Array) => void;
  /** The clock for the relay's own events: upstream answers, TCP retries. */
  now: () => number;
  /**
   * The relay's counters (`RELAY_COUNTER_NAMES.length` of them, or more: a pool's per-upstream counters follow), when the upstream counts its own
   * events (`PORT_REBINDS`, `PORT_REBINDS_POSTPONED`) into the same array; else the relay makes one.
   */
  counts?: Float64Array;
  /** Answers kept and served again (cache.ts); none when absent. */
  cache?: PacketCache | null;
  /** Queries per second per client network (rate-limit.ts); no limit when absent. */
  rateLimit?: ClientRateLimit | null;
  /** What a query over the limit gets: REFUSED, or nothing at all. */
  rateLimitAction?: 'refuse' | 'drop';
  /** Each query to the upstream starts with a PROXY protocol v2 header naming the client (proxy-protocol.ts). */
  proxyProtocol?: boolean;
  /** Each query to the upstream carries the client's network in a client subnet option (RFC 7871); none when absent. */
  clientSubnet?: ClientSubnetOptions | null;
  /** A pool of upstreams: each one's state and latency for metrics. */
  upstreams?: UpstreamsView | null;
}

/** `--ecs`: how much of the client's address the resolver is told (RFC 7871 §11.1: no more than needed). */
export interface ClientSubnetOptions {
  ipv4PrefixLength: number;
  ipv6PrefixLength: number;
  /** Replace a client's own option (`--ecs-override`) rather than keep it. */
  override: boolean;
}

/** `queryDone`'s `answeredAfterMs` for a query that got no answer from that socket. */
export const UNANSWERED = -1;

/**
 * UDP loses datagrams (a busy resolver's receive buffer overflows first): a query still without
 * an answer is sent again at each quarter of the timeout, as stub resolvers do (RFC 1035 §4.2.1).
 */
const UDP_SENDS = 4;

/** Relay counters, indices into `RelayStats.counts`. */
export const RelayCounter = {
  QUERIES: 0,
  ANSWERS: 1,
  FORMERR: 2,
  SERVFAIL_TIMEOUT: 3,
  TRUNCATED_RETRIED_TCP: 4,
  TCP_RETRY_FAILED: 5,
  UNEXPECTED_ANSWERS: 6,
  ID_EXHAUSTED: 7,
  /** Queries sent to the upstream again for want of an answer. */
  UDP_RETRIES: 8,
  /** Queries sent to the upstream over TCP at once: their question was truncated over UDP lately (truncated.ts). */
  SENT_OVER_TCP: 9,
  /**
   * Answers with the ID and question of a pending query that arrived on another of the upstream
   * sockets than the query left from: dropped (RFC 5452 §9.1), the query still waits for its own.
   */
  ANSWERS_WRONG_PORT: 10,
  /** Upstream sockets replaced by a fresh one on a new random port (counted by the upstream). */
  PORT_REBINDS: 11,
  /** Replacements put off: as many old sockets were still draining as the limit allows (counted by the upstream). */
  PORT_REBINDS_POSTPONED: 12,
  /** Queries answered from the packet cache, and those looked up there in vain (cache.ts). */
  CACHE_HITS: 13,
  CACHE_MISSES: 14,
  /** Queries over `--max-qps-per-client`: answered REFUSED, or dropped. */
  RATE_LIMITED: 15,
  /** Queries answered SERVFAIL at once: every upstream of the pool was down (its health checks failed). */
  NO_UPSTREAM_UP: 16,
  /** Queries sent to another upstream of the pool after half the timeout without an answer. */
  FAILOVERS: 17,
  /** Upstreams of the pool marked down, and up again, by their health checks (counted by the pool). */
  UPSTREAMS_MARKED_DOWN: 18,
  UPSTREAMS_MARKED_UP: 19,
} as const;
export const RELAY_COUNTER_NAMES = counterNames(RelayCounter);

const NO_BYTES = new Uint8Array(0);

/** A query waiting for its upstream answer. */
class PendingQuery<Connection> {
  constructor(
    /** Cleared once answered: the deadline queue keeps this object until its deadline. */
    public connection: Connection | null,
    readonly clientId: number,
    readonly upstreamId: number,
    /** The query as sent upstream (our ID), kept to check the answer's question and for a TCP retry. */
    public query: Uint8Array,
    /** What goes in the UDP datagram: the query, behind a PROXY protocol header if there is one. */
    public datagram: Uint8Array,
    readonly deadline: number,
    /** The upstream socket it left from (`UpstreamTransport.sendDatagram`, or `failover`), −1 if sent over TCP only. */
    public socket: number,
    /** When it was sent from `socket` (the upstream's latency counts from then). */
    public sentMs: number,
    /** The client asked for edns-tcp-keepalive (RFC 7828): its answer gets the option. */
    readonly keepalive: boolean,
    /** What the relay did to its client subnet option, undone in the answer (`SubnetChange`). */
    readonly subnetChange: SubnetChange,
    /** The client's own client subnet option, when it was replaced (given back in the answer); else null. */
    public clientSubnet: Uint8Array | null,
  ) {}
}

const ID_SPACE = 65536;
/** Random bytes fetched at a time for upstream IDs (one crypto call per 2048 queries). */
const RANDOM_POOL_BYTES = 4096;

export class DnsRelay<Connection> implements Relay<Connection> {
  readonly counts: Float64Array;
  /** Pending queries by upstream ID. */
  private readonly pending: (PendingQuery<Connection> | undefined)[] = new Array(ID_SPACE);
  private pendingCount = 0;
  /** Pending queries in deadline order (all share one timeout, so arrival order is deadline order). */
  private readonly deadlines: PendingQuery<Connection>[] = [];
  observeLatency: ((seconds: number) => void) | null = null;
  private deadlinesHead = 0;
  /** For each resend k = 1 … UDP_SENDS − 1: the first query in `deadlines` not yet due for it. */
  private readonly resendHeads = new Array<number>(UDP_SENDS).fill(0);
  private readonly randomPool = new Uint8Array(RANDOM_POOL_BYTES);
  private randomPos = RANDOM_POOL_BYTES;
  /** The connection whose query is being relayed, and its PROXY protocol header (`proxyHeaderFor`). */
  private readonly endpoints = new ConnectionEndpoints();
  private readonly proxyHeader = new Uint8Array(proxyHeaderLength(6));
  /** The client address of the query being relayed (`clientAddressOf`). */
  private readonly clientAddress = new Uint8Array(16);
  /** The query being relayed: where its parts are, and its copy for the resolver (`writeRelayedQuery`). */
  private readonly layout = new MessageLayout();
  private relayed = new Uint8Array(4096 + RELAYED_QUERY_GROWTH);
  /** The client subnet option for the query being relayed (`clientSubnetFor`). */
  private readonly subnet = new ClientSubnet();
  /** An answer with the client's own client subnet option given back (`sendToClient`; `--ecs-override` only). */
  private readonly withClientSubnet: Uint8Array;
  /** REFUSED answers are made here (`refusedAnswer`): at most a header and a question. */
  private readonly scratchAnswer = new Uint8Array(HEADER_LENGTH + 260);
  /** An answer with edns-tcp-keepalive added (`sendAnswer`). */
  private withKeepalive = new Uint8Array(4096 + 6);
  /** An answer framed for the wire: 2-byte length + message (RFC 1035 §4.2.2). */
  private framed = new Uint8Array(2 + 4096);
  private answers: Transport<Connection> | null = null;
  private readonly truncated: TruncatedQuestions;
  private readonly upstream: UpstreamTransport;
  readonly upstreams: UpstreamsView | null;

  constructor(private readonly config: DnsRelayOptions) {
    this.upstream = config.upstream;
    this.upstreams = config.upstreams ?? null;
    this.subnet.override = config.clientSubnet?.override ?? false;
    this.withClientSubnet = new Uint8Array(this.subnet.override ? 0xffff : 0);
    this.counts = config.counts ?? new Float64Array(RELAY_COUNTER_NAMES.length);
    const seed = new Uint8Array(4);
    config.fillRandom(seed);
    this.truncated = new TruncatedQuestions((seed[0]! << 24) | (seed[1]! << 16) | (seed[2]! << 8) | seed[3]!);
  }

  attach(answers: Transport<Connection>): void {
    this.answers = answers;
  }

  close(): void {
    this.upstream.close();
  }

  get pendingQueries(): number {
    return this.pendingCount;
  }

  /** Relays the whole framed messages at `buf[offset, offset+length)` that arrived on `connection`. */
  onMessages(connection: Connection, buf: Uint8Array, offset: number, length: number, nowMs: number): void {
    const end = offset + length;
    for (let p = offset; p < end; ) {
      const n = (buf[p]! << 8) | buf[p + 1]!;
      this.relayQuery(connection, buf, p + 2, n, nowMs);
      p += 2 + n;
    }
  }

  private relayQuery(connection: Connection, buf: Uint8Array, offset: number, length: number, nowMs: number): void {
    this.counts[RelayCounter.QUERIES]!++;
    const addressLength = this.clientAddressOf(connection);
    if (this.config.rateLimit && addressLength > 0 && !this.config.rateLimit.allow(this.clientAddress, addressLength, nowMs)) {
      this.counts[RelayCounter.RATE_LIMITED]!++;
      if (this.config.rateLimitAction === 'drop') return;
      this.answers!.expectAnswer(connection);
      const n = refusedAnswer(buf, offset, length, this.scratchAnswer);
      if (n >= 0) this.send(connection, this.scratchAnswer, 0, n);
      else this.send(connection, errorAnswer(buf, offset, length, Rcode.REFUSED));
      return;
    }
    this.answers!.expectAnswer(connection);
    // The query is walked once, here; all below reuses what this found.
    const layout = this.layout;
    if (!readQueryLayout(buf, offset, length, layout)) {
      this.counts[RelayCounter.FORMERR]!++;
      this.send(connection, errorAnswer(buf, offset, length, Rcode.FORMERR));
      return;
    }
    const keepalive = layout.keepaliveAt >= 0;
    const clientOptionAt = layout.clientSubnetAt < 0 ? -1 : offset + layout.clientSubnetAt;
    if (this.relayed.length < length + RELAYED_QUERY_GROWTH) this.relayed = new Uint8Array(length + RELAYED_QUERY_GROWTH);
    // The query as the resolver gets it: rewritten into `relayed`, or the client's bytes as they are.
    let relayed: Uint8Array = this.relayed;
    let relayedAt = 0;
    let n = writeRelayedQuery(buf, offset, length, layout, this.clientSubnetFor(addressLength), relayed);
    if (n < 0) {
      relayed = buf;
      relayedAt = offset;
      n = length;
    }
    const subnetChange = layout.subnetChange;
    const cache = this.config.cache;
    if (cache) {
      // Keyed on the query as the resolver sees it: with a client subnet, one network's answer
      // is never served to another.
      const answerLength = cache.lookup(relayed, relayedAt, n, nowMs, layout);
      if (answerLength >= 0) {
        this.counts[RelayCounter.CACHE_HITS]!++;
        this.counts[RelayCounter.ANSWERS]!++;
        this.sendToClient(connection, cache.out, 0, answerLength, keepalive, subnetChange, buf, clientOptionAt);
        return;
      }
      this.counts[RelayCounter.CACHE_MISSES]!++;
    }
    // A copy: `buf` is the capture buffer, overwritten by the next packet. (Not `buf.slice`: on a
    // Node Buffer that is a view.)
    const header = this.proxyHeaderFor(connection, 'udp');
    const datagram = new Uint8Array(header + n);
    if (header > 0) datagram.set(this.proxyHeader.subarray(0, header));
    datagram.set(relayed.subarray(relayedAt, relayedAt + n), header);
    const query = datagram.subarray(header);
    // The client's own option, replaced for the resolver, is given back in the answer: a copy too.
    const clientSubnet =
      subnetChange === SubnetChange.REPLACED
        ? new Uint8Array(buf.subarray(clientOptionAt, clientOptionAt + 4 + ((buf[clientOptionAt + 2]! << 8) | buf[clientOptionAt + 3]!)))
        : null;
    const clientId = readId(query, 0);
    const deadline = nowMs + this.config.timeoutMs;
    if (this.truncated.isRecent(query, 0, layout.questionEnd, nowMs)) {
      this.counts[RelayCounter.SENT_OVER_TCP]!++;
      this.askOverTcp(
        new PendingQuery(connection, clientId, -1, query, datagram, deadline, -1, nowMs, keepalive, subnetChange, clientSubnet),
      );
      return;
    }
    const upstreamId = this.freeId();
    if (upstreamId < 0) {
      this.counts[RelayCounter.ID_EXHAUSTED]!++;
      this.send(connection, errorAnswer(buf, offset, length, Rcode.SERVFAIL));
      return;
    }
    writeId(query, 0, upstreamId);
    const socket = this.upstream.sendDatagram(datagram, nowMs);
    if (socket < 0) {
      // Every upstream is down: waiting out the timeout would tell the client nothing more.
      this.counts[RelayCounter.NO_UPSTREAM_UP]!++;
      this.send(connection, errorAnswer(buf, offset, length, Rcode.SERVFAIL));
      return;
    }
    const pending = new PendingQuery(
      connection,
      clientId,
      upstreamId,
      query,
      datagram,
      deadline,
      socket,
      nowMs,
      keepalive,
      subnetChange,
      clientSubnet,
    );
    this.pending[upstreamId] = pending;
    this.pendingCount++;
    this.deadlines.push(pending);
  }

  /**
   * An answer datagram from the upstream resolver, `buf[offset, offset+length)`, received on
   * upstream socket `socket`: read, and its ID rewritten, in place; done with when this returns.
   * (The socket is connected to the resolver, so the kernel has already refused datagrams from any
   * other address or port; RFC 5452 §9.1 asks the rest: our port, the ID and the question.)
   */
  handleUpstreamAnswer(buf: Uint8Array, offset: number, length: number, socket: number): void {
    const nowMs = this.config.now();
    if (length < HEADER_LENGTH) {
      this.counts[RelayCounter.UNEXPECTED_ANSWERS]!++;
      return;
    }
    const pending = this.pending[readId(buf, offset)];
    const questionless = pending !== undefined && isQuestionlessError(buf, offset, length);
    if (pending === undefined || (!questionless && !sameQuestion(buf, offset, length, pending.query, 0, pending.query.length))) {
      this.counts[RelayCounter.UNEXPECTED_ANSWERS]!++;
      return;
    }
    if (pending.socket !== socket) {
      // Right ID and question, wrong port: a forger who guessed the ID but not which of our ports
      // the query left from. The query keeps waiting for the answer on its own socket.
      this.counts[RelayCounter.ANSWERS_WRONG_PORT]!++;
      return;
    }
    this.release(pending, nowMs - pending.sentMs);
    if (questionless) {
      // The client gets the error with its question (RFC 1035 §4.1.1 echoes it).
      const error = errorAnswer(pending.query, 0, pending.query.length, buf[offset + 3]! & 0x0f);
      this.deliver(pending, error, 0, error.length, nowMs);
      return;
    }
    if (isTruncated(buf, offset)) {
      // RFC 7766 §5 / RFC 1035 §4.2.1: a truncated UDP answer means "ask again over TCP"; a TCP
      // client must get the whole answer, never TC=1.
      this.counts[RelayCounter.TRUNCATED_RETRIED_TCP]!++;
      this.truncated.remember(pending.query, 0, pending.query.length, nowMs);
      this.askOverTcp(pending);
      return;
    }
    this.deliver(pending, buf, offset, length, nowMs);
  }

  /** Asks the upstream over TCP and delivers its answer, or SERVFAIL. */
  private askOverTcp(pending: PendingQuery<Connection>): void {
    const header = pending.connection === null ? 0 : this.proxyHeaderFor(pending.connection, 'tcp');
    const preamble = header > 0 ? this.proxyHeader.slice(0, header) : undefined;
    const onAnswer: TcpAnswerHandler = (answer, offset, length) => {
      if (answer !== null && length >= HEADER_LENGTH && sameQuestion(answer, offset, length, pending.query, 0, pending.query.length)) {
        this.deliver(pending, answer, offset, length, this.config.now());
      } else {
        this.counts[RelayCounter.TCP_RETRY_FAILED]!++;
        this.deliverError(pending, this.config.now());
      }
    };
    this.upstream.queryOverTcp(pending.query, this.config.timeoutMs, onAnswer, preamble);
  }

  /** Resends queries still unanswered, and answers SERVFAIL to every one whose deadline has passed. */
  tick(nowMs: number): void {
    const d = this.deadlines;
    const timeout = this.config.timeoutMs;
    for (let k = 1; k < UDP_SENDS; k++) {
      // Due for resend k once k quarters of the timeout have passed since it was relayed.
      const dueBefore = nowMs + timeout - (k * timeout) / UDP_SENDS;
      let i = Math.max(this.resendHeads[k]!, this.deadlinesHead);
      for (; i < d.length && d[i]!.deadline <= dueBefore; i++) {
        const pending = d[i]!;
        if (this.pending[pending.upstreamId] !== pending) continue;
        if (k === UDP_SENDS / 2 && this.upstream.failover !== undefined) {
          // Half the timeout gone without an answer: another upstream of the pool gets the other
          // half (dnsdist retries a timed-out query likewise, on the next server the policy picks).
          const socket = this.upstream.failover(pending.datagram, pending.socket, nowMs);
          if (socket >= 0) {
            this.counts[RelayCounter.FAILOVERS]!++;
            this.upstream.queryDone(pending.socket, UNANSWERED);
            pending.socket = socket;
            pending.sentMs = nowMs;
            continue;
          }
        }
        this.counts[RelayCounter.UDP_RETRIES]!++;
        this.upstream.resendDatagram(pending.datagram, pending.socket);
      }
      this.resendHeads[k] = i;
    }
    while (this.deadlinesHead < d.length && d[this.deadlinesHead]!.deadline <= nowMs) {
      const pending = d[this.deadlinesHead++]!;
      if (this.pending[pending.upstreamId] !== pending) continue; // answered already
      this.release(pending, UNANSWERED);
      this.counts[RelayCounter.SERVFAIL_TIMEOUT]!++;
      this.deliverError(pending, nowMs);
    }
    // Compact the queue once its consumed prefix dominates, so it never grows without bound.
    if (this.deadlinesHead > 1024 && this.deadlinesHead * 2 > d.length) {
      d.splice(0, this.deadlinesHead);
      for (let k = 1; k < UDP_SENDS; k++) this.resendHeads[k] = Math.max(0, this.resendHeads[k]! - this.deadlinesHead);
      this.deadlinesHead = 0;
    }
  }

  /**
   * A query sent over UDP is answered (`answeredAfterMs` after it left its socket) or given up
   * (UNANSWERED): its ID is free, and its socket owes one answer less.
   */
  private release(pending: PendingQuery<Connection>, answeredAfterMs: number): void {
    this.pending[pending.upstreamId] = undefined;
    this.pendingCount--;
    this.upstream.queryDone(pending.socket, answeredAfterMs);
  }

  private deliverError(pending: PendingQuery<Connection>, nowMs: number): void {
    const servfail = errorAnswer(pending.query, 0, pending.query.length, Rcode.SERVFAIL);
    this.deliver(pending, servfail, 0, servfail.length, nowMs);
  }

  private deliver(pending: PendingQuery<Connection>, buf: Uint8Array, offset: number, length: number, nowMs: number): void {
    // The query as sent upstream differs from the client's in its ID only, which the key leaves out.
    this.config.cache?.store(pending.query, 0, pending.query.length, buf, offset, length, nowMs);
    writeId(buf, offset, pending.clientId);
    this.counts[RelayCounter.ANSWERS]!++;
    // Every query shares the timeout, so its deadline tells when it was relayed.
    this.observeLatency?.((nowMs - (pending.deadline - this.config.timeoutMs)) / 1000);
    const clientSubnet = pending.clientSubnet ?? NO_BYTES;
    this.sendToClient(pending.connection!, buf, offset, length, pending.keepalive, pending.subnetChange, clientSubnet, 0);
    // The deadline queue still holds `pending` until its deadline: let the connection and the
    // query go now rather than then.
    pending.connection = null;
    pending.query = NO_BYTES;
    pending.datagram = NO_BYTES;
    pending.clientSubnet = null;
  }

  /** With `proxyProtocol`, writes the header naming the connection's client into `proxyHeader` and returns its length; else 0. */
  private proxyHeaderFor(connection: Connection, transport: 'udp' | 'tcp'): number {
    const answers = this.answers!;
    if (!this.config.proxyProtocol || answers.connectionEndpoints === undefined) return 0;
    answers.connectionEndpoints(connection, this.endpoints);
    return writeProxyHeader(this.endpoints, transport, this.proxyHeader, 0);
  }

  /** With a rate limit or client subnets, writes the connection's client address into `clientAddress` and returns its length; else 0. */
  private clientAddressOf(connection: Connection): number {
    const answers = this.answers!;
    if ((!this.config.rateLimit && !this.config.clientSubnet) || answers.clientAddressBytes === undefined) return 0;
    return answers.clientAddressBytes(connection, this.clientAddress);
  }

  /**
   * With `--ecs`, the client subnet option for the client whose address is in `clientAddress`
   * (`addressLength` bytes): its network of the configured prefix length, an IPv4-mapped IPv6
   * address (the kernel transport's dual-stack sockets) as the IPv4 address it is; else null.
   */
  private clientSubnetFor(addressLength: number): ClientSubnet | null {
    const options = this.config.clientSubnet;
    if (!options || addressLength === 0) return null;
    const subnet = this.subnet;
    const v4Mapped = addressLength === 16 && isV4Mapped(this.clientAddress);
    if (addressLength === 4 || v4Mapped) {
      subnet.family = 1;
      subnet.sourcePrefixLength = options.ipv4PrefixLength;
      subnet.address.set(this.clientAddress.subarray(v4Mapped ? 12 : 0, v4Mapped ? 16 : 4));
    } else {
      subnet.family = 2;
      subnet.sourcePrefixLength = options.ipv6PrefixLength;
      subnet.address.set(this.clientAddress);
    }
    return subnet;
  }

  /**
   * The resolver's answer `buf[offset, offset+length)` (changed in place) to the client, with what
   * the relay did to the query's client subnet option undone (`SubnetChange`; RFC 7871 §7.2.2):
   * the OPT record or the option it added taken out, or the client's own option,
   * `clientSubnet[clientSubnetAt, …)`, given back in place of the one it replaced.
   */
  private sendToClient(
    connection: Connection,
    buf: Uint8Array,
    offset: number,
    length: number,
    keepalive: boolean,
    subnetChange: SubnetChange,
    clientSubnet: Uint8Array,
    clientSubnetAt: number,
  ): void {
    if (subnetChange === SubnetChange.OPT_ADDED) length = removeOptRecord(buf, offset, length);
    else if (subnetChange === SubnetChange.OPTION_ADDED) length = removeEdnsOption(buf, offset, length, EdnsOption.CLIENT_SUBNET);
    else if (subnetChange === SubnetChange.REPLACED) {
      const n = withClientSubnet(buf, offset, length, clientSubnet, clientSubnetAt, this.withClientSubnet);
      if (n >= 0) {
        this.sendAnswer(connection, this.withClientSubnet, 0, n, keepalive);
        return;
      }
    }
    this.sendAnswer(connection, buf, offset, length, keepalive);
  }

  /**
   * An answer to a query that asked for edns-tcp-keepalive gets it, with the time the transport
   * lets an idle connection live, in units of 100 ms (RFC 7828 §3.3.2): the client may keep the
   * connection open that long.
   */
  private sendAnswer(connection: Connection, buf: Uint8Array, offset: number, length: number, keepalive: boolean): void {
    const idleMs = this.answers!.idleTimeoutMs;
    if (keepalive && idleMs !== undefined) {
      if (this.withKeepalive.length < length + 6) this.withKeepalive = new Uint8Array(65535);
      const timeout = Math.min(0xffff, Math.floor(idleMs / 100));
      const n = withEdnsOption(buf, offset, length, EdnsOption.TCP_KEEPALIVE, timeout, this.withKeepalive);
      if (n >= 0) {
        this.send(connection, this.withKeepalive, 0, n);
        return;
      }
    }
    this.send(connection, buf, offset, length);
  }

  private send(connection: Connection, buf: Uint8Array, offset = 0, length = buf.length): void {
    if (this.framed.length < 2 + length) this.framed = new Uint8Array(2 + 65535);
    this.framed[0] = length >>> 8;
    this.framed[1] = length;
    this.framed.set(offset === 0 && length === buf.length ? buf : buf.subarray(offset, offset + length), 2);
    this.answers!.answer(connection, this.framed, 0, 2 + length);
  }

  /** A random upstream ID not in use, or -1 if all 65536 are. */
  private freeId(): number {
    if (this.pendingCount >= ID_SPACE) return -1;
    for (;;) {
      if (this.randomPos + 2 > RANDOM_POOL_BYTES) {
        this.config.fillRandom(this.randomPool);
        this.randomPos = 0;
      }
      const id = (this.randomPool[this.randomPos]! << 8) | this.randomPool[this.randomPos + 1]!;
      this.randomPos += 2;
      if (this.pending[id] === undefined) return id;
    }
  }
}

/**
 * An error answer without its question: unbound answers REFUSED that way (access control), and
 * others FORMERR or NOTIMP. Matched by ID and port alone, as dnsdist does for error RCODEs; never
 * NOERROR or NXDOMAIN, whose question must match (RFC 5452 §9.1), since those carry data.
 */
function isQuestionlessError(buf: Uint8Array, offset: number, length: number): boolean {
  if (length !== HEADER_LENGTH || buf[offset + 4] !== 0 || buf[offset + 5] !== 0) return false;
  const rcode = buf[offset + 3]! & 0x0f;
  return rcode !== Rcode.NOERROR && rcode !== Rcode.NXDOMAIN && (buf[offset + 2]! & 0x80) !== 0;
}
