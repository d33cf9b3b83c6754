/**
 * Link frames for a packet socket with a virtio-net header (io/link-send.ts): the replies of one
 * flow that leave together, written as one Ethernet frame that the kernel or the NIC cuts into the
 * segments they were (GSO, or TSO in the NIC), with the TCP checksum left to offload.
 *
 *   ┌ virtio_net_hdr (10) ┐┌ Ethernet (14) ┐┌ IP ┐┌ TCP + options ┐┌ payload: n segments of one size, the last ≤ ┐
 *
 * The virtio-net header (include/uapi/linux/virtio_net.h, struct virtio_net_hdr; packet(7)
 * PACKET_VNET_HDR) says: NEEDS_CSUM with the checksum's place (csum_start: the TCP header,
 * csum_offset: 16), and for several segments gso_type TCPV4 or TCPV6 with gso_size, the size of
 * each. The TCP checksum field holds the folded pseudo-header sum with the whole frame's TCP
 * length, the CHECKSUM_PARTIAL form Linux's own TCP writes for a GSO packet
 * (`__tcp_v4_send_check`); `tcp_gso_segment` corrects it per segment, and each segment leaves with
 * the flags of Linux's segmentation: FIN and PSH on the last only, CWR on the first only, the
 * sequence number advanced by the bytes before it, the IPv4 identification counting up.
 *
 * So segments are taken together only when the receiver cannot tell the difference: one flow,
 * consecutive sequence numbers, the same acknowledgment, window and timestamps, no SYN or RST,
 * every segment but the last of exactly the first's size, and no FIN or PSH but on the last
 * (PSH in the middle of a burst is dropped: it is advisory, RFC 9293 §3.9.1). The wire/coalesced.ts
 * cutter does what the kernel does with such a frame, which is how the tests check this file.
 *
 * One `LinkFrame` is reused for every frame: nothing is allocated per frame or segment.
 */
import { writeU16 } from './bytes.js';
import { copyPayload } from './emit.js';
import { pseudoHeaderSum } from './checksum.js';
import { ETHERNET_HEADER_LENGTH, EtherType } from './ethernet.js';
import { IpProtocol } from './ip.js';
import { IPV4_HEADER_LENGTH, writeIpv4Header } from './ipv4.js';
import { IPV6_HEADER_LENGTH, writeIpv6Header } from './ipv6.js';
import { ReplyHeader, TcpFlag } from './segment.js';
import { TCP_HEADER_LENGTH, tcpOptionsLength, writeTcpHeader } from './tcp.js';

/** sizeof(struct virtio_net_hdr): flags, gso_type, then hdr_len, gso_size, csum_start, csum_offset (u16 each). */
export const VIRTIO_NET_HEADER_LENGTH = 10;
/** VIRTIO_NET_HDR_F_NEEDS_CSUM. */
const NEEDS_CSUM = 1;
/** VIRTIO_NET_HDR_GSO_NONE, _TCPV4, _TCPV6. */
const GSO_NONE = 0;
const GSO_TCPV4 = 1;
const GSO_TCPV6 = 4;
/** The TCP checksum's offset in its header (RFC 9293 §3.1). */
const TCP_CHECKSUM_OFFSET = 16;
/** The largest IP packet a frame may stand for: the IPv4 Total Length field's limit (and GSO's 64 KiB). */
const MAX_IP_PACKET = 0xffff;
/** Flags that may differ between the segments of one frame: the last one's FIN and PSH. */
const LAST_SEGMENT_FLAGS = TcpFlag.FIN | TcpFlag.PSH;

/** Where a frame's IP packet starts, after the virtio-net and Ethernet headers. */
export const LINK_FRAME_IP_OFFSET = VIRTIO_NET_HEADER_LENGTH + ETHERNET_HEADER_LENGTH;

