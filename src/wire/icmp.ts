/**
 * ICMP "fragmentation needed and DF set" (RFC 792 type 3 code 4, with RFC 1191 §4's next-hop MTU)
 * and ICMPv6 "packet too big" (RFC 4443 §3.2, type 2): a router on the path to a client could not
 * forward one of our segments. Zero-copy: `decodeTooBig` reads the frame where it lies and points
 * a `Segment` at the quoted IP+TCP header (quoted.ts), seen from the client's side.
 *
 * Only the structure is checked here, not the ICMP checksum: what makes a message count is that
 * it quotes the 4-tuple and an unacknowledged sequence number of a live flow (responder.ts
 * packetTooBig), which neither corruption nor an off-path forger hits but by a 2^-32-ish chance.
 */
import { decodeIpLayers } from './frame.js';
import { quotedSegment } from './quoted.js';
import { ChecksumPolicy, DecodeResult, type Segment } from './segment.js';

const PROTOCOL_ICMP = 1;
const PROTOCOL_ICMPV6 = 58;
const ICMP_UNREACHABLE = 3;
const ICMP_FRAGMENTATION_NEEDED = 4;
const ICMPV6_PACKET_TOO_BIG = 2;
/** ICMP header before the quoted packet: type, code, checksum, 4 bytes (unused / MTU). */
const ICMP_HEADER = 8;
/**
 * RFC 1191 §7: routers from before it send 0 in the MTU field; the sender then guesses the
 * largest of these plateaus below the quoted packet's length.
 */
const PLATEAUS = [32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68] as const;

/**
 * The MTU a too-big message in the frame `buf[offset, offset + length)` reports, with `quoted`
 * pointed at the segment it quotes; 0 if the frame is not such a message quoting a TCP header.
 * `layers` is scratch for the IP layer's decode.
 */
export function decodeTooBig(linkType: number, buf: Uint8Array, offset: number, length: number, layers: Segment, quoted: Segment): number {
  // The IP layers decode up to the protocol check: NOT_TCP leaves the IP header's offset set.
  if (decodeIpLayers(linkType, buf, offset, length, ChecksumPolicy.IGNORE, layers) !== DecodeResult.NOT_TCP) return 0;
  const ip = layers.ipOffset;
  const end = offset + length;
  if (ip + 1 > end) return 0;
  if (buf[ip]! >>> 4 === 4) {
    const icmp = ip + (buf[ip]! & 0x0f) * 4;
    if (buf[ip + 9] !== PROTOCOL_ICMP || icmp + ICMP_HEADER > end) return 0;
    if (buf[icmp] !== ICMP_UNREACHABLE || buf[icmp + 1] !== ICMP_FRAGMENTATION_NEEDED) return 0;
    if (!quotedSegment(4, buf, icmp + ICMP_HEADER, end - icmp - ICMP_HEADER, quoted)) return 0;
    const mtu = (buf[icmp + 6]! << 8) | buf[icmp + 7]!;
    if (mtu >= 68) return mtu;
    const quotedLength = (buf[icmp + ICMP_HEADER + 2]! << 8) | buf[icmp + ICMP_HEADER + 3]!;
    for (const plateau of PLATEAUS) if (plateau < quotedLength) return plateau;
    return 68;
  }
  const icmp = ip + 40;
  if (buf[ip + 6] !== PROTOCOL_ICMPV6 || icmp + ICMP_HEADER > end || buf[icmp] !== ICMPV6_PACKET_TOO_BIG) return 0;
  if (!quotedSegment(6, buf, icmp + ICMP_HEADER, end - icmp - ICMP_HEADER, quoted)) return 0;
  const mtu = ((buf[icmp + 4]! << 24) | (buf[icmp + 5]! << 16) | (buf[icmp + 6]! << 8) | buf[icmp + 7]!) >>> 0;
  return mtu > 0 ? Math.min(mtu, 0x7fff_ffff) : 0;
}
