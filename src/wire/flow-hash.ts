/**
 * `FlowHash`: which shard a captured frame belongs to, and which of the capture thread's
 * live-flow buckets (tcp/live-flows.ts). The capture thread calls `ofFrame` for every packet
 * before copying the frame into that shard's ring, so it reads only what it must — link header,
 * IP header (and the IPv6 extension headers before TCP), the two TCP ports — and never verifies a
 * checksum, allocates or throws.
 *
 * The 4-tuple is found by the decoder's own link and IP layers (frame.ts `decodeIpLayers`), so
 * shard routing and decoding agree on where the addresses and ports are: a packet the decoder
 * would answer is hashed by exactly the fields that name its connection, however many VLAN tags
 * or IPv6 extension headers precede them. A frame the decoder
 * would drop before reaching the TCP ports (truncated, not IP, not TCP, a fragment, an address we
 * never answer) hashes to 0: it goes to shard 0, whose decoder counts it under its reason.
 *
 * **Keyed.** The hash is SipHash-1-3 under a 128-bit key drawn at the start of the process and
 * kept for its life (the front end gives the same key to the capture thread and every shard
 * worker, which must agree; the cookie secret, which SIGHUP rotates, is another key). Unkeyed, a
 * sender choosing its ports and addresses could aim all its packets at one shard, or all its
 * connections at one live-flow bucket so that every SYN there takes the shard's longer path. An
 * unkeyed or merely seeded fast hash does not do: MurmurHash3 and CityHash have multicollisions
 * that hold for every seed (Aumasson, Bernstein & Boßlet, "Hash-flooding DoS reloaded", 2012),
 * which is why SipHash exists. SipHash-1-3 rather than the cookies' SipHash-2-4: the output is
 * never sent to anyone, only its effect (a shard, a bucket) can be observed, as in a hash
 * table — the use Rust's HashMap and Python's str hash chose SipHash-1-3 for — and this runs for
 * every captured packet, where 1-3 costs about a quarter less (siphash.ts).
 *
 * **Symmetric.** A connection's packets hash alike in both directions (the lower endpoint, by
 * address then port, is hashed first), so a capture that sees both (a mirror port, `-i any` with
 * a looser filter) still keeps the connection on one shard.
 *
 * The result has 31 bits, not 32: V8 keeps a 31-bit value as a small integer, but boxes an
 * unsigned 32-bit value ≥ 2^31 into a newly allocated heap number when a function that is not
 * inlined returns it — half of all packets. One bit less changes nothing for `% n` with n ≤ 2^30.
 */
import { sipHash13, sipKeyOf, type SipKey } from '../tcp/siphash.js';
import { readI32, readU16 } from './bytes.js';
import { decodeIpLayers } from './frame.js';
import { ChecksumPolicy, DecodeResult, Segment } from './segment.js';
import { TcpField } from './tcp.js';

/** The hash of a frame that is not a TCP segment the decoder could accept. */
export const UNPARSED_FLOW_HASH = 0;
/** Keeps the result below 2^31 (see above). */
const FLOW_HASH_MASK = 0x7fff_ffff;
/** Bytes of the routing key. */
export const ROUTING_KEY_BYTES = 16;

export class FlowHash {
  private readonly key: SipKey;
  /** The decoders report offsets into a Segment; one is reused for every frame (never shared out). */
  private readonly layers = new Segment();
  /**
   * Hash input, written a 32-bit word at a time (a byte-wise copy, four times the stores, made
   * an IPv6 tuple's hash a fifth slower): the lower endpoint's address, the higher's, then the two
   * ports — at most 16 + 16 + 4 bytes. Each word is stored so that its bytes lie in memory in
   * network order on a little-endian host; on another the bytes differ, the same in every thread.
   */
  private readonly words = new Int32Array(9);
  private readonly input = new Uint8Array(this.words.buffer);
  private readonly digest = new Uint32Array(2);

  /** `key`: ROUTING_KEY_BYTES random bytes, the same in every thread of the process. */
  constructor(key: Uint8Array) {
    if (key.length !== ROUTING_KEY_BYTES) throw new RangeError(`a routing key is ${ROUTING_KEY_BYTES} bytes`);
    this.key = sipKeyOf(key);
  }

  /**
   * The flow hash, 0 … 2^31 − 1, of the frame of `linkType` captured in
   * `buf[offset, offset + length)`, or `UNPARSED_FLOW_HASH`. Equal for every packet of a TCP
   * connection, in either direction.
   */
  ofFrame(linkType: number, buf: Uint8Array, offset: number, length: number): number {
    const layers = this.layers;
    // IGNORE: the shard's decoder verifies the checksum; routing a corrupt packet costs nothing.
    if (decodeIpLayers(linkType, buf, offset, length, ChecksumPolicy.IGNORE, layers) !== DecodeResult.OK) return UNPARSED_FLOW_HASH;
    // decodeIpLayers proved ipEnd ≤ the capture's end; the ports are the first 4 bytes of TCP.
    const tcp = layers.tcpOffset;
    if (tcp + TcpField.DST_PORT + 2 > layers.ipEnd) return UNPARSED_FLOW_HASH;
    return this.ofTuple(
      buf,
      layers.addrLength >>> 2,
      layers.srcAddrOffset,
      readU16(buf, tcp + TcpField.SRC_PORT),
      layers.dstAddrOffset,
      readU16(buf, tcp + TcpField.DST_PORT),
    );
  }

  /**
   * The flow hash of a decoded segment: the same value `ofFrame` gave its frame, from the
   * addresses and ports the decoder found (a shard marks its flows with it: tcp/live-flows.ts).
   */
  ofSegment(seg: Segment): number {
    return this.ofTuple(seg.buf, seg.addrLength >>> 2, seg.srcAddrOffset, seg.srcPort, seg.dstAddrOffset, seg.dstPort);
  }

  private ofTuple(buf: Uint8Array, addressWords: number, srcAddr: number, srcPort: number, dstAddr: number, dstPort: number): number {
    // Which endpoint is lower: the first address word that differs (compared unsigned), else the port.
    let srcFirst = srcPort <= dstPort;
    for (let at = 0; at < 4 * addressWords; at += 4) {
      const s = readI32(buf, srcAddr + at);
      const d = readI32(buf, dstAddr + at);
      if (s !== d) {
        srcFirst = s >>> 0 < d >>> 0;
        break;
      }
    }
    const low = srcFirst ? srcAddr : dstAddr;
    const high = srcFirst ? dstAddr : srcAddr;
    const words = this.words;
    for (let i = 0; i < addressWords; i++) {
      words[i] = networkOrderWord(buf, low + 4 * i);
      words[addressWords + i] = networkOrderWord(buf, high + 4 * i);
    }
    const lowPort = srcFirst ? srcPort : dstPort;
    const highPort = srcFirst ? dstPort : srcPort;
    words[2 * addressWords] = (lowPort >>> 8) | ((lowPort & 0xff) << 8) | ((highPort >>> 8) << 16) | ((highPort & 0xff) << 24);
    sipHash13(this.key, this.input, 0, 8 * addressWords + 4, this.digest);
    return this.digest[0]! & FLOW_HASH_MASK;
  }
}

/** The 4 bytes at `at` as the int32 that a little-endian Int32Array stores as those bytes in that order. */
function networkOrderWord(buf: Uint8Array, at: number): number {
  return buf[at]! | (buf[at + 1]! << 8) | (buf[at + 2]! << 16) | (buf[at + 3]! << 24);
}