/** Bytes before the payload of a frame for `hdr`: virtio-net header, Ethernet, IP, TCP with options. */
export function linkFrameHeaderLength(hdr: ReplyHeader): number {
  const ip = hdr.family === 4 ? IPV4_HEADER_LENGTH : IPV6_HEADER_LENGTH;
  return LINK_FRAME_IP_OFFSET + ip + TCP_HEADER_LENGTH + tcpOptionsLength(hdr);
}

/** The most bytes one frame takes: headers and the largest IP packet. */
export const MAX_LINK_FRAME = LINK_FRAME_IP_OFFSET + MAX_IP_PACKET;

/**
 * The largest IP packet the frame `frame[offset, offset + length)` (written by `LinkFrame`) puts on
 * the wire: one of its segments (hdr_len − Ethernet + gso_size), or itself when it is one segment.
 * native/raw_send.c `wire_packet_bytes` checks the same against the MTU.
 */
export function largestWirePacket(frame: Uint8Array, offset: number, length: number): number {
  const gsoSize = frame[offset + 4]! | (frame[offset + 5]! << 8);
  const headerBytes = frame[offset + 2]! | (frame[offset + 3]! << 8);
  const whole = length - LINK_FRAME_IP_OFFSET;
  return gsoSize > 0 ? Math.min(whole, headerBytes - ETHERNET_HEADER_LENGTH + gsoSize) : whole;
}

export class LinkFrame {
  /** The first segment's header (the frame's own, but for the last segment's FIN and PSH). */
  private readonly first = new ReplyHeader();
  private out: Uint8Array = new Uint8Array(0);
  private start = 0;
  private headerLength = 0;
  /** Bytes of payload written so far, the size of every segment but the last, and how many segments. */
  private payloadLength = 0;
  private segmentSize = 0;
  private segments = 0;
  /** The last segment's FIN and PSH; whether it is shorter than the first (nothing may follow). */
  private lastFlags = 0;
  private closed = false;
  open = false;

  /**
   * Starts a frame at `out[start]` with the segment `hdr` + `payload[offset, offset + length)`:
   * copies the payload behind room for the headers, which `finish` writes. The caller has made
   * sure `MAX_LINK_FRAME` bytes fit from `start`.
   */
  begin(hdr: ReplyHeader, payload: Uint8Array | null, offset: number, length: number, out: Uint8Array, start: number): void {
    this.first.copyFrom(hdr);
    this.out = out;
    this.start = start;
    this.headerLength = linkFrameHeaderLength(hdr);
    this.payloadLength = 0;
    this.segmentSize = length;
    this.segments = 0;
    this.lastFlags = 0;
    this.closed = (hdr.flags & (TcpFlag.SYN | TcpFlag.RST | TcpFlag.FIN)) !== 0 || length === 0 || hdr.mss !== 0;
    this.open = true;
    this.add(hdr, payload, offset, length);
  }

  /**
   * Appends the segment `hdr` + `payload[offset, offset + length)` when the open frame can take it
   * as one more segment (see the top); false, writing nothing, when it cannot.
   */
  append(hdr: ReplyHeader, payload: Uint8Array | null, offset: number, length: number): boolean {
    const first = this.first;
    if (
      this.closed ||
      length === 0 ||
      length > this.segmentSize ||
      hdr.seq !== (first.seq + this.payloadLength) >>> 0 ||
      (hdr.flags & ~LAST_SEGMENT_FLAGS) !== (first.flags & ~LAST_SEGMENT_FLAGS) ||
      this.headerLength - LINK_FRAME_IP_OFFSET + this.payloadLength + length > MAX_IP_PACKET ||
      !sameFlowAndState(first, hdr)
    ) {
      return false;
    }
    this.add(hdr, payload, offset, length);
    return true;
  }

