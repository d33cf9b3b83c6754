/**
 * The responder: TCP with manners, from almost no state.
 *
 * Every client segment is handled from the segment itself plus, only while the connection has
 * something in flight, its soft `Flow` state (flow.ts). docs/tcp-behaviour.md specifies each
 * rule with its RFC; in short:
 *
 *   SYN (no flow)            → SYN+ACK: ISN = cookie; MSS 1220; timestamps if the client offered them
 *   data/FIN, no flow        → validated by timestamp token or first-segment cookie, else RST
 *                              (never data); valid data creates a flow
 *   data in order            → appended; whole messages go to the application; ACK (delayed
 *                              up to 20 ms for an owed answer to carry it); a message's body
 *                              (an HTTP upload) streams to the application, and the window we
 *                              advertise opens only as it passes the body on
 *   data out of order        → duplicate ACK, data dropped (the client retransmits: RFC 5681 §3.2)
 *   data already received    → ACK (RFC 9293 §3.10.7.4)
 *   ACK of our data          → queue released, more sent within min(client window, cwnd)
 *   3 duplicate ACKs         → fast retransmit (RFC 5681 §3.2); timeout → go back and resend
 *   ACK of unsent data, SYN or RST inside the window on a flow → challenge ACK (RFC 5961)
 *   RST at exactly RCV.NXT   → the flow is dropped and nothing more is sent (RFC 5961 §3.2)
 *   answers done             → FIN (after the client's FIN; or at once with --close-after-response)
 *
 * The responder does no I/O: segments go to a `SegmentSink`, messages to the application on top
 * (it is one of the two transports of transport.ts), and time is passed in. `tick` drives the
 * timers (delayed ACK, retransmission, window probes, deadlines): each flow is filed in a timer
 * wheel (timer-wheel.ts) at its earliest deadline whenever what they depend on changes, so a tick
 * looks at the flows whose timers are due, not at every flow held.
 */
import type { ConnectionEndpoints } from '../dns/proxy-protocol.js';
import { ReplyHeader, TcpFlag, type Segment } from '../wire/segment.js';
import { SynCookies } from './cookie.js';
import { Flow, FlowTable, SourceUsage } from './flow.js';
import { RecentConnections } from './recent.js';
import { BufferPool } from './byte-queue.js';
import { TimerWheel } from './timer-wheel.js';
import { Reassembly } from './reassembly.js';
import { seqLeq, seqLt } from './sequence.js';
import { synAckFor } from './handshake.js';
import type { LiveFlows } from './live-flows.js';
import { FlowlessAction, flowlessAction } from './flowless.js';
import { Outcome, TCP_EVENT_NAMES, TcpEvent } from './counters.js';
import { wholeMessagesBy, type MessageLength, type StreamApplication, type Transport } from './transport.js';
import { formatAddress } from '../wire/format.js';
import { MartianSources } from '../wire/martian.js';
import { MIN_MTU_V4, MIN_MTU_V6, type PathMtuSource } from './path-mtu.js';

/** Receives the segments we send, one header and payload slice at a time. */
export interface SegmentSink {
  send(header: ReplyHeader, payload: Uint8Array | null, offset: number, length: number): void;
  /**
   * Answers are queued and not yet sent: call `Responder.push` soon — once the events at hand
   * (a batch of upstream answers, of captured frames) are handled, so that answers that arrive
   * together leave together. Called once until the next `push`.
   */
  pushWanted(): void;
}

export interface ResponderConfig {
  /** MSS offered in our SYN+ACK (RFC 9293 §3.7.1). 1220 = 1280 − 40 − 20 fits any IPv6 path. */
  mssOffer: number;
  /** Receive window advertised in every segment (no window scaling is offered). */
  window: number;
  /** The protocol's framing (transport.ts Protocol). */
  messageLength: MessageLength;
  plausibleStart: (buf: Uint8Array, offset: number, length: number) => boolean;
  /** Most answers a flow may owe; further messages wait in its receive queue, out of its window. */
  maxPipelined: number;
  /** Close our side once every answer is sent (the talk's transaction mode). */
  closeAfterResponse: boolean;
  /** Most flows with soft state at once; past it new data is not acknowledged (the client retries). */
  maxFlows: number;
  /**
   * Most flows of one source (an IPv4 address, an IPv6 /64) at once, so that one client cannot
   * take the whole of maxFlows; past it its new data is not acknowledged.
   */
  maxFlowsPerSource: number;
  /** Most bytes queued in all flows at once; past it new data is not acknowledged. */
  maxQueuedBytes: number;
  /** Most bytes queued in the flows of one source; past it its new data is not acknowledged. */
  maxQueuedBytesPerSource: number;
  /** Bytes queued on one flow above which `answerPart` asks the application to wait (`onDrain`). */
  sendBufferBytes: number;
  /** Slots of the table remembering where idle connections left their sequence numbers (recent.ts; 29 bytes each). */
  recentConnections: number;
  /** Retransmission timeout: initial and upper bound (RFC 6298 §2, §5.5), and tries before giving up. */
  initialRtoMs: number;
  maxRtoMs: number;
  maxRetransmits: number;
  /**
   * A message must be whole within this long of its first byte's arrival, however the client
   * trickles it; a flow holding part of one for longer (and owing nothing) is dropped with RST.
   */
  messageDeadlineMs: number;
  /**
   * The longest a client may keep its window closed on answers waiting for it (probed all the
   * while); then the flow is dropped with RST.
   */
  zeroWindowLimitMs: number;
  /** How long an ACK may wait for an owed answer to carry it (RFC 9293 §3.8.6.3: < 0.5 s). */
  delayedAckMs: number;
}

/** The TCP settings of a responder; the framing comes with the protocol (transport.ts Protocol). */
export type TcpSettings = Omit<ResponderConfig, 'messageLength' | 'plausibleStart'>;

/** The bounds an operator sets (command line, config file); docs/security.md says what each guards. */
export type ConnectionLimits = Pick<
  TcpSettings,
  | 'maxPipelined'
  | 'maxFlows'
  | 'maxFlowsPerSource'
  | 'maxQueuedBytes'
  | 'maxQueuedBytesPerSource'
  | 'messageDeadlineMs'
  | 'zeroWindowLimitMs'
>;

export const DEFAULT_RESPONDER_CONFIG: TcpSettings = {
  mssOffer: 1220,
  window: 65535,
  maxPipelined: 100,
  closeAfterResponse: false,
  maxFlows: 65536,
  // A sixteenth of the table: a carrier-grade NAT's address may carry many clients, but no one
  // source takes all the flows.
  maxFlowsPerSource: 4096,
  maxQueuedBytes: 256 * 1024 * 1024,
  // A sixteenth, as for flows: one source cannot fill the shard's queues.
  maxQueuedBytesPerSource: 16 * 1024 * 1024,
  recentConnections: 65536,
  // Twice the largest window a client can offer us without window scaling; with it, the most a
  // flow has in flight.
  sendBufferBytes: 2 * 65535,
  // Linux's minimum RTO; the lab and data-centre RTTs are far below it.
  initialRtoMs: 200,
  maxRtoMs: 8000,
  maxRetransmits: 8,
  // RFC 7766 §6.2.3 leaves idle timeouts to the server; RFC 9210 §3.4 suggests seconds, not minutes.
  messageDeadlineMs: 10_000,
  // Long enough for a client that pauses reading; short enough that a peer which never reads
  // cannot hold its answers (up to the send buffer) for longer than a minute.
  zeroWindowLimitMs: 60_000,
  // An upstream on the same network answers well within it; the client's RTO is ≥ 200 ms.
  delayedAckMs: 20,
};

/** RFC 7323 Appendix A: NOP, NOP, timestamps = 12 bytes of options on every segment. */
const TIMESTAMP_OPTION_BYTES = 12;
/** IP header bytes we send (no IPv4 options, no IPv6 extension headers) and the TCP header without options. */
const IPV4_HEADER_BYTES = 20;
const IPV6_HEADER_BYTES = 40;
const TCP_HEADER_BYTES = 20;
/**
 * RFC 4821 §7.5 (and RFC 8899's black-hole detection): when ICMP is filtered, full-size segments
 * that never arrive look like loss. After this many timeouts in a row on a flow sending segments
 * larger than an IPv6-minimum packet holds, the flow falls back to that size.
 */
const FALLBACK_AFTER_TIMEOUTS = 2;

