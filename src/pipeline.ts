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
import {
  type ChecksumPolicy,
  DECODE_RESULT_NAMES,
  DecodeResult,
  KernelChecksum,
  type LinkType,
  packetChecksumPolicy,
  type ReplyHeader,
  Segment,
} from './wire/segment.js';
import { decodeFrame } from './wire/frame.js';
import { emitReply } from './wire/emit.js';
import { OUTCOME_NAMES } from './tcp/counters.js';
import { Responder, type SegmentSink, type TcpSettings } from './tcp/responder.js';
import type { SynCookies } from './tcp/cookie.js';
import type { Flow } from './tcp/flow.js';
import type { LiveFlows } from './tcp/live-flows.js';
import type { MartianSources } from './wire/martian.js';
import type { Protocol, Relay } from './tcp/transport.js';
import { MIN_MTU_V4, MIN_MTU_V6, type PathMtuSource, type RouteMtuLookup } from './tcp/path-mtu.js';
import { quotedSegment } from './wire/quoted.js';
import { decodeTooBig } from './wire/icmp.js';

/** Sends one IP packet to `dst` (implemented by io/raw-send.ts). */
export interface PacketSender {
  send(family: 4 | 6, packet: Buffer, length: number, dst: Uint8Array): void;
}

/** Takes segments as the responder makes them, header and payload apart (io/link-send.ts). */
export interface SegmentSender {
  send(header: ReplyHeader, payload: Uint8Array | null, offset: number, length: number): void;
}

/** IPv6 header (40) + TCP header with options (60) + the largest payload we cut (one MSS ≤ 65535). */
const MAX_PACKET = 40 + 60 + 65535;

export interface TcpPipelineOptions {
  linkType: LinkType;
  checksumPolicy: ChecksumPolicy;
  cookies: SynCookies;
  tcp: TcpSettings;
  sender: PacketSender;
  /**
   * Where segments with link addresses go instead, taken together into GSO frames
   * (io/link-send.ts; omitted: every segment is an IP packet for `sender`).
   */
  linkSender?: SegmentSender | null;
  /** Where the capture thread learns which connections have flows (omitted: no capture thread answers SYNs). */
  liveFlows?: LiveFlows | null;
  /** Sources that get no answer (omitted: the martian ranges, no host addresses). */
  martians?: MartianSources;
  /** The MTU toward each client (tcp/path-mtu.ts; omitted: segments are cut to the client's MSS alone). */
  pathMtus?: PathMtuSource | null;
  /** The route's MTU toward an address, read after a send is refused as too big (io/raw-send.ts pathMtu). */
  routeMtu?: RouteMtuLookup | null;
}

/** One shard's TCP path, whatever the protocol: decode, respond, relay, emit, send. */
export class TcpPipeline implements SegmentSink {
  readonly decodeCounts = new Float64Array(DECODE_RESULT_NAMES.length);
  readonly outcomeCounts = new Float64Array(OUTCOME_NAMES.length);
  /**
   * Of the frames decoded OK, those whose TCP checksum the sender left to offload, as the kernel
   * said or, when it said nothing, as the field showed (`decode.checksum_offloaded`); and those
   * whose checksum the kernel had validated, so it was not summed again (`decode.checksum_validated`).
   */
  checksumOffloaded = 0;
  checksumValidated = 0;
  readonly responder: Responder;
  private readonly linkType: LinkType;
  private readonly checksumPolicy: ChecksumPolicy;
  private readonly sender: PacketSender;
  private readonly linkSender: SegmentSender | null;
  private readonly segment = new Segment();
  /** A refused packet's header seen from the client's side (`sendRefused`), and its client's address. */
  private readonly quoted = new Segment();
  private readonly quotedAddress = new Uint8Array(16);
  /** Scratch for an ICMP message's IP layer (`handleFrame`). */
  private readonly icmpLayers = new Segment();
  private readonly routeMtu: RouteMtuLookup | null;
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
    this.linkSender = options.linkSender ?? null;
    this.routeMtu = options.routeMtu ?? null;
    this.responder = new Responder(
      { ...options.tcp, messageLength: protocol.messageLength, plausibleStart: protocol.plausibleStart },
      options.cookies,
      this,
      relay,
      options.liveFlows ?? null,
      options.martians,
      options.pathMtus ?? null,
    );
    relay.attach(this.responder);
  }

  /**
   * Handles one captured frame `frame[offset, offset + length)` — in a shard worker, a slot of
   * its ring, read in place — and is done with it when this returns: the relay copies queries out.
   */
  handleFrame(frame: Uint8Array, offset: number, length: number, kernelChecksum: KernelChecksum, nowMs: number): void {
    const seg = this.segment;
    const policy = packetChecksumPolicy(this.checksumPolicy, kernelChecksum);
    const result = decodeFrame(this.linkType, frame, offset, length, policy, seg);
    // ICMP too-big messages quoting our segments (the capture's third lane; the capture thread
    // routes each to the shard of the connection it quotes): path MTU discovery, RFC 1191/8201.
    if (result === DecodeResult.NOT_TCP) {
      const mtu = decodeTooBig(this.linkType, frame, offset, length, this.icmpLayers, this.quoted);
      if (mtu > 0) {
        this.responder.packetTooBig(this.quoted, mtu, false, nowMs);
        return;
      }
    }
    this.decodeCounts[result]!++;
    if (result !== DecodeResult.OK) return;
    if (seg.checksumOffloaded || kernelChecksum === KernelChecksum.LEFT_TO_OFFLOAD) this.checksumOffloaded++;
    else if (kernelChecksum === KernelChecksum.VALIDATED) this.checksumValidated++;
    this.outcomeCounts[this.responder.handleSegment(seg, nowMs)]!++;
  }

  /**
   * Our kernel refused to send a packet as larger than the MTU toward its destination (EMSGSIZE;
   * io/raw-send.ts RefusedPackets, for the raw and the link sender): `header[offset, offset + length)` holds its IP and TCP headers,
   * `packetLength` was its size. Not a loss to repair by sending the same again: the flow's
   * segments are cut to the MTU the route has now (responder.ts packetTooBig).
   */
  sendRefused(family: 4 | 6, header: Uint8Array, offset: number, length: number, packetLength: number, nowMs: number): void {
    const q = this.quoted;
    if (!quotedSegment(family, header, offset, length, q)) return;
    const address = this.quotedAddress;
    for (let i = 0; i < q.addrLength; i++) address[i] = header[q.srcAddrOffset + i]!;
    let mtu = this.routeMtu === null ? 0 : this.routeMtu(family, address);
    // The route says the packet fits (it changed back meanwhile?): assume the minimum instead.
    if (!(mtu > 0 && mtu < packetLength)) mtu = family === 4 ? MIN_MTU_V4 : MIN_MTU_V6;
    this.responder.packetTooBig(q, mtu, true, nowMs);
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

  /** SegmentSink: emit one segment and send it (on the link when its header has the addresses for it). */
  send(header: ReplyHeader, payload: Uint8Array | null, offset: number, length: number): void {
    if (this.linkSender !== null && header.hasLinkAddresses) {
      this.linkSender.send(header, payload, offset, length);
      return;
    }
    const n = emitReply(header, payload, offset, length, this.packet, 0);
    this.sender.send(header.family, this.packet, n, header.dstAddr);
  }
}
