/**
 * IPv4 header (RFC 791 §3.1): decoding of captured packets and emission of reply headers.
 *
 *    0                   1                   2                   3
 *   |Version|  IHL  |   DSCP/ECN    |          Total Length         |
 *   |         Identification        |Flags|     Fragment Offset     |
 *   |  Time to Live |    Protocol   |         Header Checksum       |
 *   |                       Source Address                          |
 *   |                    Destination Address                        |
 *   |                    Options (IHL > 5)                          |
 */
import { readU16, writeU16 } from './bytes.js';
import { finish, sum16 } from './checksum.js';
import { IpProtocol } from './ip.js';
import { ChecksumPolicy, DecodeResult, type ReplyHeader, type Segment } from './segment.js';

/** Field offsets from the start of the IPv4 header. */
export const Ipv4Field = {
  VERSION_IHL: 0,
  DSCP_ECN: 1,
  TOTAL_LENGTH: 2,
  IDENTIFICATION: 4,
  FLAGS_FRAGMENT_OFFSET: 6,
  TTL: 8,
  PROTOCOL: 9,
  CHECKSUM: 10,
  SOURCE: 12,
  DESTINATION: 16,
} as const;

/** Header length without options (IHL = 5 words). */
export const IPV4_HEADER_LENGTH = 20;
const IPV4_VERSION = 4;
/** Flags in the Flags/Fragment Offset word (RFC 791 §3.1): bit 1 Don't Fragment, bit 2 More Fragments. */
const DONT_FRAGMENT = 0x4000;
const MORE_FRAGMENTS = 0x2000;
const FRAGMENT_OFFSET_MASK = 0x1fff;

/** Total Length: header plus data, in bytes. Caller checked that 4 bytes are present. */
export function ipv4TotalLength(buf: Uint8Array, offset: number): number {
  return readU16(buf, offset + Ipv4Field.TOTAL_LENGTH);
}

/**
 * Addresses we must never answer, as source or destination: unspecified 0.0.0.0 ("this host",
 * RFC 1122 §3.2.1.3(a)), limited broadcast 255.255.255.255 (RFC 1122 §3.2.1.3(c)) and multicast
 * 224.0.0.0/4 (RFC 5771). TCP discards SYNs to broadcast/multicast and ignores invalid sources
 * (RFC 1122 §4.2.3.10, RFC 9293 MUST-57). Directed broadcasts cannot be told from unicast
 * without knowing the subnet, so they are not caught here.
 */
export function isUnanswerableIpv4Address(buf: Uint8Array, offset: number): boolean {
  const a = buf[offset]!;
  const b = buf[offset + 1]!;
  const c = buf[offset + 2]!;
  const d = buf[offset + 3]!;
  if ((a | b | c | d) === 0) return true;
  if ((a & b & c & d) === 0xff) return true;
  return (a & 0xf0) === 0xe0;
}

/**
 * Decode the IPv4 header at `offset`, the packet being captured up to `end`. On `OK`, `out.family`,
 * the address offsets and `out.tcpOffset` are set and the TCP segment spans
 * [`out.tcpOffset`, `offset + ipv4TotalLength`). Bytes past Total Length (Ethernet padding) are
 * ignored.
 */
export function decodeIpv4(buf: Uint8Array, offset: number, end: number, policy: ChecksumPolicy, out: Segment): DecodeResult {
  const captured = end - offset;
  if (captured < IPV4_HEADER_LENGTH) return DecodeResult.TRUNCATED;
  const versionIhl = buf[offset + Ipv4Field.VERSION_IHL]!;
  if (versionIhl >>> 4 !== IPV4_VERSION) return DecodeResult.BAD_IP_HEADER;
  // IHL counts 32-bit words and includes options; 5 is the minimum (RFC 791 §3.1).
  const headerLength = (versionIhl & 0x0f) * 4;
  if (headerLength < IPV4_HEADER_LENGTH) return DecodeResult.BAD_IP_HEADER;
  const totalLength = ipv4TotalLength(buf, offset);
  if (totalLength < headerLength) return DecodeResult.BAD_IP_HEADER;
  if (totalLength > captured) return DecodeResult.TRUNCATED;
  // The header checksum covers the header only, options included (RFC 791 §3.1).
  if (policy !== ChecksumPolicy.IGNORE && sum16(buf, offset, headerLength) !== 0xffff) {
    return DecodeResult.BAD_IP_CHECKSUM;
  }
  // A first fragment (MF set, offset 0) looks complete but is not; later ones have no TCP header.
  const flagsFragment = readU16(buf, offset + Ipv4Field.FLAGS_FRAGMENT_OFFSET);
  if ((flagsFragment & (MORE_FRAGMENTS | FRAGMENT_OFFSET_MASK)) !== 0) return DecodeResult.FRAGMENT;
  if (buf[offset + Ipv4Field.PROTOCOL] !== IpProtocol.TCP) return DecodeResult.NOT_TCP;
  const src = offset + Ipv4Field.SOURCE;
  const dst = offset + Ipv4Field.DESTINATION;
  if (isUnanswerableIpv4Address(buf, src) || isUnanswerableIpv4Address(buf, dst)) {
    return DecodeResult.BAD_ADDRESS;
  }
  out.family = 4;
  out.srcAddrOffset = src;
  out.dstAddrOffset = dst;
  out.tcpOffset = offset + headerLength;
  return DecodeResult.OK;
}

/**
 * Write a 20-byte IPv4 header (no options) for a TCP segment of `tcpLength` bytes, checksum
 * included. The caller guarantees room and `IPV4_HEADER_LENGTH + tcpLength <= 0xffff`.
 *
 * Identification is 0 with Don't Fragment set: RFC 6864 §4.1 lets the source put any value in the
 * ID of an atomic datagram (DF=1, MF=0, offset 0), as Linux does for SYN-ACKs; our segments are
 * sized to the peer's MSS, and with DF set path MTU discovery (RFC 1191) rather than fragmentation
 * deals with smaller links.
 */
export function writeIpv4Header(hdr: ReplyHeader, out: Uint8Array, offset: number, tcpLength: number): void {
  out[offset + Ipv4Field.VERSION_IHL] = (IPV4_VERSION << 4) | (IPV4_HEADER_LENGTH / 4);
  out[offset + Ipv4Field.DSCP_ECN] = 0;
  writeU16(out, offset + Ipv4Field.TOTAL_LENGTH, IPV4_HEADER_LENGTH + tcpLength);
  writeU16(out, offset + Ipv4Field.IDENTIFICATION, 0);
  writeU16(out, offset + Ipv4Field.FLAGS_FRAGMENT_OFFSET, DONT_FRAGMENT);
  out[offset + Ipv4Field.TTL] = hdr.hopLimit;
  out[offset + Ipv4Field.PROTOCOL] = IpProtocol.TCP;
  writeU16(out, offset + Ipv4Field.CHECKSUM, 0);
  for (let i = 0; i < 4; i++) {
    out[offset + Ipv4Field.SOURCE + i] = hdr.srcAddr[i]!;
    out[offset + Ipv4Field.DESTINATION + i] = hdr.dstAddr[i]!;
  }
  writeU16(out, offset + Ipv4Field.CHECKSUM, finish(sum16(out, offset, IPV4_HEADER_LENGTH)));
}