/** RFC 5961 §7 challenge-ACK limit per flow: this many in each interval (Linux's tcp_invalid_ratelimit is 500 ms). */
const CHALLENGE_ACK_BURST = 2;
const CHALLENGE_ACK_INTERVAL_MS = 500;

/** Retransmissions of a flow proved by its token alone before the client acknowledged anything. */
const UNPROVEN_MAX_RETRANSMITS = 1;
/** Flows sampled to find a heavy source when the shard is full (`shedFor`). */
const SHED_SAMPLES = 8;
/** Flows dropped at most to make room for one new flow: bounds the work a newcomer causes. */
const MAX_SHED_PER_FLOW = 4;

/** Bytes of free send-queue buffers kept per size (BufferPool): bounds the pool at 5 MiB. */
const SEND_BUFFERS_KEPT_PER_SIZE = 512 * 1024;

export class Responder implements Transport<Flow> {
  /** A connection holds nothing while idle; it may come back as long as its timestamp token is accepted. */
  get idleTimeoutMs(): number {
    return this.cookies.minIdleSeconds * 1000;
  }
  readonly events = new Float64Array(TCP_EVENT_NAMES.length);
  readonly flows: FlowTable;
  /** What each source network holds (SynCookies.sourceKey), for the per-source bounds. */
  private readonly sources = new Map<number, SourceUsage>();
  /** Sequence numbers of connections gone idle (recent.ts). */
  readonly recent: RecentConnections;
  /** The connection id of the segment at hand, [low, high]: the flow table computes it for its key. */
  private readonly connectionId = new Uint32Array(2);
  /** Bytes held in all flows' send and receive queues. */
  queuedBytes = 0;
  /** Send queues' buffers, passed from released flows to new ones (byte-queue.ts says why). */
  private readonly sendBuffers = new BufferPool(SEND_BUFFERS_KEPT_PER_SIZE);
  /** Flows given answers since the last `push`, in the order they got them. */
  private readonly unpushed: Flow[] = [];
  /** Segments sent so far (tells whether an ACK already went out while handling a segment). */
  private segmentsSent = 0;
  private readonly control = new ReplyHeader();
  /** Flows by their earliest deadline (`armTimer`). */
  private readonly timers: TimerWheel<Flow>;
  private readonly onTimer = (flow: Flow, nowMs: number): void => this.runTimers(flow, nowMs);
  /** Half the receive window: the step a streaming body must make within messageDeadlineMs (`bodyDeadline`). */
  private readonly halfWindow: number;
  /**
   * The least a window may grow by before the client is told: min(half the window, a segment)
   * (RFC 9293 §3.8.6.2.2's receiver SWS avoidance, with Fr = 1/2 and our MSS as the client's).
   */
  private readonly swsThreshold: number;

  constructor(
    private readonly config: ResponderConfig,
    private readonly cookies: SynCookies,
    private readonly sink: SegmentSink,
    private readonly app: StreamApplication<Flow>,
    /** Where the capture thread learns which connections have flows (null: no capture thread answers SYNs). */
    private readonly liveFlows: LiveFlows | null = null,
    /** Sources that get no answer (default: the martian ranges, no host addresses). */
    private readonly martians = new MartianSources(),
    /** The MTU toward each client (path-mtu.ts); null: only the client's MSS bounds the segment size. */
    private readonly pathMtus: PathMtuSource | null = null,
  ) {
    this.recent = new RecentConnections(config.recentConnections, cookies.maxIdleSeconds * 1000);
    this.halfWindow = config.window >> 1;
    this.swsThreshold = Math.min(this.halfWindow, config.mssOffer);
    this.timers = new TimerWheel(Math.max(config.delayedAckMs, config.maxRtoMs, config.messageDeadlineMs, config.zeroWindowLimitMs));
    // The key is the connection id, which the table of recent connections wants too: computed
    // once per segment, here, and read by verifyFlowless from `connectionId`.
    this.flows = new FlowTable((seg) => {
      cookies.connectionId(seg, this.connectionId);
      return SynCookies.tableKey(this.connectionId);
    });
  }

  handleSegment(seg: Segment, nowMs: number): Outcome {
    const flow = this.flows.find(seg);
    if (flow === null) return this.onFlowless(seg, nowMs);
    const flags = seg.flags;
    if (flags & TcpFlag.RST) return this.onReset(flow, seg, nowMs);
    if (flags & TcpFlag.SYN) {
      // A SYN+ACK or SYN+FIN is not the start of a connection to us.
      if (flags & (TcpFlag.ACK | TcpFlag.FIN)) return Outcome.IGNORED;
      // RFC 5961 §4.2: a SYN on a synchronised connection gets a challenge ACK.
      return this.challengeAck(flow, nowMs);
    }
    // RFC 9293 §3.10.7.4: "if the ACK bit is off, drop the segment and return".
    if (!(flags & TcpFlag.ACK)) return Outcome.IGNORED;
    return this.onSegment(flow, seg, nowMs);
  }

  /** The application will answer once more on `flow`: its state must stay until then. */
  expectAnswer(flow: Flow): void {
    flow.answersOwed++;
  }

  /**
   * One answer the application owed on `flow`: `data[offset, offset+length)` is queued and sent as
   * the window allows at the next `push`. Dropped (and counted) if the connection was reset or
   * aborted meanwhile (RFC 7766 §6.2.4: nothing more is sent on a reset connection).
   */
  answer(flow: Flow, data: Uint8Array, offset: number, length: number): void {
    flow.answersOwed--;
    if (flow.closed) {
      this.events[TcpEvent.ANSWERS_DROPPED]!++;
      return;
    }
    this.queueAnswer(flow, data, offset, length);
    // Owing nothing now, a partial message behind the answered ones is under its deadline again.
    this.armTimer(flow);
  }

  /**
   * Part of an answer the application is still producing (an HTTP body as it streams in from the
   * backend): queued and sent like `answer`, but the answer stays owed. Returns false once the
   * flow holds `sendBufferBytes` or more — the application then waits for `onDrain` — or if the
   * connection is closed.
   */
  answerPart(flow: Flow, data: Uint8Array, offset: number, length: number): boolean {
    if (flow.closed) return false;
    this.queueAnswer(flow, data, offset, length);
    if (flow.sendQueue.length < this.config.sendBufferBytes) return true;
    flow.drainWanted = true;
    return false;
  }

  /**
   * The message just handed over has a body (an HTTP upload): what follows goes to the
   * application's `onBody` as it arrives and is held, out of the window we advertise, until the
   * application releases it (`releaseBody`) — so the flow holds at most a window of it, and the
   * client sends only as fast as the application's upstream takes it.
   */
  beginBody(flow: Flow, nowMs: number): void {
    flow.bodyStreaming = true;
    flow.bodySinceMs = nowMs;
    flow.bodyBytesSince = 0;
  }

  endBody(flow: Flow): void {
    flow.bodyStreaming = false;
  }

  /**
   * The application passed on (or dropped) `length` bytes of a body: the window opens by as much.
   * Once it has opened by a segment or more and to at least twice what the client was last told
   * (Linux's rule in tcp_cleanup_rbuf), a window update goes out at the next push: a client
   * that found the window closed would otherwise wait for its persist timer (RFC 9293 §3.8.6.1).
   */
  releaseBody(flow: Flow, length: number, nowMs: number): void {
    if (flow.released) return;
    const wasHeldUp = flow.bodyHeld >= this.halfWindow;
    flow.bodyHeld -= length;
    this.account(flow, -length);
    // Time spent waiting for the application's upstream does not count against the client.
    if (wasHeldUp && flow.bodyHeld < this.halfWindow) this.restartBodyClock(flow, nowMs);
    if (!flow.closed && this.windowUpdateDue(flow)) {
      flow.windowUpdateWanted = true;
      this.wantPush(flow);
    }
    this.armTimer(flow);
  }

  /**
   * Sends what the answers given since the last push allow (SegmentSink.pushWanted says when).
   * Answers are not sent the moment they are given because several often arrive together for
   * one connection — pipelined DNS queries answered by the upstream in one burst, an HTTP body
   * in chunks — and together they fill one segment where one each would take several: fewer
   * packets each way (the client's ACKs too) for the same bytes, as the kernel's TCP autocorking
   * does for small writes.
   */
  push(nowMs: number): void {
    const flows = this.unpushed;
    // settle() never adds to the list, so its length is fixed for the loop.
    for (let i = 0; i < flows.length; i++) {
      const flow = flows[i]!;
      flow.pushPending = false;
      this.settle(flow, nowMs);
      if (flow.windowUpdateWanted) {
        flow.windowUpdateWanted = false;
        // Unless a segment `settle` sent carried it already.
        if (!flow.closed && !flow.released && this.windowUpdateDue(flow)) this.sendAck(flow, nowMs);
      }
      this.armTimer(flow);
    }
    flows.length = 0;
  }

