/**
 * The DNS relay behind the stateless TCP responder: each query in a request goes over UDP to the
 * upstream resolver; when every query of the request has its answer, the answers go back to the
 * client as one train of TCP segments.
 *
 * This is the only state we hold, and only while an upstream answer is outstanding (an
 * "exchange"): the response's segment header template and the answers gathered so far. Idle and
 * half-open connections hold nothing.
 *
 * Upstream IDs: clients choose their query IDs independently, so each relayed query gets a fresh
 * random ID of ours (the client's is restored in the answer). Random IDs also make it hard for an
 * off-path forger to inject an answer (RFC 5452 §9.2), and an answer is accepted only if its
 * question matches the query's.
 *
 * No I/O here: the upstream socket and the segment sink are injected, and time is passed in.
 */
import { ReplyHeader } from '../wire/segment.js';
import { cutResponse, type SegmentSink } from '../tcp/responder.js';
import {
  HEADER_LENGTH,
  Rcode,
  errorAnswer,
  isRelayableQuery,
  isTruncated,
  readId,
  sameQuestion,
  writeId,
} from './message.js';

export interface UpstreamTransport {
  /** Sends one query datagram to the upstream resolver. */
  sendDatagram(query: Uint8Array): void;
  /** Asks the query over TCP; resolves to the answer, or null on any failure or after `timeoutMs`. */
  queryOverTcp(query: Uint8Array, timeoutMs: number): Promise<Uint8Array | null>;
}

export interface RelayConfig {
  /** How long to wait for an upstream answer before answering SERVFAIL (RFC 8767 suggests ≤ 1.8 s clients). */
  timeoutMs: number;
  /** Close our side with FIN after the response (the talk's transaction mode). */
  closeAfterResponse: boolean;
}

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
} as const;
export const RELAY_COUNTER_NAMES: readonly string[] = [
  'queries',
  'answers',
  'formerr',
  'servfail_timeout',
  'truncated_retried_tcp',
  'tcp_retry_failed',
  'unexpected_answers',
  'id_exhausted',
];

/** One client request: one or more queries whose answers go back together. */
class Exchange {
  readonly header = new ReplyHeader();
  peerMss = 0;
  answers: (Uint8Array | null)[] = [];
  remaining = 0;
}

/** A query waiting for its upstream answer. */
class PendingQuery {
  constructor(
    readonly exchange: Exchange,
    readonly index: number,
    readonly clientId: number,
    readonly upstreamId: number,
    /** The query as sent upstream (our ID), kept to check the answer's question and for a TCP retry. */
    readonly query: Uint8Array,
    readonly deadline: number,
  ) {}
}

const ID_SPACE = 65536;
/** Random bytes fetched at a time for upstream IDs (one crypto call per 2048 queries). */
const RANDOM_POOL_BYTES = 4096;

export class DnsRelay {
  readonly counts = new Float64Array(RELAY_COUNTER_NAMES.length);
  /** Pending queries by upstream ID. */
  private readonly pending: (PendingQuery | undefined)[] = new Array(ID_SPACE);
  private pendingCount = 0;
  /** Pending queries in deadline order (all share one timeout, so arrival order is deadline order). */
  private readonly deadlines: PendingQuery[] = [];
  private deadlinesHead = 0;
  private readonly randomPool = new Uint8Array(RANDOM_POOL_BYTES);
  private randomPos = RANDOM_POOL_BYTES;
  /** Assembly buffer for a response's framed answers; grows to the largest response seen. */
  private responseBuffer = new Uint8Array(4096);

  constructor(
    private readonly config: RelayConfig,
    private readonly upstream: UpstreamTransport,
    private readonly sink: SegmentSink,
    private readonly fillRandom: (bytes: Uint8Array) => void,
  ) {}

  get pendingQueries(): number {
    return this.pendingCount;
  }

  /**
   * Relays the framed messages at `buf[offset, offset+length)` (whole messages only, as the
   * responder acknowledged them). `header` is the template for the response segments.
   */
  handleRequest(
    buf: Uint8Array,
    offset: number,
    length: number,
    header: ReplyHeader,
    peerMss: number,
    nowMs: number,
  ): void {
    const exchange = new Exchange();
    exchange.header.copyFrom(header);
    exchange.peerMss = peerMss;
    const end = offset + length;
    for (let p = offset; p < end; ) {
      const n = (buf[p]! << 8) | buf[p + 1]!;
      exchange.answers.push(null);
      exchange.remaining++;
      this.relayQuery(exchange, exchange.answers.length - 1, buf, p + 2, n, nowMs);
      p += 2 + n;
    }
  }

