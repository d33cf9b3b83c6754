/**
 * Clients played into a Responder in-process, for the benchmarks that measure the responder
 * alone (timer-tick.ts, soft-state-memory.ts): each segment is built with the wire layer and
 * decoded as the capture would hand it over. Client `i` has an address and port of its own,
 * 256 connections per address (far below maxFlowsPerSource).
 */
import type { Responder } from '../src/tcp/responder.js';
import { decodeFrame } from '../src/wire/frame.js';
import { emitReply } from '../src/wire/emit.js';
import { ChecksumPolicy, DecodeResult, LinkType, ReplyHeader, Segment, TcpFlag } from '../src/wire/segment.js';

export class PlayedClients {
  private readonly header = new ReplyHeader();
  private readonly packet = new Uint8Array(2048);
  private readonly seg = new Segment();

  constructor(private readonly responder: Responder) {
    const h = this.header;
    h.family = 4;
    h.dstAddr.set([198, 18, 0, 2]);
    h.dstPort = 53;
    h.window = 64000;
    h.hasTimestamps = true;
  }

  /** Client `i` sends the next segments. */
  select(i: number): void {
    this.header.srcAddr.set([198, 18, 1 + (i >> 16), (i >> 8) & 0xff]);
    this.header.srcAddr[3] = i & 0xff;
    this.header.srcPort = 1024 + (i % 60000);
  }

  /** One segment from the selected client, handled at `nowMs`. */
  play(flags: number, seq: number, ack: number, tsEcr: number, data: Uint8Array | null, nowMs: number): void {
    const h = this.header;
    h.flags = flags;
    h.seq = seq;
    h.ack = ack;
    h.mss = flags & TcpFlag.SYN ? 1460 : 0;
    h.tsVal = 1;
    h.tsEcr = tsEcr;
    const n = emitReply(h, data, 0, data?.length ?? 0, this.packet, 0);
    if (decodeFrame(LinkType.RAW, this.packet, 0, n, ChecksumPolicy.IGNORE, this.seg) !== DecodeResult.OK) throw new Error('bad packet');
    this.responder.handleSegment(this.seg, nowMs);
  }
}
