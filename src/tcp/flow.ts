/**
 * Soft state of a connection, held only while the connection has something in flight:
 * an answer still owed by the application, bytes we sent that the client has not acknowledged
 * (or could not yet send because of its window), or the start of a message whose rest has not
 * arrived (a request's body streaming to the application is part of an answer owed). A connection with none of these holds no state at all: its `Flow` is released, and the
 * next segment is recognised by its cookie or timestamp token (cookie.ts).
 */
import { ReplyHeader, type Segment } from '../wire/segment.js';
import { ByteQueue } from './byte-queue.js';
import type { Reassembly } from './reassembly.js';
import type { TimerEntry } from './timer-wheel.js';

/** The flows and queued bytes of one source network (an IPv4 address, an IPv6 /64) in one shard. */
export class SourceUsage {
  flows = 0;
  bytes = 0;
  constructor(readonly key: number) {}
}

export class Flow implements TimerEntry<Flow> {
  /** Header template for everything we send: addresses and ports in the reply direction. */
  readonly reply = new ReplyHeader();
  /** The flow table's bucket key of the 4-tuple (FlowTable), and the next flow with the same key. */
  hash = 0;
  nextInBucket: Flow | null = null;
  /** Where the flow stands in FlowTable's dense list of all flows (for `sample`). */
  tableIndex = -1;
  /**
   * The capture thread's routing hash of the 4-tuple (wire/flow-hash.ts), by which the flow is
   * published in live-flows.ts. Another hash than `hash`: shared by the threads, so under the
   * process's routing key rather than the cookie secret, and symmetric.
   */
  routeHash = 0;
  /** What the client's source network holds (the responder's per-source bounds); set when the flow starts. */
  source: SourceUsage | null = null;
  /** The connection's 64-bit key in the table of idle connections (recent.ts). */
  idLow = 0;
  idHigh = 0;

  // Sending (RFC 9293 §3.3.1 names).
  /** Oldest unacknowledged sequence number; `sendQueue` holds the bytes from here on. */
  sndUna = 0;
  /** Next sequence number to send. */
  sndNxt = 0;
  /** Highest sequence number sent so far (SND.NXT goes back below it after a timeout). */
  sndMax = 0;
  /** Bytes from `sndUna` on: in flight, then not yet sent. */
  readonly sendQueue = new ByteQueue();
  /** The client's last advertised window, in bytes (its window field shifted by the scale in `negotiated`). */
  peerWindow = 0;
  /** SEG.SEQ and SEG.ACK of the segment `peerWindow` came from (RFC 9293 SND.WL1, SND.WL2). */
  sndWl1 = 0;
  sndWl2 = 0;
  /** Largest payload per segment: the client's MSS class less our TCP options. */
  payloadMss = 0;
  /** What the handshake negotiated, as the token carries it (cookie.ts `SynCookies.negotiated`). */
  negotiated = 0;
  /** Congestion window in bytes (RFC 5681). */
  cwnd = 0;
  ssthresh = 0;
  dupAcks = 0;
  /** Retransmission: when we last sent new or repeated data, the current timeout, tries so far. */
  lastSendMs = 0;
  rtoMs = 0;
  retransmits = 0;
  /**
   * Proved by a timestamp token alone, and nothing of ours acknowledged yet: perhaps a forged
   * segment (responder.ts verifyFlowless), so it sends little and gives up soon.
   */
  unproven = false;
  /** Our FIN: wanted once everything is sent; its sequence number once sent. */
  finQueued = false;
  finSent = false;
  finSeq = 0;

  // Receiving.
  /** Next sequence number expected from the client. */
  rcvNxt = 0;
  /** Bytes received in order that do not yet make a whole message. */
  readonly receiveQueue = new ByteQueue();
  clientFin = false;
  /** When the first byte still in the receive queue arrived (the message deadline counts from it). */
  partialSinceMs = 0;
  /** Since when the client's window has been closed on data waiting for it (-1: open). */
  windowClosedSinceMs = -1;
  /** Since when an ACK is owed that we hold back for an answer to carry (-1: none). */
  ackDelayedSinceMs = -1;
  /** The right edge of the window we last advertised, RCV.NXT + RCV.WND (RFC 9293 §3.3.1). */
  rcvEdge = 0;
  /** The window has opened enough that the client should hear of it (`Responder.releaseBody`). */
  windowUpdateWanted = false;
  /** A message's body streams to the application (Transport.beginBody) until it calls endBody. */
  bodyStreaming = false;
  /** Bytes of the body the application holds, not yet released: out of the receive window. */
  bodyHeld = 0;
  /** The body's progress: since when the current half window of it has been awaited, and its bytes so far. */
  bodySinceMs = 0;
  bodyBytesSince = 0;
  /** Segments of a streaming body that came beyond a gap, held until it is filled (made when first needed). */
  reassembly: Reassembly | null = null;

