/**
 * IPv6 header (RFC 8200 §3) and the extension header chain (RFC 8200 §4): decoding of captured
 * packets and emission of reply headers.
 *
 *    0                   1                   2                   3
 *   |Version| Traffic Class |           Flow Label                  |
 *   |         Payload Length        |  Next Header  |   Hop Limit   |
 *   |                  Source Address (16 bytes)                    |
 *   |               Destination Address (16 bytes)                  |
 */
import { readU16, writeU16 } from './bytes.js';
import { IpProtocol } from './ip.js';
import { DecodeResult, type ReplyHeader, type Segment } from './segment.js';

/** Field offsets from the start of the IPv6 header. */
export const Ipv6Field = {
  /** Version (4 bits), Traffic Class (8), Flow Label (20). */
  VERSION_CLASS_FLOW: 0,
  PAYLOAD_LENGTH: 4,
  NEXT_HEADER: 6,
  HOP_LIMIT: 7,
  SOURCE: 8,
  DESTINATION: 24,
} as const;

export const IPV6_HEADER_LENGTH = 40;
const IPV6_VERSION = 6;

/** Offsets inside an extension header: every one starts with Next Header (RFC 8200 §4.2). */
const ExtensionField = {
  NEXT_HEADER: 0,
  /** Hdr Ext Len (HBH, Routing, Destination Options) or Payload Len (AH). */
  LENGTH: 1,
  /** Routing header only (RFC 8200 §4.4). */
  SEGMENTS_LEFT: 3,
} as const;

/**
 * The longest chain we walk. RFC 8200 §4.1 allows each extension header once, Destination Options
 * twice; without Fragment and ESP (which end our walk) that is HBH, DO, Routing, AH, DO = 5.
 * Anything longer is not a packet a TCP client sends, and bounding the walk bounds the work an
 * attacker can make us do per packet.
 */
const MAX_EXTENSION_HEADERS = 8;

/** Payload Length: bytes after the 40-byte header, extension headers included. */
export function ipv6PayloadLength(buf: Uint8Array, offset: number): number {
  return readU16(buf, offset + Ipv6Field.PAYLOAD_LENGTH);
}

/**
 * Addresses we must never answer, as source or destination: the unspecified address ::
 * (RFC 4291 §2.5.2: never a destination, and a source only before a node has an address) and
 * multicast ff00::/8 (RFC 4291 §2.7: never a source; TCP does not run over it, RFC 9293 MUST-57).
 */
export function isUnanswerableIpv6Address(buf: Uint8Array, offset: number): boolean {
  if (buf[offset] === 0xff) return true;
  let any = 0;
  for (let i = 0; i < 16; i++) any |= buf[offset + i]!;
  return any === 0;
}

/**
 * Decode the IPv6 header at `offset` and walk its extension headers to the TCP header, the packet
 * being captured up to `end`. On `OK`, `out.family`, the address offsets and `out.tcpOffset` are
 * set, and the TCP segment spans [`out.tcpOffset`, `offset + 40 + ipv6PayloadLength`). Bytes past
 * that (Ethernet padding) are ignored.
 *
 * Jumbograms (RFC 2675: Payload Length 0 and a Hop-by-Hop Jumbo Payload option) are not
 * supported: a Payload Length of 0 leaves no room for any header, so they are dropped as malformed.
 */
