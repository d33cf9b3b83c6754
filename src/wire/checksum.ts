/**
 * The Internet checksum (RFC 1071) as a small algebra, after smoltcp's `wire::ip::checksum`:
 *
 *   sum16(bytes)          one's-complement sum of 16-bit big-endian words, folded to 16 bits,
 *                         NOT complemented; chainable through `acc`.
 *   combine(a, b)         one's-complement addition of two partial sums (RFC 1071 §2(B):
 *                         the sum is associative and commutative, so parts can be summed apart).
 *   pseudoHeaderSum(...)  the TCP/UDP pseudo-header (RFC 9293 §3.1 for IPv4, RFC 8200 §8.1 for IPv6).
 *   finish(sum)           the value to store in a checksum field: ~sum.
 *
 * Verifying a received header or segment: summing it *including* its checksum field must give
 * 0xffff (one's-complement negative zero), e.g. `combine(pseudo, sum16(segment)) === 0xffff`.
 * Emitting: zero the field, sum, store `finish(sum)`.
 *
 * Byte order does not need swapping anywhere: RFC 1071 §2(B) shows the sum is byte-order
 * independent, and we read words big-endian so results compare directly with wire fields.
 */

/** Fold carries back into the low 16 bits (end-around carry, RFC 1071 §4.1). */
function fold(sum: number): number {
  // `sum` may exceed 32 bits after summing a long buffer, so carry out with division, not `>>>`.
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/**
 * One's-complement sum of `length` bytes of `buf` from `offset`, added to `acc` and folded to 16
 * bits. An odd trailing byte is summed as if followed by a zero byte (RFC 1071 §4.1). The caller
 * guarantees `offset + length <= buf.length`.
 */
export function sum16(buf: Uint8Array, offset: number, length: number, acc = 0): number {
  // A plain JS number holds the unfolded sum exactly: 2^53 / 0xffff words is far beyond any packet.
  let sum = acc;
  const evenEnd = offset + (length & ~1);
  for (let i = offset; i < evenEnd; i += 2) sum += (buf[i]! << 8) | buf[i + 1]!;
  if (length & 1) sum += buf[evenEnd]! << 8;
  return fold(sum);
}

/** One's-complement sum of two partial sums. */
export function combine(a: number, b: number): number {
  return fold(a + b);
}

/** The checksum field value for a folded sum computed with the field zeroed. */
export function finish(sum: number): number {
  return ~sum & 0xffff;
}

/**
 * Sum of the pseudo-header that the TCP (and UDP) checksum covers besides the segment itself.
 *
 *   IPv4 (RFC 9293 §3.1):  source(4) destination(4) zero(1) protocol(1) TCP length(2)
 *   IPv6 (RFC 8200 §8.1):  source(16) destination(16) upper-layer length(4) zero(3) next header(1)
 *
 * Source and destination are given as (buffer, offset) pairs so the same function serves a
 * captured frame (both in the frame: pass it twice) and a `ReplyHeader` (two separate arrays).
 * For IPv6 the destination must be the final one (RFC 8200 §8.1: with a Routing header, the last
 * address in it); the wire layer only accepts packets whose Routing header is exhausted, where
 * that is the IPv6 header's own destination.
 */
export function pseudoHeaderSum(
  family: 4 | 6,
  srcBuf: Uint8Array,
  srcOffset: number,
  dstBuf: Uint8Array,
  dstOffset: number,
  protocol: number,
  upperLayerLength: number,
): number {
  const addrLength = family === 4 ? 4 : 16;
  let sum = sum16(srcBuf, srcOffset, addrLength);
  sum = sum16(dstBuf, dstOffset, addrLength, sum);
  // The 32-bit IPv6 length contributes two words; for IPv4 the high word is zero.
  return fold(sum + protocol + (upperLayerLength & 0xffff) + Math.floor(upperLayerLength / 0x10000));
}