  /** Writes the headers of the open frame and closes it; returns its length in bytes. */
  finish(): number {
    const hdr = this.first;
    const out = this.out;
    const start = this.start;
    const ipOffset = start + LINK_FRAME_IP_OFFSET;
    const ipHeaderLength = hdr.family === 4 ? IPV4_HEADER_LENGTH : IPV6_HEADER_LENGTH;
    const tcpOffset = ipOffset + ipHeaderLength;
    const headerBytes = this.headerLength - VIRTIO_NET_HEADER_LENGTH;
    const tcpLength = this.headerLength - (tcpOffset - start) + this.payloadLength;
    hdr.flags = (hdr.flags & ~LAST_SEGMENT_FLAGS) | this.lastFlags;
    const several = this.segments > 1;

    out[start] = NEEDS_CSUM;
    out[start + 1] = several ? (hdr.family === 4 ? GSO_TCPV4 : GSO_TCPV6) : GSO_NONE;
    writeU16Le(out, start + 2, headerBytes);
    writeU16Le(out, start + 4, several ? this.segmentSize : 0);
    writeU16Le(out, start + 6, tcpOffset - start - VIRTIO_NET_HEADER_LENGTH);
    writeU16Le(out, start + 8, TCP_CHECKSUM_OFFSET);

    const ethernet = start + VIRTIO_NET_HEADER_LENGTH;
    for (let i = 0; i < 6; i++) {
      out[ethernet + i] = hdr.linkDst[i]!;
      out[ethernet + 6 + i] = hdr.linkSrc[i]!;
    }
    writeU16(out, ethernet + 12, hdr.family === 4 ? EtherType.IPV4 : EtherType.IPV6);
    if (hdr.family === 4) writeIpv4Header(hdr, out, ipOffset, tcpLength);
    else writeIpv6Header(hdr, out, ipOffset, tcpLength);
    writeTcpHeader(hdr, out, tcpOffset);
    writeU16(out, tcpOffset + TCP_CHECKSUM_OFFSET, pseudoHeaderSum(hdr.family, hdr.srcAddr, 0, hdr.dstAddr, 0, IpProtocol.TCP, tcpLength));
    this.open = false;
    return this.headerLength + this.payloadLength;
  }

  /** Segments in the open frame (or the last one finished). */
  get segmentCount(): number {
    return this.segments;
  }

  private add(hdr: ReplyHeader, payload: Uint8Array | null, offset: number, length: number): void {
    const out = this.out;
    const to = this.start + this.headerLength + this.payloadLength;
    if (payload !== null) copyPayload(payload, offset, length, out, to);
    this.payloadLength += length;
    this.segments++;
    this.lastFlags = hdr.flags & LAST_SEGMENT_FLAGS;
    // Nothing follows a short segment (GSO cuts every segment but the last at gso_size) or a FIN.
    if (length < this.segmentSize || (hdr.flags & TcpFlag.FIN) !== 0) this.closed = true;
  }
}

/** Whether `b` is a segment of the same connection as `a`, with the same acknowledgment, window, timestamps and addresses. */
function sameFlowAndState(a: ReplyHeader, b: ReplyHeader): boolean {
  if (
    a.family !== b.family ||
    a.srcPort !== b.srcPort ||
    a.dstPort !== b.dstPort ||
    a.ack !== b.ack ||
    a.window !== b.window ||
    a.hasTimestamps !== b.hasTimestamps ||
    a.tsVal !== b.tsVal ||
    a.tsEcr !== b.tsEcr ||
    a.hopLimit !== b.hopLimit ||
    b.mss !== 0 ||
    !b.hasLinkAddresses
  ) {
    return false;
  }
  const n = a.family === 4 ? 4 : 16;
  for (let i = 0; i < n; i++) if (a.srcAddr[i] !== b.srcAddr[i] || a.dstAddr[i] !== b.dstAddr[i]) return false;
  for (let i = 0; i < 6; i++) if (a.linkDst[i] !== b.linkDst[i] || a.linkSrc[i] !== b.linkSrc[i]) return false;
  return true;
}

/** The virtio-net header's fields are little-endian on the hosts we build for (the kernel's vio_le()). */
function writeU16Le(out: Uint8Array, offset: number, value: number): void {
  out[offset] = value & 0xff;
  out[offset + 1] = value >>> 8;
}
