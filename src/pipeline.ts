/**
 * One shard's packet path, from a captured frame to the packets sent back (DNS shown; HTTP is
 * the same with the HTTP relay and a backend web server):
 *
 *   frame ──decodeFrame──▶ Segment ──Responder──▶ SYN+ACK / ACK / RST / retransmissions
 *                                          └────▶ whole messages ──DnsRelay──▶ upstream (UDP)
 *   upstream answer ──DnsRelay──▶ Responder.answer ──▶ segments ──emitReply──▶ RawSender
 *
 * State lives only in the responder's flows (while a connection has something in flight) and
 * the relay's pending queries. Everything reused per packet is allocated once.
 */
import { ChecksumPolicy, DECODE_RESULT_NAMES, DecodeResult, Segment, type LinkType, type ReplyHeader } from './wire/segment.js';
import { decodeFrame } from './wire/frame.js';
import { emitReply } from './wire/emit.js';
import { OUTCOME_NAMES, Responder, type ResponderConfig, type SegmentSink } from './tcp/responder.js';
import type { SynCookies } from './tcp/cookie.js';
import type { Flow } from './tcp/flow.js';
import type { LiveFlows } from './tcp/live-flows.js';
import { DnsRelay, RELAY_COUNTER_NAMES, type RelayConfig, type UpstreamTransport } from './dns/relay.js';
import { plausibleQueryStart, wholeMessages } from './dns/message.js';
import { HTTP_COUNTER_NAMES, HttpRelay } from './http/relay.js';
import { plausibleRequestStart, wholeRequests } from './http/request.js';
import type { HttpBackend } from './io/http-backend.js';
import { formatAddress } from './wire/format.js';

/** Sends one IP packet to `dst` (implemented by io/raw-send.ts). */
export interface PacketSender {
  send(family: 4 | 6, packet: Buffer, length: number, dst: Uint8Array): void;
}

/** IPv6 header (40) + TCP header with options (60) + the largest payload we cut (one MSS ≤ 65535). */
const MAX_PACKET = 40 + 60 + 65535;

/**
 * One shard's TCP path, whatever the application: decode, respond, emit, send. Subclasses add
 * the application (DNS relay, HTTP relay) and its timers.
 */
export abstract class TcpPipeline implements SegmentSink {
  readonly decodeCounts = new Float64Array(DECODE_RESULT_NAMES.length);
  readonly outcomeCounts = new Float64Array(OUTCOME_NAMES.length);
  abstract readonly responder: Responder;
  private readonly segment = new Segment();
  private readonly packet = Buffer.alloc(MAX_PACKET);
  /** Whether a `Responder.push` is scheduled (see `pushWanted`). */
  private pushScheduled = false;
  private readonly pushAnswers = (): void => {
    this.pushScheduled = false;
    this.responder.push(Date.now());
  };

  constructor(
    private readonly linkType: LinkType,
    private readonly checksumPolicy: ChecksumPolicy,
    private readonly sender: PacketSender,
  ) {}

  /**
   * Handles one captured frame `frame[offset, offset + length)` — in a shard worker, a slot of
   * its ring, read in place — and is done with it when this returns: the relay copies queries out.
   */
  handleFrame(frame: Uint8Array, offset: number, length: number, nowMs: number): void {
    const seg = this.segment;
    const result = decodeFrame(this.linkType, frame, offset, length, this.checksumPolicy, seg);
    this.decodeCounts[result]!++;
    if (result !== DecodeResult.OK) return;
    this.outcomeCounts[this.responder.handleSegment(seg, nowMs)]!++;
  }

  /** Timers: TCP retransmission and eviction, and the application's. Call every few milliseconds. */
  tick(nowMs: number): void {
    this.responder.tick(nowMs);
  }

  /**
   * SegmentSink: answers are waiting. They are pushed in the event loop's check phase, after
   * everything the upstream sockets delivered in this turn (a batch of UDP answers, TCP answers,
   * HTTP body chunks, each in a callback of its own) and the rest of the batch of captured
   * frames, so that answers that came together for one connection share its segments.
   */
  pushWanted(): void {
    if (this.pushScheduled) return;
    this.pushScheduled = true;
    setImmediate(this.pushAnswers);
  }

  /** SegmentSink: emit one segment and send it. */
  send(header: ReplyHeader, payload: Uint8Array | null, offset: number, length: number): void {
    const n = emitReply(header, payload, offset, length, this.packet, 0);
    this.sender.send(header.family, this.packet, n, header.dstAddr);
  }
}

/** The names of each application's relay counters (`relay.counts` indices). */
export const APPLICATION_COUNTER_NAMES: Readonly<Record<'dns' | 'http', readonly string[]>> = {
  dns: RELAY_COUNTER_NAMES,
  http: HTTP_COUNTER_NAMES,
};

export class DnsPipeline extends TcpPipeline {
  readonly relay: DnsRelay<Flow>;
  readonly responder: Responder;

  constructor(
    linkType: LinkType,
    checksumPolicy: ChecksumPolicy,
    cookies: SynCookies,
    tcp: Omit<ResponderConfig, 'framer' | 'plausibleStart'>,
    sender: PacketSender,
    relayConfig: RelayConfig,
    upstream: UpstreamTransport,
    fillRandom: (bytes: Uint8Array) => void,
    liveFlows: LiveFlows | null = null,
  ) {
    super(linkType, checksumPolicy, sender);
    this.relay = new DnsRelay<Flow>(relayConfig, upstream, fillRandom);
    this.responder = new Responder({ ...tcp, framer: wholeMessages, plausibleStart: plausibleQueryStart }, cookies, this, this.relay, liveFlows);
    this.relay.attach(this.responder);
  }

  override tick(nowMs: number): void {
    super.tick(nowMs);
    this.relay.expire(nowMs);
  }
}

export class HttpPipeline extends TcpPipeline {
  readonly relay: HttpRelay<Flow>;
  readonly responder: Responder;

  constructor(
    linkType: LinkType,
    checksumPolicy: ChecksumPolicy,
    cookies: SynCookies,
    tcp: Omit<ResponderConfig, 'framer' | 'plausibleStart'>,
    sender: PacketSender,
    backend: HttpBackend,
    liveFlows: LiveFlows | null = null,
  ) {
    super(linkType, checksumPolicy, sender);
    const relay = new HttpRelay<Flow>(backend);
    const responder = new Responder({ ...tcp, framer: wholeRequests, plausibleStart: plausibleRequestStart }, cookies, this, relay, liveFlows);
    relay.attach({
      expectAnswer: (flow) => responder.expectAnswer(flow),
      answerPart: (flow, data, offset, length) => responder.answerPart(flow, data, offset, length),
      answer: (flow, data, offset, length) => responder.answer(flow, data, offset, length),
      closeWhenAnswered: (flow, nowMs) => responder.closeWhenAnswered(flow, nowMs),
      reset: (flow, nowMs) => responder.reset(flow, nowMs),
      isClosed: (flow) => flow.closed,
      clientAddress: (flow) => formatAddress(flow.reply.dstAddr, 0, flow.reply.family),
    });
    this.relay = relay;
    this.responder = responder;
  }
}
