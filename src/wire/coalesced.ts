/**
 * Coalesced frames cut back into the segments they stand for.
 *
 * A frame longer than one segment of its path reaches the capture when the kernel merged
 * segments (GRO on the capture interface, LRO in the NIC) or never cut them (TSO/GSO from a
 * sender on this host: a VM's tap, a container's veth). Its IP length is the whole frame's, its
 * TCP header the first segment's, and its checksum left to offload (tcp.ts `tcpChecksumState`).
 * The shards' rings have fixed slots (src/ring/), so the capture thread cuts such a frame into
 * pieces that fit one, as the kernel's own software GSO would (Linux `tcp_gso_segment`): each
 * piece gets the link, IP and TCP headers of the frame, its IP length, a sequence number advanced
 * by the bytes before it, FIN and PSH only on the last piece and CWR only on the first, and the
 * pseudo-header sum of its own length in the checksum field — the CHECKSUM_PARTIAL form, which
 * the shard's decode accepts as offloaded without a pass over the bytes again (the capture
 * thread decoded the whole frame, its checksum included, before cutting it).
 *
 * The sender's MSS is not in the frame (the kernel keeps it beside the skb, gso_size, which
 * libpcap does not pass on), so the pieces are as large as a slot holds: at most the slot size
 * less the headers. The responder takes any segment within its receive window, whatever its
 * length (RFC 9293 §3.10.7.4), so a piece longer than the MSS it offered is fine.
 *
 * One `SegmentCutter` is kept and reused: nothing is allocated per frame.
 */
import { writeU16, writeU32 } from './bytes.js';
import { finish, pseudoHeaderSum, sum16 } from './checksum.js';
import { IpProtocol } from './ip.js';
import { Ipv4Field } from './ipv4.js';
import { type Segment, TcpFlag } from './segment.js';
import { TcpField } from './tcp.js';

/** IPv6 Payload Length: bytes 4-5 of the fixed header (RFC 8200 §3). */
const IPV6_PAYLOAD_LENGTH = 4;
const IPV6_HEADER_LENGTH = 40;

export class SegmentCutter {
  /** The last piece `piece` wrote: bytes `[0, length)`. */
  readonly out: Uint8Array;
  private frame: Uint8Array = new Uint8Array(0);
  private frameOffset = 0;
  /** Bytes before the payload (link, IP with extension headers, TCP with options). */
  private headerBytes = 0;
  private payloadOffset = 0;
  private payloadLength = 0;
  private piecePayload = 0;
  private seq = 0;
  private flags = 0;
  private family: 4 | 6 = 4;
  private ipOffset = 0;
  private tcpOffset = 0;
  private tcpHeaderLength = 0;
  private srcAddrOffset = 0;
  private dstAddrOffset = 0;

  /** `maxFrameBytes`: the most a piece may take, link header included (a ring slot's data bytes). */
  constructor(readonly maxFrameBytes: number) {
    this.out = new Uint8Array(maxFrameBytes);
  }

  /**
   * Prepares to cut the frame that starts at `frameOffset` of `seg.buf` and that `seg` decodes
   * (decodeFrame returned OK). Returns how many pieces it makes: 0 when it needs no cutting (it
   * fits `maxFrameBytes`, or carries no more payload than one piece) or cannot be cut (a SYN, or
   * headers leaving no room for payload in a piece).
   */
  prepare(seg: Segment, frameOffset: number): number {
    const headerBytes = seg.payloadOffset - frameOffset;
    const piecePayload = this.maxFrameBytes - headerBytes;
    if (piecePayload <= 0 || seg.payloadLength <= piecePayload || (seg.flags & TcpFlag.SYN) !== 0) return 0;
    this.frame = seg.buf;
    this.frameOffset = frameOffset;
    this.headerBytes = headerBytes;
    this.payloadOffset = seg.payloadOffset;
    this.payloadLength = seg.payloadLength;
    this.piecePayload = piecePayload;
    this.seq = seg.seq;
    this.flags = seg.flags;
    this.family = seg.family;
    this.ipOffset = seg.ipOffset - frameOffset;
    this.tcpOffset = seg.tcpOffset - frameOffset;
    this.tcpHeaderLength = seg.tcpHeaderLength;
    this.srcAddrOffset = seg.srcAddrOffset - frameOffset;
    this.dstAddrOffset = seg.dstAddrOffset - frameOffset;
    return Math.ceil(seg.payloadLength / piecePayload);
  }

  /** Writes piece `index` (0 … prepare's count − 1) into `out`; returns its length. */
  piece(index: number): number {
    const { frame, out, headerBytes, ipOffset, tcpOffset } = this;
    const start = index * this.piecePayload;
    const payload = Math.min(this.piecePayload, this.payloadLength - start);
    const last = start + payload === this.payloadLength;
    for (let i = 0; i < headerBytes; i++) out[i] = frame[this.frameOffset + i]!;
    const from = this.payloadOffset + start;
    for (let i = 0; i < payload; i++) out[headerBytes + i] = frame[from + i]!;

    const tcpLength = this.tcpHeaderLength + payload;
    if (this.family === 4) {
      const ipHeaderLength = tcpOffset - ipOffset;
      writeU16(out, ipOffset + Ipv4Field.TOTAL_LENGTH, ipHeaderLength + tcpLength);
      writeU16(out, ipOffset + Ipv4Field.CHECKSUM, 0);
      writeU16(out, ipOffset + Ipv4Field.CHECKSUM, finish(sum16(out, ipOffset, ipHeaderLength)));
    } else {
      // Extension headers, if any, stay in the payload length (RFC 8200 §3).
      writeU16(out, ipOffset + IPV6_PAYLOAD_LENGTH, tcpOffset - ipOffset - IPV6_HEADER_LENGTH + tcpLength);
    }
    writeU32(out, tcpOffset + TcpField.SEQ, (this.seq + start) >>> 0);
    // As tcp_gso_segment: FIN and PSH belong to the last segment, CWR to the first (RFC 3168 §6.1.2).
    let flags = this.flags;
    if (!last) flags &= ~(TcpFlag.FIN | TcpFlag.PSH);
    if (index > 0) flags &= ~TcpFlag.CWR;
    out[tcpOffset + TcpField.FLAGS] = flags;
    const pseudo = pseudoHeaderSum(this.family, out, this.srcAddrOffset, out, this.dstAddrOffset, IpProtocol.TCP, tcpLength);
    writeU16(out, tcpOffset + TcpField.CHECKSUM, pseudo);
    return headerBytes + payload;
  }
}