export function decodeIpv6(buf: Uint8Array, offset: number, end: number, out: Segment): DecodeResult {
  if (end - offset < IPV6_HEADER_LENGTH) return DecodeResult.TRUNCATED;
  if (buf[offset + Ipv6Field.VERSION_CLASS_FLOW]! >>> 4 !== IPV6_VERSION) return DecodeResult.BAD_IP_HEADER;
  const packetEnd = offset + IPV6_HEADER_LENGTH + ipv6PayloadLength(buf, offset);
  if (packetEnd > end) return DecodeResult.TRUNCATED;

  let nextHeader = buf[offset + Ipv6Field.NEXT_HEADER]!;
  let position = offset + IPV6_HEADER_LENGTH;
  for (let walked = 0; nextHeader !== IpProtocol.TCP; walked++) {
    if (walked === MAX_EXTENSION_HEADERS) return DecodeResult.BAD_IP_HEADER;
    let headerLength: number;
    switch (nextHeader) {
      case IpProtocol.HOP_BY_HOP:
        // RFC 8200 §4.1: Hop-by-Hop Options may only follow the IPv6 header directly.
        if (walked !== 0) return DecodeResult.BAD_IP_HEADER;
        if (position + 2 > packetEnd) return DecodeResult.BAD_IP_HEADER;
        // Hdr Ext Len counts 8-octet units beyond the first 8 (RFC 8200 §4.3, §4.6).
        headerLength = (buf[position + ExtensionField.LENGTH]! + 1) * 8;
        break;
      case IpProtocol.DESTINATION_OPTIONS:
        if (position + 2 > packetEnd) return DecodeResult.BAD_IP_HEADER;
        headerLength = (buf[position + ExtensionField.LENGTH]! + 1) * 8;
        break;
      case IpProtocol.ROUTING:
        if (position + 4 > packetEnd) return DecodeResult.BAD_IP_HEADER;
        // RFC 8200 §4.4: with Segments Left > 0 this node is not the final destination (and the
        // pseudo-header would need the final one, §8.1). We do not forward source-routed packets.
        if (buf[position + ExtensionField.SEGMENTS_LEFT] !== 0) return DecodeResult.BAD_IP_HEADER;
        headerLength = (buf[position + ExtensionField.LENGTH]! + 1) * 8;
        break;
      case IpProtocol.AH:
        if (position + 2 > packetEnd) return DecodeResult.BAD_IP_HEADER;
        // AH's Payload Len counts 4-octet units minus 2 (RFC 4302 §2.2).
        headerLength = (buf[position + ExtensionField.LENGTH]! + 2) * 4;
        break;
      case IpProtocol.FRAGMENT:
        // Even an atomic fragment (offset 0, M 0, RFC 6946) is dropped: we never reassemble and
        // RFC 8021 deprecated generating them.
        return DecodeResult.FRAGMENT;
      default:
        // ESP (RFC 4303) hides what follows; No Next Header (RFC 8200 §4.7); UDP, ICMPv6, ...
        return DecodeResult.NOT_TCP;
    }
    if (position + headerLength > packetEnd) return DecodeResult.BAD_IP_HEADER;
    nextHeader = buf[position + ExtensionField.NEXT_HEADER]!;
    position += headerLength;
  }

  const src = offset + Ipv6Field.SOURCE;
  const dst = offset + Ipv6Field.DESTINATION;
  if (isUnanswerableIpv6Address(buf, src) || isUnanswerableIpv6Address(buf, dst)) {
    return DecodeResult.BAD_ADDRESS;
  }
  out.family = 6;
  out.srcAddrOffset = src;
  out.dstAddrOffset = dst;
  out.tcpOffset = position;
  return DecodeResult.OK;
}

/**
 * Write a 40-byte IPv6 header for a TCP segment of `tcpLength` bytes (no extension headers).
 * Traffic class and flow label are 0: RFC 6437 §3 allows a zero flow label, and a stateless
 * responder has no flow to label. The caller guarantees room and `tcpLength <= 0xffff`.
 */
export function writeIpv6Header(hdr: ReplyHeader, out: Uint8Array, offset: number, tcpLength: number): void {
  out[offset + Ipv6Field.VERSION_CLASS_FLOW] = IPV6_VERSION << 4;
  out[offset + Ipv6Field.VERSION_CLASS_FLOW + 1] = 0;
  writeU16(out, offset + Ipv6Field.VERSION_CLASS_FLOW + 2, 0);
  writeU16(out, offset + Ipv6Field.PAYLOAD_LENGTH, tcpLength);
  out[offset + Ipv6Field.NEXT_HEADER] = IpProtocol.TCP;
  out[offset + Ipv6Field.HOP_LIMIT] = hdr.hopLimit;
  for (let i = 0; i < 16; i++) {
    out[offset + Ipv6Field.SOURCE + i] = hdr.srcAddr[i]!;
    out[offset + Ipv6Field.DESTINATION + i] = hdr.dstAddr[i]!;
  }
}
