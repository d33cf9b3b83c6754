/**
 * A view of an IP+TCP header that we sent, seen again: quoted in an ICMP "fragmentation needed"
 * (RFC 792, RFC 1191) or "packet too big" (RFC 4443 §3.2) message, or refused by our own kernel
 * with EMSGSIZE (io/raw-send.ts). Zero-copy: `quotedSegment` points a `Segment` at the bytes.
 *
 * The segment is filled as the client's segment of the same connection would be — source the
 * client, destination us — so the responder's flow table finds the flow with the lookup it uses
 * for captured segments. Its `seq` is the sequence number of our quoted segment.
 *
 * RFC 792 quotes the IP header and at least 8 bytes of what follows: TCP's ports and sequence
 * number, all that is read here; RFC 4443 quotes as much as fits in 1280 bytes. We send no IP
 * options other than none and no IPv6 extension headers, so a quoted header with them is not ours.
 */
import type { Segment } from './segment.js';

/** IPv4 header without options, IPv6 fixed header. */
const IPV4_HEADER = 20;
const IPV6_HEADER = 40;
/** TCP ports and sequence number: the 8 bytes RFC 792 guarantees. */
const TCP_QUOTED = 8;
const PROTOCOL_TCP = 6;

/**
 * Points `out` at the IP+TCP header at `buf[offset, offset + length)`, reversed (see above).
 * Returns false if the bytes are not an IPv4/IPv6 TCP header of the family given, as we send them.
 */
export function quotedSegment(family: 4 | 6, buf: Uint8Array, offset: number, length: number, out: Segment): boolean {
  let tcp: number;
  if (family === 4) {
    if (length < IPV4_HEADER + TCP_QUOTED || buf[offset] !== 0x45 || buf[offset + 9] !== PROTOCOL_TCP) return false;
    out.srcAddrOffset = offset + 16;
    out.dstAddrOffset = offset + 12;
    tcp = offset + IPV4_HEADER;
  } else {
    if (length < IPV6_HEADER + TCP_QUOTED || buf[offset]! >>> 4 !== 6 || buf[offset + 6] !== PROTOCOL_TCP) return false;
    out.srcAddrOffset = offset + 24;
    out.dstAddrOffset = offset + 8;
    tcp = offset + IPV6_HEADER;
  }
  out.buf = buf;
  out.family = family;
  out.ipOffset = offset;
  out.ipEnd = offset + length;
  out.tcpOffset = tcp;
  out.srcPort = (buf[tcp + 2]! << 8) | buf[tcp + 3]!;
  out.dstPort = (buf[tcp]! << 8) | buf[tcp + 1]!;
  out.seq = ((buf[tcp + 4]! << 24) | (buf[tcp + 5]! << 16) | (buf[tcp + 6]! << 8) | buf[tcp + 7]!) >>> 0;
  return true;
}
