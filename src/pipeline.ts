/**
 * One shard's packet path, from a captured frame to the packets sent back:
 *
 *   frame ──decodeFrame──▶ Segment ──Responder──▶ control segment (SYN+ACK / ACK / RST)
 *                                          └────▶ request ──DnsRelay──▶ upstream (UDP)
 *   upstream answer ──DnsRelay──▶ cutResponse ──▶ segments ──emitReply──▶ RawSender
 *
 * It holds no per-connection state itself; the relay holds state only while an upstream answer
 * is outstanding. Everything it reuses (segment, response, packet buffer) is allocated once.
 */
import { ChecksumPolicy, DECODE_RESULT_NAMES, DecodeResult, Segment, type LinkType, type ReplyHeader } from './wire/segment.js';
import { decodeFrame } from './wire/frame.js';
import { emitReply } from './wire/emit.js';
import { OUTCOME_NAMES, Outcome, Responder, Response, type SegmentSink } from './tcp/responder.js';
import { DnsRelay, type RelayConfig, type UpstreamTransport } from './dns/relay.js';

/** Sends one IP packet to `dst` (implemented by io/raw-send.ts). */
export interface PacketSender {
  send(family: 4 | 6, packet: Buffer, length: number, dst: Uint8Array): void;
}

/** IPv6 header (40) + TCP header with options (60) + the largest payload we cut (one MSS ≤ 65535). */
const MAX_PACKET = 40 + 60 + 65535;

export class DnsPipeline implements SegmentSink {
  readonly decodeCounts = new Float64Array(DECODE_RESULT_NAMES.length);
  readonly outcomeCounts = new Float64Array(OUTCOME_NAMES.length);
  readonly relay: DnsRelay;
  private readonly segment = new Segment();
  private readonly response = new Response();
  private readonly packet = Buffer.alloc(MAX_PACKET);

  constructor(
    private readonly linkType: LinkType,
    private readonly checksumPolicy: ChecksumPolicy,
    private readonly responder: Responder,
    private readonly sender: PacketSender,
    relayConfig: RelayConfig,
    upstream: UpstreamTransport,
    fillRandom: (bytes: Uint8Array) => void,
  ) {
    this.relay = new DnsRelay(relayConfig, upstream, this, fillRandom);
  }

  /** Handles one captured frame `frame[0, length)`; the frame is not used after this returns. */
  handleFrame(frame: Uint8Array, length: number, nowMs: number): void {
    const seg = this.segment;
    const result = decodeFrame(this.linkType, frame, 0, length, this.checksumPolicy, seg);
    this.decodeCounts[result]!++;
    if (result !== DecodeResult.OK) return;

    const r = this.response;
    const outcome = this.responder.respond(seg, nowMs / 1000, r);
    this.outcomeCounts[outcome]!++;
    if (r.hasControl) this.send(r.control, null, 0, 0);
    if (outcome === Outcome.REQUEST) {
      this.relay.handleRequest(seg.buf, r.requestOffset, r.requestLength, r.response, r.peerMss, nowMs);
    }
  }

  /** SegmentSink: emit one segment of a response and send it. */
  send(header: ReplyHeader, payload: Uint8Array | null, offset: number, length: number): void {
    const n = emitReply(header, payload, offset, length, this.packet, 0);
    this.sender.send(header.family, this.packet, n, header.dstAddr);
  }
}