  // Timestamps (RFC 7323).
  useTimestamps = false;
  /** The client's TSval to echo (TS.Recent, RFC 7323 §4.3). */
  tsRecent = 0;
  /** Our token, the period it was computed for, and the generation of the key that proved the connection. */
  token = 0;
  tokenPeriod = -1;
  keyGeneration = 0;

  /** Answers the application still owes on this connection. */
  answersOwed = 0;
  /** Set when the connection was reset or evicted: the application must not send any more. */
  closed = false;
  /** The application asked to close once its answers are sent (`Responder.closeWhenAnswered`). */
  closeRequested = false;
  /** `answerPart` found the send queue full: call the application's `onDrain` once it halves. */
  drainWanted = false;
  /** Answers were queued since the responder's last `push`. */
  pushPending = false;
  /** The responder is handing this flow's messages to the application (see Responder.deliver). */
  delivering = false;
  /** A whole message is held back: the flow owes its limit of answers, or its send buffer is full. */
  pipelineHeld = false;
  /** Challenge ACKs sent in the interval that began at `challengeIntervalStartMs` (RFC 5961 §7). */
  challengeAcks = 0;
  challengeIntervalStartMs = 0;
  /** Out of the flow table: the connection went idle (or was closed); this object is done with. */
  released = false;

  /** Its earliest timer, and its links in the responder's timer wheel (timer-wheel.ts). */
  timerDueMs = 0;
  timerList = -1;
  timerPrev: Flow | null = null;
  timerNext: Flow | null = null;

  /** Sequence space in flight: bytes and FIN sent but not acknowledged. */
  get inFlight(): number {
    return (this.sndNxt - this.sndUna) >>> 0;
  }

  /** Whether our FIN is sent and not yet acknowledged. */
  get finInFlight(): boolean {
    return this.finSent && ((this.finSeq - this.sndUna) | 0) >= 0;
  }

  /** Bytes queued but not sent yet. */
  get unsent(): number {
    return this.sendQueue.length - (this.inFlight - (this.finInFlight ? 1 : 0));
  }
}

/**
 * Flows by 4-tuple: a Map of buckets chained through `Flow.nextInBucket`, and a dense list of
 * all of them, so that one can be picked at random (`sample`) and all walked without the Map.
 */
export class FlowTable {
  private readonly buckets = new Map<number, Flow>();
  private readonly all: Flow[] = [];

  /**
   * `keyOf` gives a client segment's bucket key, a 31-bit integer; the responder's is keyed with a
   * secret (SynCookies.tableKey), so that chains stay short whatever tuples clients choose.
   */
  constructor(private readonly keyOf: (seg: Segment) => number) {}

  find(seg: Segment): Flow | null {
    let flow = this.buckets.get(this.keyOf(seg)) ?? null;
    while (flow !== null && !sameFlow(flow, seg)) flow = flow.nextInBucket;
    return flow;
  }

  add(flow: Flow, seg: Segment): void {
    flow.hash = this.keyOf(seg);
    flow.nextInBucket = this.buckets.get(flow.hash) ?? null;
    this.buckets.set(flow.hash, flow);
    flow.tableIndex = this.all.length;
    this.all.push(flow);
  }

  get size(): number {
    return this.all.length;
  }

  /** The flow at `random` modulo the number of flows (a uniform pick for a uniform `random`); null if none. */
  sample(random: number): Flow | null {
    const n = this.all.length;
    return n === 0 ? null : this.all[(random >>> 0) % n]!;
  }

  remove(flow: Flow): void {
    let head = this.buckets.get(flow.hash) ?? null;
    if (head === flow) {
      if (flow.nextInBucket === null) this.buckets.delete(flow.hash);
      else this.buckets.set(flow.hash, flow.nextInBucket);
    } else {
      while (head !== null && head.nextInBucket !== flow) head = head.nextInBucket;
      if (head === null) return;
      head.nextInBucket = flow.nextInBucket;
    }
    flow.nextInBucket = null;
    // Swap-remove from the dense list.
    const last = this.all.pop()!;
    if (last !== flow) {
      this.all[flow.tableIndex] = last;
      last.tableIndex = flow.tableIndex;
    }
    flow.tableIndex = -1;
  }

  /** Every flow; removing the flow just yielded is allowed (the walk goes from the end, where removal swaps from). */
  *[Symbol.iterator](): IterableIterator<Flow> {
    for (let i = this.all.length - 1; i >= 0; i--) {
      if (i < this.all.length) yield this.all[i]!;
    }
  }
}

function sameFlow(flow: Flow, seg: Segment): boolean {
  const r = flow.reply;
  if (r.family !== seg.family || r.dstPort !== seg.srcPort || r.srcPort !== seg.dstPort) return false;
  const n = seg.addrLength;
  const buf = seg.buf;
  for (let i = 0; i < n; i++) {
    if (r.dstAddr[i] !== buf[seg.srcAddrOffset + i] || r.srcAddr[i] !== buf[seg.dstAddrOffset + i]) return false;
  }
  return true;
}