  /**
   * One of our segments was too big for the path: `quoted` is its header seen from the client's
   * side (wire/quoted.ts, its `seq` ours), `mtu` the MTU reported — by an ICMP "fragmentation
   * needed" / "packet too big" (RFC 1191, RFC 8201), or by our own kernel refusing the send
   * (EMSGSIZE, `local`). Taken only if the segment is one of a live flow's unacknowledged
   * segments (SND.UNA ≤ seq < SND.MAX): a forged message quoting any other cannot shrink a path
   * (RFC 5927 §4.1, RFC 8201 §4). The destination's MTU is lowered in the table, the flow's
   * segment size with it, and its unacknowledged data is sent again at once, cut to the new size
   * (RFC 1191 §6.5: a "packet too big" means the packet was dropped). Returns whether it was taken.
   */
  packetTooBig(quoted: Segment, mtu: number, local: boolean, nowMs: number): boolean {
    const flow = this.flows.find(quoted);
    if (flow === null || flow.closed || !seqLeq(flow.sndUna, quoted.seq) || !seqLt(quoted.seq, flow.sndMax)) {
      this.events[local ? TcpEvent.TOO_BIG_STALE : TcpEvent.TOO_BIG_REFUSED]!++;
      return false;
    }
    const family = flow.reply.family;
    const pathMtu =
      this.pathMtus === null
        ? Math.max(mtu, family === 4 ? MIN_MTU_V4 : MIN_MTU_V6)
        : this.pathMtus.lower(family, flow.reply.dstAddr, mtu, nowMs);
    const fits = Math.max(1, this.payloadFor(family, pathMtu, flow.useTimestamps ? TIMESTAMP_OPTION_BYTES : 0));
    this.events[TcpEvent.TOO_BIG_TAKEN]!++;
    if (fits >= flow.payloadMss) return true; // the flow already sends small enough segments
    flow.payloadMss = fits;
    // The segment was dropped, not lost to congestion (RFC 1191 §6.5): send it again now, from
    // the oldest unacknowledged byte, without touching the congestion window beyond its size.
    flow.cwnd = Math.max(Math.min(flow.cwnd, 10 * fits), 2 * fits);
    flow.sndNxt = flow.sndUna;
    flow.finSent = false;
    this.flush(flow, nowMs);
    flow.lastSendMs = nowMs;
    this.armTimer(flow);
    return true;
  }

  /** Close our side once every owed answer is sent (HTTP `Connection: close`). */
  closeWhenAnswered(flow: Flow, nowMs: number): void {
    flow.closeRequested = true;
    flow.bodyStreaming = false; // a body still arriving is acknowledged and dropped with the rest
    // What came after the closing request is never answered: it no longer holds the FIN back.
    // (While the flow's messages are being handed over, `deliverQueued` drops it after.)
    if (!flow.delivering) this.discardReceived(flow);
    this.settle(flow, nowMs);
    this.armTimer(flow);
  }

  /** Gives up on the connection: RST, state dropped (an answer that broke off half-way). */
  reset(flow: Flow, nowMs: number): void {
    if (!flow.closed && !flow.released) this.abort(flow, nowMs);
  }

  isClosed(flow: Flow): boolean {
    return flow.closed;
  }

  clientAddress(flow: Flow): string {
    return formatAddress(flow.reply.dstAddr, 0, flow.reply.family);
  }

  connectionEndpoints(flow: Flow, out: ConnectionEndpoints): void {
    const r = flow.reply;
    out.family = r.family === 4 ? 4 : 6;
    out.clientAddress.set(r.dstAddr);
    out.serverAddress.set(r.srcAddr);
    out.clientPort = r.dstPort;
    out.serverPort = r.srcPort;
  }

  clientAddressBytes(flow: Flow, out: Uint8Array): number {
    const n = flow.reply.family === 4 ? 4 : 16;
    for (let i = 0; i < n; i++) out[i] = flow.reply.dstAddr[i]!;
    return n;
  }

  /**
   * Timers: delayed ACKs, retransmission and window probes (RFC 6298, RFC 9293 §3.8.6.1), the
   * deadlines. Looks only at the flows whose earliest deadline has come (`armTimer`).
   */
  tick(nowMs: number): void {
    this.events[TcpEvent.TIMER_VISITS]! += this.timers.expire(nowMs, this.onTimer);
  }

  /** A flow's timer came due: whatever of it is due now is done, and the flow filed again at its next deadline. */
  private runTimers(flow: Flow, nowMs: number): void {
    if (flow.windowClosedSinceMs >= 0 && nowMs - flow.windowClosedSinceMs >= this.config.zeroWindowLimitMs) {
      this.events[TcpEvent.DEADLINES_MISSED]!++;
      this.abort(flow, nowMs);
      return;
    }
    if (this.bodyDeadline(flow) <= nowMs) {
      // A body that stopped coming while the window stood open (trickled, or cut off): as for a
      // partial message, the trickle does not keep it.
      this.events[TcpEvent.DEADLINES_MISSED]!++;
      this.abort(flow, nowMs);
      return;
    }
    if (flow.ackDelayedSinceMs >= 0 && nowMs - flow.ackDelayedSinceMs >= this.config.delayedAckMs) this.sendAck(flow, nowMs);
    if (flow.inFlight > 0) {
      if (nowMs - flow.lastSendMs >= flow.rtoMs) this.onRetransmitTimeout(flow, nowMs);
    } else if (flow.unsent > 0 && !flow.pushPending && nowMs - flow.lastSendMs >= flow.rtoMs) {
      // The client's window is closed: probe it with one byte so its ACK reopens it (RFC 9293
      // §3.8.6.1) — for at most zeroWindowLimitMs (checked above) from the first probe, until
      // the client takes data again. RFC 1122 §4.2.2.17 would probe for as long as the probes
      // are acknowledged; the cap keeps a client that never reads from holding its answers for ever.
      if (flow.windowClosedSinceMs < 0) flow.windowClosedSinceMs = nowMs;
      this.events[TcpEvent.WINDOW_PROBES]!++;
      this.sendFromQueue(flow, 1, false, nowMs);
      flow.rtoMs = Math.min(flow.rtoMs * 2, this.config.maxRtoMs);
    } else if (flow.receiveQueue.length > 0 && flow.answersOwed === 0 && nowMs - flow.partialSinceMs >= this.config.messageDeadlineMs) {
      // Part of a message, begun messageDeadlineMs ago and still not whole (trickled, or cut off).
      this.events[TcpEvent.DEADLINES_MISSED]!++;
      this.abort(flow, nowMs);
      return;
    }
    this.armTimer(flow);
  }

  /**
   * When `runTimers` next has something to do for the flow: the earliest of the deadlines it
   * checks, under the same conditions (a flow looked at with nothing due must get a later time,
   * or it would be looked at again every tick); Infinity if none.
   */
  nextDeadline(flow: Flow): number {
    const config = this.config;
    let dueMs = Number.POSITIVE_INFINITY;
    if (flow.windowClosedSinceMs >= 0) dueMs = flow.windowClosedSinceMs + config.zeroWindowLimitMs;
    dueMs = Math.min(dueMs, this.bodyDeadline(flow));
    if (flow.ackDelayedSinceMs >= 0) dueMs = Math.min(dueMs, flow.ackDelayedSinceMs + config.delayedAckMs);
    if (flow.inFlight > 0) return Math.min(dueMs, flow.lastSendMs + flow.rtoMs);
    if (flow.unsent > 0 && !flow.pushPending) dueMs = Math.min(dueMs, flow.lastSendMs + flow.rtoMs);
    if (flow.receiveQueue.length > 0 && flow.answersOwed === 0) dueMs = Math.min(dueMs, flow.partialSinceMs + config.messageDeadlineMs);
    return dueMs;
  }

  /**
   * When a streaming body must have brought its next half window (`beginBody`): each half window
   * of it must arrive within messageDeadlineMs, counted while at least half the window is open —
   * while the application holds more, its upstream is the one to wait for (and has its own
   * timeout). Infinity if no body streams or the application holds it up.
   */
  private bodyDeadline(flow: Flow): number {
    if (!flow.bodyStreaming || flow.bodyHeld >= this.halfWindow) return Number.POSITIVE_INFINITY;
    return flow.bodySinceMs + this.config.messageDeadlineMs;
  }

