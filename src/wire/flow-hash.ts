/**
 * `flowHash`: which shard a captured frame belongs to. The capture thread calls it for every
 * packet before copying the frame into that shard's ring, so it reads only what it must — link
 * header, IP header (and the IPv6 extension headers before TCP), the two TCP ports — and never
 * verifies a checksum, allocates or throws.
 *
 * The 4-tuple is found by the decoder's own link and IP layers (frame.ts `decodeIpLayers`), so
 * shard routing and decoding agree on where the addresses and ports are: a packet the decoder
 * would answer is hashed by exactly the fields that name its connection, however many VLAN tags
 * or IPv6 extension headers precede them. A frame the decoder
 * would drop before reaching the TCP ports (truncated, not IP, not TCP, a fragment, an address we
 * never answer) hashes to 0: it goes to shard 0, whose decoder counts it under its reason.
 *
 * The hash is symmetric: a connection's packets hash alike in both directions, so a capture that
 * sees both (a mirror port, `-i any` with a looser filter) still keeps the connection on one
 * shard. Each endpoint (address, port) is hashed with MurmurHash3's x86_32 mixing and the two
 * results are added. MurmurHash3's finalizer makes every output bit depend on every input bit, so
 * `hash % n` and `hash & (n - 1)` spread flows evenly even when the tuples differ in one port bit.
 * It is not keyed: a sender that chooses its ports can aim its packets at one shard.
 *
 * The result has 31 bits, not 32: V8 keeps a 31-bit value as a small integer, but boxes an
 * unsigned 32-bit value ≥ 2^31 into a newly allocated heap number when a function that is not
 * inlined returns it — half of all packets. One bit less changes nothing for `% n` with n ≤ 2^30.
 */
import { readU16 } from './bytes.js';
import { decodeIpLayers } from './frame.js';
import { ChecksumPolicy, DecodeResult, Segment } from './segment.js';
import { TcpField } from './tcp.js';

/** The hash of a frame that is not a TCP segment the decoder could accept. */
export const UNPARSED_FLOW_HASH = 0;
/** Keeps the result below 2^31 (see above). */
const FLOW_HASH_MASK = 0x7fff_ffff;

/** The decoders report offsets into a Segment; one is reused for every frame (never shared out). */
const scratch = new Segment();

/**
 * The flow hash, 0 … 2^31 − 1, of the frame of `linkType` captured in
 * `buf[offset, offset + length)`, or `UNPARSED_FLOW_HASH`. Equal for every packet of a TCP
 * connection, in either direction.
 */
export function flowHash(linkType: number, buf: Uint8Array, offset: number, length: number): number {
  // IGNORE: the shard's decoder verifies the checksum; routing a corrupt packet costs nothing.
  if (decodeIpLayers(linkType, buf, offset, length, ChecksumPolicy.IGNORE, scratch) !== DecodeResult.OK) return UNPARSED_FLOW_HASH;
  // decodeIpLayers proved ipEnd ≤ the capture's end; the ports are the first 4 bytes of TCP.
  const tcp = scratch.tcpOffset;
  if (tcp + TcpField.DST_PORT + 2 > scratch.ipEnd) return UNPARSED_FLOW_HASH;
  const addressWords = scratch.family === 4 ? 1 : 4;
  const source = endpointHash(buf, scratch.srcAddrOffset, addressWords, readU16(buf, tcp + TcpField.SRC_PORT));
  const destination = endpointHash(buf, scratch.dstAddrOffset, addressWords, readU16(buf, tcp + TcpField.DST_PORT));
  // Addition commutes (the hash is symmetric) and, unlike XOR, does not cancel when the two
  // endpoints are equal.
  return (source + destination) & FLOW_HASH_MASK;
}

/**
 * The flow hash of a decoded segment: the same value `flowHash` gave its frame, from the
 * addresses and ports the decoder found (a shard marks its flows with it: tcp/live-flows.ts).
 */
export function segmentFlowHash(seg: Segment): number {
  const addressWords = seg.addrLength >>> 2;
  const source = endpointHash(seg.buf, seg.srcAddrOffset, addressWords, seg.srcPort);
  const destination = endpointHash(seg.buf, seg.dstAddrOffset, addressWords, seg.dstPort);
  return (source + destination) & FLOW_HASH_MASK;
}

// MurmurHash3 x86_32 (Austin Appleby, public domain, SMHasher MurmurHash3.cpp): block and
// finalization constants.
const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;
const BLOCK_ADD = 0xe6546b64;
const FMIX1 = 0x85ebca6b;
const FMIX2 = 0xc2b2ae35;

/**
 * MurmurHash3_x86_32 over 32-bit blocks: the `addressWords` big-endian words of the address, then
 * the port. Every value stays a signed int32 (see the 31-bit note above), so the words are read
 * here rather than with bytes.ts `readU32`, which returns them unsigned.
 */
function endpointHash(buf: Uint8Array, addressOffset: number, addressWords: number, port: number): number {
  let h = 0;
  for (let at = addressOffset, end = addressOffset + 4 * addressWords; at < end; at += 4) {
    h = mixBlock(h, (buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!);
  }
  h = mixBlock(h, port);
  // The input length in bytes, as MurmurHash3 does before its finalizer.
  h ^= 4 * (addressWords + 1);
  h ^= h >>> 16;
  h = Math.imul(h, FMIX1);
  h ^= h >>> 13;
  h = Math.imul(h, FMIX2);
  return h ^ (h >>> 16);
}

function mixBlock(h: number, block: number): number {
  let k = Math.imul(block, C1);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, C2);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + BLOCK_ADD) | 0;
}
