/**
 * `decodeFrame`: one captured frame in, one `Segment` out. The single entry point from the capture
 * layer into the wire layer; it dispatches on the link type, then IP version, then TCP.
 *
 * Hot path: called once per captured packet, so it allocates nothing (no views, no subarrays, no
 * closures), reads bytes by index, and never throws. Every layer checks that the bytes it is about
 * to read were captured before reading them, because a typed array read out of range does not
 * throw but yields `undefined`, which would silently become 0 in arithmetic.
 */
import { decodeEthernet, ETHERNET_HEADER_LENGTH, EtherType, LINK_HEADER_TRUNCATED } from './ethernet.js';
import { decodeIpv4, ipv4TotalLength } from './ipv4.js';
import { decodeIpv6, IPV6_HEADER_LENGTH, ipv6PayloadLength } from './ipv6.js';
import { type ChecksumPolicy, DecodeResult, LinkType, type Segment } from './segment.js';
import { decodeSll, decodeSll2 } from './sll.js';
import { decodeTcp } from './tcp.js';

/**
 * Decode the frame of `linkType` (a LINKTYPE_ number) captured in `buf[offset, offset + length)`,
 * where `length` is the captured length, into `out`. Returns `DecodeResult.OK` when `out`
 * describes a TCP segment we may answer; anything else is a reason to drop it.
 *
 * `out` is reset first: after a non-OK result only the fields filled before the failing check hold
 * values from this frame, the others hold defaults (useful for logging, not for answering).
 * Unknown link types decode as `NOT_IP`; an `offset`/`length` outside `buf` as `TRUNCATED`.
 */
export function decodeFrame(
  linkType: number,
  buf: Uint8Array,
  offset: number,
  length: number,
  policy: ChecksumPolicy,
  out: Segment,
): DecodeResult {
  resetSegment(out, buf);
  const result = decodeIpLayers(linkType, buf, offset, length, policy, out);
  if (result !== DecodeResult.OK) return result;
  // The IP length, not the capture, delimits the segment: Ethernet pads short frames.
  return decodeTcp(buf, out.tcpOffset, out.ipEnd, policy, out);
}

/**
 * The link and IP layers of `decodeFrame`: on OK, `out` holds the family, the addresses, the
 * TCP header's offset and the IP packet's end, nothing of TCP. The capture thread's flow hash
 * (flow-hash.ts) finds the 4-tuple by this same function, so shard routing and decoding agree on
 * where the addresses and ports are, however many VLAN tags or IPv6 extension headers precede them.
 */
export function decodeIpLayers(
  linkType: number,
  buf: Uint8Array,
  offset: number,
  length: number,
  policy: ChecksumPolicy,
  out: Segment,
): DecodeResult {
  // `x >>> 0 === x` accepts exactly the integers 0 … 2^32-1 (not NaN, fractions or negatives).
  if (offset >>> 0 !== offset || length >>> 0 !== length || offset + length > buf.length) {
    return DecodeResult.TRUNCATED;
  }
  const end = offset + length;

  let etherType: number;
  out.ethernetOffset = -1;
  switch (linkType) {
    case LinkType.ETHERNET:
      etherType = decodeEthernet(buf, offset, end, out);
      // Replies may go back on the link to the MAC address this frame came from (io/link-send.ts),
      // unless a VLAN tag sat between: the link sender writes untagged frames only.
      if (out.ipOffset === offset + ETHERNET_HEADER_LENGTH) out.ethernetOffset = offset;
      break;
    case LinkType.LINUX_SLL:
      etherType = decodeSll(buf, offset, end, out);
      break;
    case LinkType.LINUX_SLL2:
      etherType = decodeSll2(buf, offset, end, out);
      break;
    case LinkType.RAW:
      // No link header: the IP version nibble says which IP it is (tcpdump.org LINKTYPE_RAW).
      if (length < 1) return DecodeResult.TRUNCATED;
      out.ipOffset = offset;
      etherType = buf[offset]! >>> 4 === 6 ? EtherType.IPV6 : EtherType.IPV4;
      break;
    default:
      return DecodeResult.NOT_IP;
  }
  if (etherType === LINK_HEADER_TRUNCATED) return DecodeResult.TRUNCATED;

  const ipOffset = out.ipOffset;
  let result: DecodeResult;
  if (etherType === EtherType.IPV4) {
    result = decodeIpv4(buf, ipOffset, end, policy, out);
    if (result === DecodeResult.OK) out.ipEnd = ipOffset + ipv4TotalLength(buf, ipOffset);
  } else if (etherType === EtherType.IPV6) {
    result = decodeIpv6(buf, ipOffset, end, out);
    if (result === DecodeResult.OK) out.ipEnd = ipOffset + IPV6_HEADER_LENGTH + ipv6PayloadLength(buf, ipOffset);
  } else {
    result = DecodeResult.NOT_IP;
  }
  return result;
}

/** Put every field of `out` back to its default so nothing leaks from the previous packet. */
function resetSegment(out: Segment, buf: Uint8Array): void {
  out.buf = buf;
  out.family = 4;
  out.ipOffset = 0;
  out.srcAddrOffset = 0;
  out.dstAddrOffset = 0;
  out.tcpOffset = 0;
  out.tcpHeaderLength = 0;
  out.payloadOffset = 0;
  out.payloadLength = 0;
  out.srcPort = 0;
  out.dstPort = 0;
  out.seq = 0;
  out.ack = 0;
  out.flags = 0;
  out.window = 0;
  out.mss = 0;
  out.windowScale = -1;
  out.sackPermitted = false;
  out.hasTimestamps = false;
  out.tsVal = 0;
  out.tsEcr = 0;
  out.checksumOffloaded = false;
}
