/**
 * One shard's packet path, from a captured frame to the packets sent back (DNS shown; HTTP is
 * the same with the HTTP relay and a backend web server: the protocol is a parameter):
 *
 *   frame ──decodeFrame──▶ Segment ──Responder──▶ SYN+ACK / ACK / RST / retransmissions
 *                                          └────▶ whole messages ──DnsRelay──▶ upstream (UDP)
 *   upstream answer ──DnsRelay──▶ Responder.answer ──▶ segments ──emitReply──▶ RawSender
 *
 * State lives only in the responder's flows (while a connection has something in flight) and
 * the relay's pending queries. Everything reused per packet is allocated once.
 */
import { type ChecksumPolicy, DECODE_RESULT_NAMES, DecodeResult, Segment, type LinkType, type ReplyHeader } from './wire/segment.js';
import { decodeFrame } from './wire/frame.js';
import { emitReply } from './wire/emit.js';
import { OUTCOME_NAMES } from './tcp/counters.js';
import { Responder, type SegmentSink, type TcpSettings } from './tcp/responder.js';
import type { SynCookies } from './tcp/cookie.js';
import type { Flow } from './tcp/flow.js';
import type { LiveFlows } from './tcp/live-flows.js';
import type { MartianSources } from './wire/martian.js';
import type { Protocol, Relay } from './tcp/transport.js';

/** Sends one IP packet to `dst` (implemented by io/raw-send.ts). */
export interface PacketSender {
  send(family: 4 | 6, packet: Buffer, length: number, dst: Uint8Array): void;
}

/** IPv6 header (40) + TCP header with options (60) + the largest payload we cut (one MSS ≤ 65535). */
const MAX_PACKET = 40 + 60 + 65535;

export interface TcpPipelineOptions {
  linkType: LinkType;
  checksumPolicy: ChecksumPolicy;
  cookies: SynCookies;
  tcp: TcpSettings;
  sender: PacketSender;
  /** Where the capture thread learns which connections have flows (omitted: no capture thread answers SYNs). */
  liveFlows?: LiveFlows | null;
  /** Sources that get no answer (omitted: the martian ranges, no host addresses). */
  martians?: MartianSources;
}

/** One shard's TCP path, whatever the protocol: decode, respond, relay, emit, send. */
export class TcpPipeline implements SegmentSink {
  readonly decodeCounts = new Float64Array(DECODE_RESULT_NAMES.length);
  readonly outcomeCounts = new Float64Array(OUTCOME_NAMES.length);
  /** Of the frames decoded OK, those whose TCP checksum the sender left to offload (`decode.checksum_offloaded`). */
  checksumOffloaded = 0;
  readonly responder: Responder;
  private readonly linkType: LinkType;
  private readonly checksumPolicy: ChecksumPolicy;
  private readonly sender: PacketSender;
  private readonly segment = new Segment();
  private readonly packet = Buffer.alloc(MAX_PACKET);
  /** Whether a `Responder.push` is scheduled (see `pushWanted`). */
  private pushScheduled = false;
  private readonly pushAnswers = (): void => {
    this.pushScheduled = false;
    this.responder.push(Date.now());
  };

  /** `relay` is the protocol's relay (Application.open, or one built by a test), attached here. */
  constructor(
    options: TcpPipelineOptions,
    protocol: Protocol,
    readonly relay: Relay<Flow>,
  ) {
    this.linkType = options.linkType;
    this.checksumPolicy = options.checksumPolicy;
    this.sender = options.sender;
    this.responder = new Responder(
      { ...options.tcp, messageLength: protocol.messageLength, plausibleStart: protocol.plausibleStart },
      options.cookies,
      this,
      relay,
      options.liveFlows ?? null,
      options.martians,
    );
    relay.attach(this.responder);
  }

  /**
   * Handles one captured frame `frame[offset, offset + length)` — in a shard worker, a slot of
   * its ring, read in place — and is done with it when this returns: the relay copies queries out.
   */
  handleFrame(frame: Uint8Array, offset: number, length: number, nowMs: number): void {
    const seg = this.segment;
    const result = decodeFrame(this.linkType, frame, offset, length, this.checksumPolicy, seg);
    this.decodeCounts[result]!++;
    if (result !== DecodeResult.OK) return;
    if (seg.checksumOffloaded) this.checksumOffloaded++;
    this.outcomeCounts[this.responder.handleSegment(seg, nowMs)]!++;
  }

  /** Timers: TCP retransmission and eviction, and the relay's. Call every few milliseconds. */
  tick(nowMs: number): void {
    this.responder.tick(nowMs);
    this.relay.tick(nowMs);
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