  private relayQuery(exchange: Exchange, index: number, buf: Uint8Array, offset: number, length: number, nowMs: number): void {
    this.counts[RelayCounter.QUERIES]!++;
    if (!isRelayableQuery(buf, offset, length)) {
      this.counts[RelayCounter.FORMERR]!++;
      this.answer(exchange, index, errorAnswer(buf, offset, length, Rcode.FORMERR));
      return;
    }
    const upstreamId = this.freeId();
    if (upstreamId < 0) {
      this.counts[RelayCounter.ID_EXHAUSTED]!++;
      this.answer(exchange, index, errorAnswer(buf, offset, length, Rcode.SERVFAIL));
      return;
    }
    const query = buf.slice(offset, offset + length);
    const clientId = readId(query, 0);
    writeId(query, 0, upstreamId);
    const pending = new PendingQuery(exchange, index, clientId, upstreamId, query, nowMs + this.config.timeoutMs);
    this.pending[upstreamId] = pending;
    this.pendingCount++;
    this.deadlines.push(pending);
    this.upstream.sendDatagram(query);
  }

  /** An answer datagram from the upstream resolver. */
  handleUpstreamAnswer(answer: Uint8Array): void {
    if (answer.length < HEADER_LENGTH) {
      this.counts[RelayCounter.UNEXPECTED_ANSWERS]!++;
      return;
    }
    const pending = this.pending[readId(answer, 0)];
    if (pending === undefined || !sameQuestion(answer, 0, answer.length, pending.query, 0, pending.query.length)) {
      this.counts[RelayCounter.UNEXPECTED_ANSWERS]!++;
      return;
    }
    this.release(pending);
    if (isTruncated(answer, 0)) {
      // RFC 7766 §5 / RFC 1035 §4.2.1: a truncated UDP answer means "ask again over TCP"; a TCP
      // client must get the whole answer, never TC=1.
      this.counts[RelayCounter.TRUNCATED_RETRIED_TCP]!++;
      void this.upstream.queryOverTcp(pending.query, this.config.timeoutMs).then((full) => {
        if (full !== null && full.length >= HEADER_LENGTH && sameQuestion(full, 0, full.length, pending.query, 0, pending.query.length)) {
          this.deliver(pending, full);
        } else {
          this.counts[RelayCounter.TCP_RETRY_FAILED]!++;
          this.deliver(pending, errorAnswer(pending.query, 0, pending.query.length, Rcode.SERVFAIL));
        }
      });
      return;
    }
    this.deliver(pending, answer);
  }

  /** Answers SERVFAIL to every query whose deadline has passed. Call periodically. */
  expire(nowMs: number): void {
    const d = this.deadlines;
    while (this.deadlinesHead < d.length && d[this.deadlinesHead]!.deadline <= nowMs) {
      const pending = d[this.deadlinesHead++]!;
      if (this.pending[pending.upstreamId] !== pending) continue; // answered already
      this.release(pending);
      this.counts[RelayCounter.SERVFAIL_TIMEOUT]!++;
      this.deliver(pending, errorAnswer(pending.query, 0, pending.query.length, Rcode.SERVFAIL));
    }
    // Compact the queue once its consumed prefix dominates, so it never grows without bound.
    if (this.deadlinesHead > 1024 && this.deadlinesHead * 2 > d.length) {
      d.splice(0, this.deadlinesHead);
      this.deadlinesHead = 0;
    }
  }

  private release(pending: PendingQuery): void {
    this.pending[pending.upstreamId] = undefined;
    this.pendingCount--;
  }

  private deliver(pending: PendingQuery, answer: Uint8Array): void {
    writeId(answer, 0, pending.clientId);
    this.counts[RelayCounter.ANSWERS]!++;
    this.answer(pending.exchange, pending.index, answer);
  }

  private answer(exchange: Exchange, index: number, message: Uint8Array): void {
    exchange.answers[index] = message;
    if (--exchange.remaining > 0) return;

    // All answers are in: frame them (RFC 1035 §4.2.2) in query order and send them.
    let total = 0;
    for (const a of exchange.answers) total += 2 + a!.length;
    if (this.responseBuffer.length < total) this.responseBuffer = new Uint8Array(Math.max(total, this.responseBuffer.length * 2));
    const out = this.responseBuffer;
    let p = 0;
    for (const a of exchange.answers) {
      out[p] = a!.length >>> 8;
      out[p + 1] = a!.length;
      out.set(a!, p + 2);
      p += 2 + a!.length;
    }
    cutResponse(exchange.header, out, 0, total, exchange.peerMss, this.config.closeAfterResponse, this.sink);
  }

  /** A random upstream ID not in use, or -1 if all 65536 are. */
  private freeId(): number {
    if (this.pendingCount >= ID_SPACE) return -1;
    for (;;) {
      if (this.randomPos + 2 > RANDOM_POOL_BYTES) {
        this.fillRandom(this.randomPool);
        this.randomPos = 0;
      }
      const id = (this.randomPool[this.randomPos]! << 8) | this.randomPool[this.randomPos + 1]!;
      this.randomPos += 2;
      if (this.pending[id] === undefined) return id;
    }
  }
}