  private restartBodyClock(flow: Flow, nowMs: number): void {
    flow.bodySinceMs = nowMs;
    flow.bodyBytesSince = 0;
  }

  /**
   * Files the flow in the timer wheel at its next deadline. Called at the end of everything that
   * changes what the deadlines depend on: a segment, an answer, a push, a close, the timers.
   */
  private armTimer(flow: Flow): void {
    if (flow.released) return;
    const dueMs = this.nextDeadline(flow);
    if (dueMs === Number.POSITIVE_INFINITY) this.timers.cancel(flow);
    else this.timers.schedule(flow, dueMs);
  }

  // ----------------------------------------------------------------------------------------
  // Segments without a flow
  // ----------------------------------------------------------------------------------------

  private answerSyn(syn: Segment, nowMs: number): void {
    this.sink.send(synAckFor(syn, this.cookies, this.config, nowMs, this.control), null, 0, 0);
  }

  /** The rule the capture thread applies too (flowless.ts). */
  private onFlowless(seg: Segment, nowMs: number): Outcome {
    switch (flowlessAction(seg, this.martians)) {
      case FlowlessAction.IGNORE:
        return Outcome.IGNORED;
      case FlowlessAction.ANSWER_SYN:
        this.answerSyn(seg, nowMs);
        return Outcome.SYN_ANSWERED;
      case FlowlessAction.REFUSE_MARTIAN:
        return Outcome.MARTIAN_SOURCE;
      default:
        return this.verifyFlowless(seg, nowMs);
    }
  }

  /** Data or a FIN without a flow: proved by token or cookie, or answered with RST. */
  private verifyFlowless(seg: Segment, nowMs: number): Outcome {
    const length = seg.payloadLength;
    const now = nowMs / 1000;
    let negotiated = seg.hasTimestamps ? this.cookies.checkToken(seg, seg.tsEcr, now) : -1;
    let first = false;
    if (negotiated < 0) {
      negotiated = this.cookies.checkFirstSegment(seg, now);
      first = negotiated >= 0;
    }
    if (negotiated < 0) {
      if (length > 0 || seg.hasTimestamps) {
        // RFC 9293 §3.10.7.1: a segment for no connection gets <SEQ=SEG.ACK><CTL=RST>.
        this.sendStateless(seg, seg.ack, 0, TcpFlag.RST);
        return Outcome.COOKIE_FAILED;
      }
      // A FIN without timestamps after earlier exchanges: nothing can prove it, and an ACK
      // carries no data, so acknowledge it rather than leave a real client retrying.
      this.sendStateless(seg, seg.ack, (seg.seq + 1) >>> 0, TcpFlag.ACK);
      return Outcome.FIN;
    }

    // Where the connection stood when its last flow was released, if we still know (recent.ts).
    // `connectionId` holds this segment's id: the flow table's lookup computed it.
    const id = this.connectionId;
    const slot = this.recent.find(id[1]!, id[0]!, nowMs);
    if (slot >= 0) return this.onRecalledSegment(seg, slot, negotiated, nowMs);

    if (length === 0) {
      // FIN on a connection without soft state. Close our side too unless we already did:
      // with --close-after-response or without timestamps we FIN after every answer, so a FIN
      // of ours is already acknowledged — unless nothing was ever exchanged (`first`).
      const oursToo = first || (seg.hasTimestamps && !this.config.closeAfterResponse);
      this.sendStateless(seg, seg.ack, (seg.seq + 1) >>> 0, TcpFlag.ACK | (oursToo ? TcpFlag.FIN : 0));
      return Outcome.FIN;
    }

    if (!first && !this.config.plausibleStart(seg.buf, seg.payloadOffset, length)) {
      if (this.cookies.checkFirstSegment(seg, now) < 0) return Outcome.MISALIGNED;
    }
    // Proved by its token alone — not the first segment after the handshake, and with no entry in
    // the table of recent connections: an off-path sender who learned a client's token could
    // forge it, so the flow starts with a window of two segments and grows only as the client's
    // ACKs show it receives them. A forged segment never draws much more than it cost.
    return this.startFlow(seg, negotiated, seg.seq, seg.ack, nowMs, !first && !this.isFirstSegment(seg, now));
  }

  /**
   * A proved segment of a connection whose sequence numbers we remember: RCV.NXT and SND.MAX
   * when its last flow was released, everything we sent then being acknowledged.
   */
  private onRecalledSegment(seg: Segment, slot: number, negotiated: number, nowMs: number): Outcome {
    const recent = this.recent;
    const rcvNxt = recent.expectedSeq(slot);
    const sndNxt = recent.sentUpTo(slot);
    // An entry left by an earlier connection on the same 4-tuple (or one another instance has
    // served since) is nowhere near this segment's numbers: forget it, trust the segment.
    const ackBehind = (sndNxt - seg.ack) >>> 0;
    const seqOffset = (seg.seq - rcvNxt) | 0;
    if (ackBehind > this.config.window || seqOffset < -this.config.window || seqOffset > this.config.window) {
      recent.forget(slot);
      this.events[TcpEvent.RECALLED_MISMATCHED]!++;
      return this.onFlowless(seg, nowMs);
    }
    this.events[TcpEvent.RECALLED]!++;
    if (ackBehind > 0) this.events[TcpEvent.OLD_ACKS_RAISED]!++;
    const length = seg.payloadLength;
    const hasFin = (seg.flags & TcpFlag.FIN) !== 0;

    // A gap: the client sent bytes before these that never reached us (RFC 5681 §3.2:
    // duplicate ACK; the client resends from RCV.NXT). Without this entry the segment would
    // have started a flow here and its ACK would have covered the lost bytes.
    if (seqOffset > 0) {
      this.sendStateless(seg, sndNxt, rcvNxt, TcpFlag.ACK);
      return Outcome.OUT_OF_ORDER;
    }
    // Wholly received before: a delayed duplicate. RFC 9293 §3.10.7.4: acknowledge, drop.
    if (seqOffset + length + (hasFin ? 1 : 0) <= 0) {
      this.sendStateless(seg, sndNxt, rcvNxt, TcpFlag.ACK);
      return Outcome.DUPLICATE;
    }
    const ourFinSent = recent.ourFinSent(slot);
    // RFC 5681 §4.1: a connection idle for less than a retransmission timeout keeps its
    // congestion window (one that waited longer restarts from the initial window): a client that
    // sends its next request as soon as it has the answer — dnsperf, wrk, a browser — does not
    // go through slow start again for each.
    const keepsWindow = recent.ageMs(slot, nowMs) < this.config.initialRtoMs;
    const cwnd = keepsWindow ? recent.congestionWindow(slot) : 0;
    const ssthresh = recent.slowStartThreshold(slot);
    recent.forget(slot);
    if (length === 0) {
      // The client's FIN, where we expected it: acknowledge it, and close our side if still open.
      this.sendStateless(seg, sndNxt, (rcvNxt + 1) >>> 0, TcpFlag.ACK | (ourFinSent ? 0 : TcpFlag.FIN));
      return Outcome.FIN;
    }
    if (ourFinSent) {
      // A request after our FIN can never be answered (as on a flow, below).
      this.sendStateless(seg, sndNxt, 0, TcpFlag.RST);
      return Outcome.DATA_AFTER_FIN;
    }
    // New bytes from RCV.NXT on. The flow starts at what the client has acknowledged by now, not
    // at this segment's possibly older ACK.
    return this.startFlow(seg, negotiated, rcvNxt, sndNxt, nowMs, false, cwnd, ssthresh);
  }

  /** Whether `seg` is the first after the handshake (its cookie checks), keeping the key that proved it. */
  private isFirstSegment(seg: Segment, now: number): boolean {
    const provedBy = this.cookies.lastKeyGeneration;
    const first = this.cookies.checkFirstSegment(seg, now) >= 0;
    this.cookies.lastKeyGeneration = provedBy;
    return first;
  }

  /**
   * `provedByTokenOnly`: the flow starts with a congestion window of two segments (verifyFlowless);
   * else with `cwnd` and `ssthresh` (bytes) if the connection's last flow left that much (onRecalledSegment).
   */
  private startFlow(
    seg: Segment,
    negotiated: number,
    rcvNxt: number,
    sndNxt: number,
    nowMs: number,
    provedByTokenOnly = false,
    cwnd = 0,
    ssthresh = 0,
  ): Outcome {
    const key = this.cookies.sourceKey(seg);
    let source = this.sources.get(key);
    if (source !== undefined && (source.flows >= this.config.maxFlowsPerSource || source.bytes >= this.config.maxQueuedBytesPerSource)) {
      this.events[TcpEvent.SOURCE_FULL]!++;
      return Outcome.SOFT_STATE_FULL;
    }
    if (this.flows.size >= this.config.maxFlows && !this.shedFor(source, false, nowMs)) return Outcome.SOFT_STATE_FULL;
    if (this.queuedBytes >= this.config.maxQueuedBytes && !this.shedFor(source, true, nowMs)) return Outcome.SOFT_STATE_FULL;
    if (source === undefined) {
      source = new SourceUsage(key);
      this.sources.set(key, source);
    }
    const flow = this.createFlow(seg, negotiated, rcvNxt, sndNxt, nowMs);
    flow.source = source;
    source.flows++;
    if (provedByTokenOnly) {
      flow.cwnd = 2 * flow.payloadMss;
      flow.unproven = true;
    } else if (cwnd > flow.cwnd) {
      flow.cwnd = cwnd;
      flow.ssthresh = ssthresh;
    }
    return this.onSegment(flow, seg, nowMs);
  }

  /**
   * The shard is full (of flows, or `byBytes` of queued bytes) as a flow of `source` wants to
   * start: drop flows of sources heavier than it, with RST, until there is room, and say whether
   * there is. A source with no flow always gets its first (unless the shard holds only sources
   * with no more than that); another one only at the expense of a source that stays at least as
   * heavy. The heavy sources are found by sampling flows at random (SHED_SAMPLES per drop): a
   * source holding a share s of the flows is missed with probability (1 − s)^SHED_SAMPLES, and
   * no walk over all sources or flows is needed. The random numbers come from the newcomer's
   * keyed connection id, which clients cannot predict.
   */
  private shedFor(source: SourceUsage | undefined, byBytes: boolean, nowMs: number): boolean {
    const own = source === undefined ? 0 : byBytes ? source.bytes : source.flows;
    // Heavier than `own` after the exchange: a newcomer's first flow may take a one-flow source's.
    const lightestVictim = own === 0 ? 1 : byBytes ? own + 1 : own + 2;
    let random = this.connectionId[0]! | 1;
    for (let dropped = 0; dropped < MAX_SHED_PER_FLOW; dropped++) {
      let victim: Flow | null = null;
      let victimWeight = lightestVictim - 1;
      for (let i = 0; i < SHED_SAMPLES; i++) {
        // xorshift32 (Marsaglia 2003): enough to spread picks; the seed is what must be secret.
        random ^= random << 13;
        random ^= random >>> 17;
        random ^= random << 5;
        const flow = this.flows.sample(random);
        if (flow === null) return false;
        const weight = byBytes ? flow.source!.bytes : flow.source!.flows;
        if (weight > victimWeight) {
          victim = flow;
          victimWeight = weight;
        }
      }
      if (victim === null) return false;
      this.events[TcpEvent.FLOWS_SHED]!++;
      this.abort(victim, nowMs);
      if (byBytes ? this.queuedBytes < this.config.maxQueuedBytes : this.flows.size < this.config.maxFlows) return true;
    }
    return false;
  }

  private createFlow(seg: Segment, negotiated: number, rcvNxt: number, sndNxt: number, nowMs: number): Flow {
    const flow = new Flow();
    flow.sendQueue.pool = this.sendBuffers;
    const r = flow.reply.reverseOf(seg);
    r.window = this.config.window;
    r.mss = 0;
    r.windowScale = -1;
    r.hasTimestamps = seg.hasTimestamps;
    flow.useTimestamps = seg.hasTimestamps;
    flow.tsRecent = seg.tsVal;
    flow.sndUna = flow.sndNxt = flow.sndMax = sndNxt;
    flow.rcvNxt = rcvNxt;
    flow.rcvEdge = (rcvNxt + this.config.window) >>> 0;
    flow.idLow = this.connectionId[0]!;
    flow.idHigh = this.connectionId[1]!;
    // The key that proved this segment (verifyFlowless checked it just now): keep using it.
    flow.keyGeneration = this.cookies.lastKeyGeneration;
    flow.negotiated = negotiated;
    flow.peerWindow = seg.window << SynCookies.windowShift(negotiated);
    flow.sndWl1 = seg.seq;
    flow.sndWl2 = seg.ack;
    // RFC 9293 §3.7.1 (and RFC 1122 §4.2.2.6): the segment fits both the client's MSS and the
    // MTU toward the client — of our interface, of the route, or a path MTU already learned.
    const optionBytes = seg.hasTimestamps ? TIMESTAMP_OPTION_BYTES : 0;
    flow.payloadMss = SynCookies.mssOf(seg.family, negotiated) - optionBytes;
    if (this.pathMtus !== null) {
      const fits = this.payloadFor(seg.family, this.pathMtus.mtuToward(seg.family, r.dstAddr, nowMs), optionBytes);
      if (fits < flow.payloadMss) {
        flow.payloadMss = fits;
        this.events[TcpEvent.SEGMENT_SIZE_FROM_ROUTE]!++;
      }
    }
    // RFC 6928 initial window; RFC 5681 §3.1 ssthresh "arbitrarily high": the send buffer, the
    // most a flow ever has in flight.
    flow.cwnd = Math.min(10 * flow.payloadMss, Math.max(2 * flow.payloadMss, 14600));
    flow.ssthresh = this.config.sendBufferBytes;
    flow.rtoMs = this.config.initialRtoMs;
    flow.partialSinceMs = nowMs;
    this.flows.add(flow, seg);
    if (this.liveFlows !== null) {
      flow.routeHash = this.liveFlows.routeHashOf(seg);
      this.liveFlows.add(flow.routeHash);
    }
    this.events[TcpEvent.FLOWS_CREATED]!++;
    return flow;
  }

  // ----------------------------------------------------------------------------------------
  // Segments on a flow (RFC 9293 §3.10.7.4, in its order)
  // ----------------------------------------------------------------------------------------

  private onSegment(flow: Flow, seg: Segment, nowMs: number): Outcome {
    const outcome = this.takeSegment(flow, seg, nowMs);
    this.armTimer(flow);
    return outcome;
  }

  private takeSegment(flow: Flow, seg: Segment, nowMs: number): Outcome {
    const length = seg.payloadLength;
    const hasFin = (seg.flags & TcpFlag.FIN) !== 0;

    // The client has more of our data than this flow ever sent. With a valid token the segment
    // is the client's: the flow was made from a delayed duplicate of an old request after the
    // real one's state was released, and is stale. Drop it and take the segment as if no flow
    // existed. (Without a valid token it is a blind injection, answered below by RFC 5961.)
    if (seqLt(flow.sndMax, seg.ack) && seg.hasTimestamps && this.cookies.checkToken(seg, seg.tsEcr, nowMs / 1000) >= 0) {
      this.events[TcpEvent.STALE_FLOWS]!++;
      flow.closed = true;
      this.release(flow, nowMs);
      return this.onFlowless(seg, nowMs);
    }

    // Is the segment inside our receive window?
    if (!this.acceptable(flow, seg.seq, length + (hasFin ? 1 : 0))) {
      this.sendAck(flow, nowMs);
      return Outcome.DUPLICATE;
    }
    // RFC 7323 §4.3: remember the TSval to echo from segments that do not start beyond RCV.NXT.
    if (seg.hasTimestamps && seqLeq(seg.seq, flow.rcvNxt)) flow.tsRecent = seg.tsVal;

    // The acknowledgment. RFC 5961 §5.2: acceptable only within [SND.UNA − MAX.SND.WND, SND.MAX].
    if (seqLt(flow.sndMax, seg.ack) || seqLt(seg.ack, (flow.sndUna - 65535) >>> 0)) return this.challengeAck(flow, nowMs);
    let outcome: Outcome = Outcome.ACK;
    // RFC 7323 §2.3: every window after the SYN is shifted by the scale the client announced.
    const peerWindow = seg.window << SynCookies.windowShift(flow.negotiated);
    if (seqLt(flow.sndUna, seg.ack)) {
      this.onNewAck(flow, seg.ack, nowMs);
    } else if (seg.ack === flow.sndUna && length === 0 && !hasFin && flow.inFlight > 0 && peerWindow === flow.peerWindow) {
      // RFC 5681 §3.2: the third duplicate ACK means a segment was lost.
      if (++flow.dupAcks === 3) this.fastRetransmit(flow, nowMs);
    }
    // RFC 9293 §3.10.7.4: the window is taken from the newest segment only (SND.WL1, SND.WL2).
    // An ACK overtaken by a later one says where the client's window ended then; read from our
    // newer SND.UNA it would reach past the client's buffer.
    if (seqLeq(flow.sndUna, seg.ack) && (seqLt(flow.sndWl1, seg.seq) || (flow.sndWl1 === seg.seq && seqLeq(flow.sndWl2, seg.ack)))) {
      flow.peerWindow = peerWindow;
      flow.sndWl1 = seg.seq;
      flow.sndWl2 = seg.ack;
    }

    let mustAck = false;
    let gapFilled = false;
    if (length > 0) {
      if (seqLt(flow.rcvNxt, seg.seq)) {
        // A gap: an earlier segment was lost. Say where we are; the client resends from there.
        // While a body streams in, what came beyond the gap is held for when it is filled.
        if (flow.bodyStreaming) this.holdBeyondGap(flow, seg);
        this.sendAck(flow, nowMs);
        this.settle(flow, nowMs);
        return Outcome.OUT_OF_ORDER;
      }
      if (flow.finQueued && !flow.clientFin && !flow.closeRequested) {
        // We closed our side (--close-after-response, or no timestamps): a request arriving now
        // can never be answered. Say so with RST, as a kernel does for data after close(2).
        // Not when the application closed (HTTP): what arrives then — the rest of a body it
        // refused, or a request sent before ours arrived — is acknowledged and dropped until
        // the client has acknowledged our FIN, lest an RST erase the response from the
        // client's buffers before it is read (RFC 9112 §9.6, the "lingering close").
        this.abort(flow, nowMs);
        return Outcome.DATA_AFTER_FIN;
      }
      if (this.queuedBytes >= this.config.maxQueuedBytes || flow.source!.bytes >= this.config.maxQueuedBytesPerSource) {
        if (flow.source!.bytes >= this.config.maxQueuedBytesPerSource) this.events[TcpEvent.SOURCE_FULL]!++;
        this.settle(flow, nowMs);
        return Outcome.SOFT_STATE_FULL;
      }
      const skip = (flow.rcvNxt - seg.seq) >>> 0; // bytes we already have (a retransmission overlapping new data)
      const take = Math.min(length - skip, this.freeWindow(flow));
      if (take > 0) {
        this.receive(flow, seg.buf, seg.payloadOffset + skip, take, nowMs);
        if (flow.reassembly !== null && flow.reassembly.bytes > 0 && !flow.released) gapFilled = this.receiveHeld(flow, nowMs);
        outcome = Outcome.DATA;
      } else {
        outcome = Outcome.DUPLICATE;
      }
      mustAck = true;
    }
    if (hasFin && (seg.seq + length) >>> 0 === flow.rcvNxt && !flow.clientFin) {
      flow.clientFin = true;
      flow.rcvNxt = (flow.rcvNxt + 1) >>> 0;
      // A message cut off by the FIN can never complete; whole ones held back still get answers.
      const queue = flow.receiveQueue;
      const whole = wholeMessagesBy(this.config.messageLength, queue.bytes, queue.start, queue.length);
      this.account(flow, -(queue.length - whole));
      queue.truncate(whole);
      if (flow.bodyStreaming) {
        flow.bodyStreaming = false;
        this.app.onBodyCutOff?.(flow);
      }
      mustAck = true;
      outcome = Outcome.FIN;
    }

    const sentBefore = this.segmentsSent;
    this.settle(flow, nowMs);
    // Anything `settle` sent carried RCV.NXT already. Otherwise acknowledge — or, if the request
    // is now waiting for its answer, let the answer carry the ACK (RFC 9293 §3.8.6.3), unless an
    // ACK is already being held (RFC 1122 §4.2.3.2: at least every second segment).
    if (mustAck && !flow.closed && this.segmentsSent === sentBefore) {
      // A segment that filled a gap is acknowledged at once (RFC 5681 §4.2): the client is
      // recovering from a loss.
      if (outcome === Outcome.DATA && flow.answersOwed > 0 && flow.ackDelayedSinceMs < 0 && !gapFilled) flow.ackDelayedSinceMs = nowMs;
      else this.sendAck(flow, nowMs);
    }
    return outcome;
  }

  /**
   * A challenge ACK (RFC 5961 §3.2, §4.2, §5.2): the real peer answers it, a blind attacker does
   * not see it. Rate-limited per flow (RFC 5961 §7) to a burst of CHALLENGE_ACK_BURST in each
   * CHALLENGE_ACK_INTERVAL_MS, so that forged segments cannot make us send the client a stream of
   * ACKs; per flow rather than for the whole shard, so that the limit tells an off-path attacker
   * nothing about other connections (the side channel of CVE-2016-5696).
   */
  private challengeAck(flow: Flow, nowMs: number): Outcome {
    if (nowMs - flow.challengeIntervalStartMs >= CHALLENGE_ACK_INTERVAL_MS) {
      flow.challengeIntervalStartMs = nowMs;
      flow.challengeAcks = 0;
    }
    if (flow.challengeAcks >= CHALLENGE_ACK_BURST) {
      this.events[TcpEvent.CHALLENGE_ACKS_LIMITED]!++;
      return Outcome.IGNORED;
    }
    flow.challengeAcks++;
    this.sendAck(flow, nowMs);
    return Outcome.CHALLENGE_ACK;
  }

  /** RFC 9293 §3.10.7.4 acceptance test with RCV.WND = our advertised window. */
  private acceptable(flow: Flow, seq: number, segmentLength: number): boolean {
    const fromNext = (seq - flow.rcvNxt) | 0;
    const window = this.config.window;
    if (segmentLength === 0) return fromNext >= 0 && fromNext < window;
    const lastFromNext = (seq + segmentLength - 1 - flow.rcvNxt) | 0;
    return (fromNext >= 0 && fromNext < window) || (lastFromNext >= 0 && lastFromNext < window);
  }

  /** Takes in-order bytes: whole messages go to the application as the flow's limits allow, the rest waits. */
  private receive(flow: Flow, buf: Uint8Array, offset: number, length: number, nowMs: number): void {
    flow.rcvNxt = (flow.rcvNxt + length) >>> 0;
    // The application asked to close (transport.ts closeWhenAnswered): acknowledged, not delivered.
    if (flow.closeRequested) return;
    const queue = flow.receiveQueue;
    if (queue.length === 0) {
      // The usual case: the segment's whole messages are handed over without copying; what the
      // flow may not take yet, and a partial message, are queued.
      const used = this.deliver(flow, buf, offset, length, nowMs);
      if (used < length && !flow.released && !flow.closeRequested) {
        queue.append(buf, offset + used, length - used);
        this.account(flow, length - used);
        flow.partialSinceMs = nowMs;
      }
      return;
    }
    queue.append(buf, offset, length);
    this.account(flow, length);
    this.deliverQueued(flow, nowMs);
  }

  /**
   * Holds a segment that arrived beyond a gap while a body streams (reassembly.ts), as far as it
   * lies within the window and the byte bounds allow; what is not held the client sends again.
   */
  private holdBeyondGap(flow: Flow, seg: Segment): void {
    if (this.queuedBytes >= this.config.maxQueuedBytes || flow.source!.bytes >= this.config.maxQueuedBytesPerSource) return;
    const fromNext = (seg.seq - flow.rcvNxt) >>> 0;
    const length = Math.min(seg.payloadLength, this.freeWindow(flow) - fromNext);
    if (length <= 0) return;
    flow.reassembly ??= new Reassembly();
    this.account(flow, flow.reassembly.add(seg.seq, seg.buf, seg.payloadOffset, length));
  }

  /** After in-order bytes: what was held beyond the gap they filled is taken as if it arrived now. Whether any was. */
  private receiveHeld(flow: Flow, nowMs: number): boolean {
    const held = flow.reassembly!;
    let any = false;
    for (;;) {
      const before = held.bytes;
      const piece = held.shift(flow.rcvNxt);
      this.account(flow, held.bytes - before);
      if (piece === null) return any;
      any = true;
      this.receive(flow, piece, 0, Math.min(piece.length, this.freeWindow(flow)), nowMs);
      if (flow.released) return any;
    }
  }

  /**
   * Hands the whole messages at the start of `buf[offset, offset+length)` to the application, one
   * at a time, while the flow may take more (`mayTakeMore`); returns the bytes handed over. A
   * client that pipelines past the limit finds its messages held in the receive queue, and the
   * window we advertise shrinks by as much (`emit`), so its own TCP holds the rest back.
   */
  private deliver(flow: Flow, buf: Uint8Array, offset: number, length: number, nowMs: number): number {
    let used = 0;
    flow.delivering = true;
    while (used < length) {
      if (flow.bodyStreaming) {
        // A body goes on whatever the flow owes: it belongs to a message already taken. All of
        // it is held while the application looks at it, so that what it releases meanwhile
        // (a body it gives up) is already counted; what it leaves is not held after all.
        const offered = length - used;
        flow.bodyHeld += offered;
        this.account(flow, offered);
        const taken = this.app.onBody!(flow, buf, offset + used, offered, nowMs);
        if (flow.released) break; // its bytes were let go with it
        flow.bodyHeld -= offered - taken;
        this.account(flow, taken - offered);
        used += taken;
        flow.bodyBytesSince += taken;
        if (flow.bodyBytesSince >= this.halfWindow) this.restartBodyClock(flow, nowMs);
        if (flow.bodyStreaming || flow.closeRequested) break;
        continue;
      }
      const n = this.config.messageLength(buf, offset + used, length - used);
      if (n === 0) break;
      if (!this.mayTakeMore(flow)) {
        if (!flow.pipelineHeld) this.events[TcpEvent.PIPELINE_FULL]!++;
        flow.pipelineHeld = true;
        break;
      }
      flow.pipelineHeld = false;
      this.app.onMessages(flow, buf, offset + used, n, nowMs);
      used += n;
      if (flow.released || flow.closeRequested) break;
    }
    flow.delivering = false;
    return used;
  }

  /** Hands over what the receive queue holds, as far as the flow's limits allow now. */
  private deliverQueued(flow: Flow, nowMs: number): void {
    const queue = flow.receiveQueue;
    if (flow.delivering || queue.length === 0 || !this.mayTakeMore(flow)) return;
    const used = this.deliver(flow, queue.bytes, queue.start, queue.length, nowMs);
    if (flow.released) return; // its queues were let go with it
    queue.consume(used);
    this.account(flow, -used);
    // A message was completed: the deadline of what follows counts from now.
    if (used > 0) flow.partialSinceMs = nowMs;
    if (flow.closeRequested) this.discardReceived(flow);
  }

  /** Whether the flow may be handed another message: it owes fewer than its limit of answers and its send buffer has room. */
  private mayTakeMore(flow: Flow): boolean {
    return flow.answersOwed < this.config.maxPipelined && flow.sendQueue.length < this.config.sendBufferBytes;
  }

  /** Bytes queued on `flow` changed by `delta`: in all flows, and in its source's. */
  private account(flow: Flow, delta: number): void {
    this.queuedBytes += delta;
    flow.source!.bytes += delta;
  }

  private discardReceived(flow: Flow): void {
    this.account(flow, -flow.receiveQueue.length);
    flow.receiveQueue.consume(flow.receiveQueue.length);
  }

  private onNewAck(flow: Flow, ack: number, nowMs: number): void {
    let acked = (ack - flow.sndUna) >>> 0;
    if (flow.finInFlight && seqLt(flow.finSeq, ack)) acked--; // the FIN's sequence number holds no byte
    acked = Math.min(acked, flow.sendQueue.length);
    flow.sendQueue.consume(acked);
    this.account(flow, -acked);
    flow.sndUna = ack;
    if (seqLt(flow.sndNxt, ack)) flow.sndNxt = ack; // after going back, the client had more than we resent
    // RFC 5681 §3.1: slow start below ssthresh, congestion avoidance above.
    const mss = flow.payloadMss;
    flow.cwnd += flow.cwnd < flow.ssthresh ? Math.min(acked, mss) : Math.max(1, Math.floor((mss * mss) / flow.cwnd));
    flow.dupAcks = 0;
    flow.retransmits = 0;
    flow.unproven = false;
    flow.windowClosedSinceMs = -1; // the client took data: its window was open
    flow.rtoMs = this.config.initialRtoMs;
    flow.lastSendMs = nowMs; // RFC 6298 (5.3): restart the timer on an ACK of new data
    if (flow.drainWanted && flow.sendQueue.length <= this.config.sendBufferBytes / 2) {
      flow.drainWanted = false;
      this.app.onDrain?.(flow, nowMs);
    }
  }

  private onReset(flow: Flow, seg: Segment, nowMs: number): Outcome {
    // RFC 5961 §3.2: only an RST at exactly RCV.NXT resets; one elsewhere in the window gets a
    // challenge ACK (a real peer answers it with a correct RST), one outside is ignored.
    if (seg.seq === flow.rcvNxt) {
      flow.closed = true;
      this.release(flow, nowMs);
      return Outcome.RESET;
    }
    if (this.acceptable(flow, seg.seq, 1)) return this.challengeAck(flow, nowMs);
    return Outcome.IGNORED;
  }

  // ----------------------------------------------------------------------------------------
  // Sending
  // ----------------------------------------------------------------------------------------

  private queueAnswer(flow: Flow, data: Uint8Array, offset: number, length: number): void {
    flow.sendQueue.append(data, offset, length);
    this.account(flow, length);
    this.wantPush(flow);
  }

  /** The flow has something to send at the next push (`push`). */
  private wantPush(flow: Flow): void {
    if (flow.pushPending) return;
    flow.pushPending = true;
    this.unpushed.push(flow);
    if (this.unpushed.length === 1) this.sink.pushWanted();
  }

  /** Receive buffer left: the window less the held messages and the body the application holds. */
  private freeWindow(flow: Flow): number {
    return this.config.window - flow.receiveQueue.length - flow.bodyHeld;
  }

  /** Whether the window has opened enough since the client was last told to tell it now (`releaseBody`). */
  private windowUpdateDue(flow: Flow): boolean {
    const free = this.freeWindow(flow);
    const shown = (flow.rcvEdge - flow.rcvNxt) | 0;
    return free - shown >= this.swsThreshold && free >= 2 * shown;
  }

  /** After anything changed: decide on our FIN, send what the windows allow, release if done. */
  private settle(flow: Flow, nowMs: number): void {
    // Released already: a flow waiting for its push can be released meanwhile (an empty answer
    // was its last, and an ACK settled it). While its messages are handed over, the caller of
    // `deliver` settles it after.
    if (flow.closed || flow.released || flow.delivering) return;
    // Messages held back by the flow's limits go on once answers are given and ACKs make room.
    this.deliverQueued(flow, nowMs);
    if (flow.closed || flow.released) return;
    const nothingOwed = flow.answersOwed === 0 && flow.receiveQueue.length === 0;
    // Without timestamps an idle connection cannot be recognised later, so it closes like one
    // with --close-after-response (see cookie.ts).
    const closeWhenIdle = this.config.closeAfterResponse || !flow.useTimestamps || flow.clientFin || flow.closeRequested;
    if (!flow.finQueued && nothingOwed && closeWhenIdle) flow.finQueued = true;
    this.flush(flow, nowMs);
    if (nothingOwed && flow.sendQueue.length === 0 && (!flow.finQueued || (flow.finSent && !flow.finInFlight))) {
      this.release(flow, nowMs);
    }
  }

  /** Sends queued bytes (and our FIN) as far as min(client window, cwnd) allows. */
  private flush(flow: Flow, nowMs: number): void {
    for (;;) {
      const unsent = flow.unsent;
      if (unsent > 0) {
        const usable = Math.min(flow.peerWindow, flow.cwnd) - flow.inFlight;
        const n = Math.min(unsent, flow.payloadMss, usable);
        if (n <= 0) return;
        // Sender silly-window avoidance (RFC 9293 §3.8.6.2.1): no small segment while more is
        // waiting and data is in flight to bring the window-opening ACK.
        if (n < flow.payloadMss && n < unsent && flow.inFlight > 0) return;
        this.sendFromQueue(flow, n, n === unsent && flow.finQueued, nowMs);
      } else if (flow.finQueued && !flow.finSent) {
        this.sendFromQueue(flow, 0, true, nowMs);
        return;
      } else {
        return;
      }
    }
  }

  /** Sends `length` bytes from SND.NXT, with our FIN after them if `fin`. */
  private sendFromQueue(flow: Flow, length: number, fin: boolean, nowMs: number): void {
    if (flow.inFlight === 0) flow.lastSendMs = nowMs; // RFC 6298 (5.1): start the timer
    const offset = flow.sendQueue.start + flow.inFlight;
    const last = length === flow.unsent;
    this.emit(
      flow,
      flow.sndNxt,
      TcpFlag.ACK | (last && length > 0 ? TcpFlag.PSH : 0) | (fin ? TcpFlag.FIN : 0),
      flow.sendQueue.bytes,
      offset,
      length,
      nowMs,
    );
    flow.sndNxt = (flow.sndNxt + length) >>> 0;
    if (fin) {
      flow.finSent = true;
      flow.finSeq = flow.sndNxt;
      flow.sndNxt = (flow.sndNxt + 1) >>> 0;
    }
    if (seqLt(flow.sndMax, flow.sndNxt)) flow.sndMax = flow.sndNxt;
  }

  private fastRetransmit(flow: Flow, nowMs: number): void {
    this.events[TcpEvent.FAST_RETRANSMITS]!++;
    flow.ssthresh = Math.max(Math.floor(flow.inFlight / 2), 2 * flow.payloadMss);
    flow.cwnd = flow.ssthresh;
    // Resend the first unacknowledged segment (with our FIN if that is all that follows it);
    // what was sent after it stays in flight.
    const length = Math.min(flow.sendQueue.length, flow.payloadMss);
    const fin = flow.finInFlight && length === flow.sendQueue.length;
    this.emit(flow, flow.sndUna, TcpFlag.ACK | (fin ? TcpFlag.FIN : 0), flow.sendQueue.bytes, flow.sendQueue.start, length, nowMs);
  }

  private onRetransmitTimeout(flow: Flow, nowMs: number): void {
    // A flow nobody has acknowledged, proved only by a token someone may have learned, resends
    // once: a forged request then draws at most its two segments and one again toward its victim.
    if (flow.retransmits >= (flow.unproven ? UNPROVEN_MAX_RETRANSMITS : this.config.maxRetransmits)) {
      this.abort(flow, nowMs);
      return;
    }
    this.events[TcpEvent.RETRANSMIT_TIMEOUTS]!++;
    flow.retransmits++;
    // RFC 4821 §7.5: a path that drops big packets silently (ICMP filtered) looks like loss; on
    // the second timeout in a row of segments larger than any path must carry, cut them to that.
    if (flow.retransmits === FALLBACK_AFTER_TIMEOUTS) {
      const fallback = this.payloadFor(flow.reply.family, MIN_MTU_V6, flow.useTimestamps ? TIMESTAMP_OPTION_BYTES : 0);
      if (flow.payloadMss > fallback && flow.sendQueue.length > fallback) {
        flow.payloadMss = fallback;
        this.events[TcpEvent.SEGMENT_SIZE_FALLBACKS]!++;
      }
    }
    // RFC 5681 §3.1 (4): after a timeout, one segment at a time; RFC 6298 (5.5): back off.
    flow.ssthresh = Math.max(Math.floor(flow.inFlight / 2), 2 * flow.payloadMss);
    flow.cwnd = flow.payloadMss;
    flow.rtoMs = Math.min(flow.rtoMs * 2, this.config.maxRtoMs);
    // Go back to the oldest unacknowledged byte (and unsend an unacknowledged FIN); ACKs then move
    // SND.NXT forward over whatever the client already holds (onNewAck).
    flow.sndNxt = flow.sndUna;
    flow.finSent = false;
    this.flush(flow, nowMs);
    flow.lastSendMs = nowMs;
  }

  /** Payload bytes per segment that fit a packet of `mtu` bytes with our headers and `optionBytes` of TCP options. */
  private payloadFor(family: 4 | 6, mtu: number, optionBytes: number): number {
    return mtu - (family === 4 ? IPV4_HEADER_BYTES : IPV6_HEADER_BYTES) - TCP_HEADER_BYTES - optionBytes;
  }

  private sendAck(flow: Flow, nowMs: number): void {
    this.emit(flow, flow.sndNxt, TcpFlag.ACK, null, 0, 0, nowMs);
  }

  private emit(flow: Flow, seq: number, flags: number, data: Uint8Array | null, offset: number, length: number, nowMs: number): void {
    const r = flow.reply;
    r.seq = seq;
    r.ack = flow.rcvNxt;
    r.flags = flags;
    // What the receive queue and the application hold is out of the window: its right edge
    // stays put as bytes arrive (RFC 9293 §3.8.6.2.2: no shrinking) and moves on as they are
    // handed over — by a segment or more at a time, or to the whole window, so that the client
    // is never offered a sliver (receiver silly-window avoidance, RFC 9293 §3.8.6.2.2, RFC 1122
    // §4.2.3.3).
    const free = this.freeWindow(flow);
    const shown = (flow.rcvEdge - flow.rcvNxt) | 0;
    const window = free < this.config.window && shown >= 0 && shown <= free && free - shown < this.swsThreshold ? shown : free;
    r.window = window;
    flow.rcvEdge = (flow.rcvNxt + window) >>> 0;
    if (flow.useTimestamps) {
      const period = this.cookies.period(nowMs / 1000);
      if (period !== flow.tokenPeriod) {
        // One period on at most from the token the client holds (cookie.ts: its PAWS check).
        flow.tokenPeriod = flow.tokenPeriod >= 0 && period - flow.tokenPeriod > 1 ? flow.tokenPeriod + 1 : period;
        flow.token = this.cookies.tokenForReply(r, flow.negotiated, flow.tokenPeriod, flow.keyGeneration);
      }
      r.tsVal = flow.token;
      r.tsEcr = flow.tsRecent;
    }
    this.segmentsSent++;
    flow.ackDelayedSinceMs = -1;
    this.sink.send(r, data, offset, length);
  }

  /** A reply to a segment with no flow: RST, or the ACK (and FIN) of a FIN. */
  private sendStateless(seg: Segment, seq: number, ack: number, flags: number): void {
    const c = this.control.reverseOf(seg);
    c.seq = seq;
    c.ack = ack;
    c.flags = flags;
    c.mss = 0;
    c.windowScale = -1;
    const isReset = (flags & TcpFlag.RST) !== 0;
    c.window = isReset ? 0 : this.config.window;
    // RFC 7323 §3.2: once negotiated, every non-RST segment carries timestamps.
    c.hasTimestamps = seg.hasTimestamps && !isReset;
    if (c.hasTimestamps) {
      c.tsVal = seg.tsEcr; // the token the client just proved valid
      c.tsEcr = seg.tsVal;
    }
    this.segmentsSent++;
    this.sink.send(c, null, 0, 0);
  }

  /** Gives up on a flow: RST to the client (RFC 9293 §3.10.7.4 abort), state dropped. */
  private abort(flow: Flow, nowMs: number): void {
    this.events[TcpEvent.FLOWS_ABORTED]!++;
    const r = flow.reply;
    const hadTimestamps = r.hasTimestamps;
    r.hasTimestamps = false;
    this.emit(flow, flow.sndNxt, TcpFlag.RST, null, 0, 0, nowMs);
    r.hasTimestamps = hadTimestamps;
    flow.closed = true;
    this.release(flow, nowMs);
  }

  private release(flow: Flow, nowMs: number): void {
    flow.released = true;
    this.timers.cancel(flow);
    this.account(flow, -(flow.sendQueue.length + flow.receiveQueue.length + flow.bodyHeld + (flow.reassembly?.bytes ?? 0)));
    flow.bodyHeld = 0;
    flow.reassembly?.clear();
    flow.sendQueue.recycle();
    this.flows.remove(flow);
    this.liveFlows?.remove(flow.routeHash);
    const source = flow.source!;
    if (--source.flows === 0) this.sources.delete(source.key);
    this.events[TcpEvent.FLOWS_RELEASED]!++;
    // Everything sent is acknowledged and nothing is owed: the connection goes idle. Remember
    // where it stands (recent.ts), unless it is over — reset, aborted, or closed by the client.
    if (!flow.closed && !flow.clientFin)
      this.recent.remember(flow.idHigh, flow.idLow, flow.rcvNxt, flow.sndMax, flow.finSent, flow.cwnd, flow.ssthresh, nowMs);
    // A released flow the application still owes answers to is closed: they will be dropped.
    if (flow.answersOwed > 0) {
      flow.closed = true;
      this.app.onClosed?.(flow);
    }
  }
}
