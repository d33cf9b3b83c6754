/**
 * TCP header (RFC 9293 §3.1) and options (RFC 9293 §3.2, RFC 7323, RFC 2018): decoding of captured
 * segments and emission of reply headers.
 *
 *    0                   1                   2                   3
 *   |          Source Port          |       Destination Port        |
 *   |                        Sequence Number                        |
 *   |                    Acknowledgment Number                      |
 *   |  Data |       |C|E|U|A|P|R|S|F|                               |
 *   | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
 *   |           Checksum            |         Urgent Pointer        |
 *   |                    Options (data offset > 5)                  |
 */
import { readU16, readU32, writeU16, writeU32 } from './bytes.js';
import { combine, finish, pseudoHeaderSum, sum16 } from './checksum.js';
import { IpProtocol } from './ip.js';
import { ChecksumPolicy, DecodeResult, type ReplyHeader, type Segment, TcpFlag } from './segment.js';

/** Field offsets from the start of the TCP header. */
export const TcpField = {
  SRC_PORT: 0,
  DST_PORT: 2,
  SEQ: 4,
  ACK: 8,
  /** Data Offset in the high 4 bits (32-bit words, options included); the rest is reserved. */
  DATA_OFFSET: 12,
  FLAGS: 13,
  WINDOW: 14,
  CHECKSUM: 16,
  URGENT_POINTER: 18,
  OPTIONS: 20,
} as const;

/** Header length without options (data offset 5). */
export const TCP_HEADER_LENGTH = 20;

/** Option kinds (IANA "TCP Option Kind Numbers"). */
export const TcpOptionKind = {
  /** RFC 9293 §3.2: ends the option list; no length byte. */
  END_OF_LIST: 0,
  /** RFC 9293 §3.2: padding between options; no length byte. */
  NO_OPERATION: 1,
  /** RFC 9293 §3.2, §3.7.1. */
  MSS: 2,
  /** RFC 7323 §2.2. */
  WINDOW_SCALE: 3,
  /** RFC 2018 §2. */
  SACK_PERMITTED: 4,
  /** RFC 2018 §3: variable length; we only skip it. */
  SACK: 5,
  /** RFC 7323 §3.2. */
  TIMESTAMPS: 8,
} as const;

/** The fixed lengths (kind and length bytes included) of the options we interpret. */
export const TcpOptionLength = {
  MSS: 4,
  WINDOW_SCALE: 3,
  SACK_PERMITTED: 2,
  TIMESTAMPS: 10,
} as const;

/**
 * Bytes taken by the option starting at `position`, or 0 if its length cannot delimit it.
 * End-of-list and No-Operation are single bytes; every other kind has a length byte that counts
 * kind and length (RFC 9293 §3.2), so it must be at least 2 and stay within `optionsEnd`.
 * The caller guarantees `position < optionsEnd`.
 */
export function tcpOptionLength(buf: Uint8Array, position: number, optionsEnd: number): number {
  const kind = buf[position]!;
  if (kind === TcpOptionKind.END_OF_LIST || kind === TcpOptionKind.NO_OPERATION) return 1;
  if (position + 2 > optionsEnd) return 0;
  const length = buf[position + 1]!;
  if (length < 2 || position + length > optionsEnd) return 0;
  return length;
}

/**
 * Parse the options in [`start`, `end`) into `out` (whose option fields the caller has reset).
 *
 * A known kind with an unexpected length is ignored, as RFC 9293 MUST-6 has us ignore options we
 * do not implement (and as Linux `tcp_parse_options` does): its length byte still delimits it, so
 * the options after it are read. A length that cannot delimit an option (0, 1, or running past
 * the header) leaves the rest of the header unparseable; RFC 9293 MUST-7 asks us to be prepared
 * for that and suggests resetting, and a stateless responder simply drops the segment.
 */
function decodeTcpOptions(buf: Uint8Array, start: number, end: number, out: Segment): DecodeResult {
  let position = start;
  while (position < end) {
    const kind = buf[position]!;
    if (kind === TcpOptionKind.END_OF_LIST) break;
    const length = tcpOptionLength(buf, position, end);
    if (length === 0) return DecodeResult.BAD_TCP_HEADER;
    switch (kind) {
      case TcpOptionKind.MSS:
        if (length === TcpOptionLength.MSS) out.mss = readU16(buf, position + 2);
        break;
      case TcpOptionKind.WINDOW_SCALE:
        if (length === TcpOptionLength.WINDOW_SCALE) out.windowScale = buf[position + 2]!;
        break;
      case TcpOptionKind.SACK_PERMITTED:
        if (length === TcpOptionLength.SACK_PERMITTED) out.sackPermitted = true;
        break;
      case TcpOptionKind.TIMESTAMPS:
        if (length === TcpOptionLength.TIMESTAMPS) {
          out.hasTimestamps = true;
          out.tsVal = readU32(buf, position + 2);
          out.tsEcr = readU32(buf, position + 6);
        }
        break;
      // No-Operation, SACK blocks and unknown kinds: skipped by their length.
    }
    position += length;
  }
  return DecodeResult.OK;
}

/**
 * Decode the TCP segment in [`offset`, `end`), where `end` is the end of the IP packet. `out`
 * must already carry the IP layer's family and address offsets (for the pseudo-header) and have
 * its option fields at their defaults. On `OK` every TCP field of `out` is set.
 */
export function decodeTcp(buf: Uint8Array, offset: number, end: number, policy: ChecksumPolicy, out: Segment): DecodeResult {
  const segmentLength = end - offset;
  if (segmentLength < TCP_HEADER_LENGTH) return DecodeResult.BAD_TCP_HEADER;
  // Checked before the header is interpreted, so a segment damaged in transit is counted as such
  // rather than as whatever impossible header the damage produced.
  if (policy === ChecksumPolicy.VERIFY) {
    const state = tcpChecksumState(buf, offset, segmentLength, out);
    if (state === TcpChecksumState.BAD) return DecodeResult.BAD_TCP_CHECKSUM;
    out.checksumOffloaded = state === TcpChecksumState.OFFLOADED;
  } else {
    out.checksumOffloaded = false;
  }
  const headerLength = (buf[offset + TcpField.DATA_OFFSET]! >>> 4) * 4;
  if (headerLength < TCP_HEADER_LENGTH || headerLength > segmentLength) return DecodeResult.BAD_TCP_HEADER;
  const optionsResult = decodeTcpOptions(buf, offset + TcpField.OPTIONS, offset + headerLength, out);
  if (optionsResult !== DecodeResult.OK) return optionsResult;

  out.tcpOffset = offset;
  out.tcpHeaderLength = headerLength;
  out.payloadOffset = offset + headerLength;
  out.payloadLength = segmentLength - headerLength;
  out.srcPort = readU16(buf, offset + TcpField.SRC_PORT);
  out.dstPort = readU16(buf, offset + TcpField.DST_PORT);
  out.seq = readU32(buf, offset + TcpField.SEQ);
  out.ack = readU32(buf, offset + TcpField.ACK);
  out.flags = buf[offset + TcpField.FLAGS]!;
  out.window = readU16(buf, offset + TcpField.WINDOW);
  return DecodeResult.OK;
}

/** What `tcpChecksumState` found in a segment's checksum field. */
const TcpChecksumState = {
  /** It verifies: pseudo-header, header and data sum to 0xffff (RFC 9293 §3.1). */
  VALID: 0,
  /** It holds the folded pseudo-header sum: the sender's kernel left the rest to offload. */
  OFFLOADED: 1,
  BAD: 2,
} as const;
type TcpChecksumState = (typeof TcpChecksumState)[keyof typeof TcpChecksumState];

/**
 * The checksum state of the segment [`offset`, `offset + segmentLength`), whose addresses `seg`
 * names.
 *
 * A segment from a sender on this host (a container, a VM's tap, the peer of a veth) with
 * transmit checksum offload, and every frame that GRO or GSO coalesced or that TSO left whole,
 * reaches an AF_PACKET tap as CHECKSUM_PARTIAL: the sender's kernel wrote only the folded
 * pseudo-header sum into the field (Linux `__tcp_v4_send_check`, `tcp_v6_send_check`,
 * `tcp_gro_complete`: `th->check = ~tcp_v4_check(len, saddr, daddr, 0)`), and the NIC that would
 * finish it is never reached. The kernel marks those skbs (TP_STATUS_CSUMNOTREADY), and the capture
 * passes that mark on when it can read it (native/capture.c; the pipeline then decodes with
 * `ChecksumPolicy.IP_HEADER_ONLY` and never comes here). When it could not, the field itself is the
 * evidence: it equals that sum with the segment's own length. Such a segment never crossed a
 * wire unchecked — it comes from this host's own stack, or from a NIC that verified each segment
 * before GRO merged them — so it is taken as OFFLOADED. The rule is checked first, so that a
 * 64 KB coalesced frame costs a pseudo-header sum, not a pass over its bytes. A corrupted segment
 * passes it only if the damage happens to leave exactly that value in the field: 1 in 65,536 of
 * the segments whose checksum is wrong anyway.
 */
function tcpChecksumState(buf: Uint8Array, offset: number, segmentLength: number, seg: Segment): TcpChecksumState {
  const { family, srcAddrOffset, dstAddrOffset } = seg;
  const pseudo = pseudoHeaderSum(family, buf, srcAddrOffset, buf, dstAddrOffset, IpProtocol.TCP, segmentLength);
  if (readU16(buf, offset + TcpField.CHECKSUM) === pseudo) return TcpChecksumState.OFFLOADED;
  return combine(pseudo, sum16(buf, offset, segmentLength)) === 0xffff ? TcpChecksumState.VALID : TcpChecksumState.BAD;
}

/**
 * Bytes of options `writeTcpHeader` emits for `hdr`, padded to a 32-bit boundary (the data offset
 * counts words, RFC 9293 §3.1 "Padding"). To emit another option (SACK-permitted, say), add its
 * length here and its bytes in `writeTcpOptions`.
 */
export function tcpOptionsLength(hdr: ReplyHeader): number {
  let length = 0;
  // RFC 9293 §3.7.1: MSS is sent on SYN segments only; the responder sets hdr.mss accordingly.
  if (hdr.mss > 0) length += TcpOptionLength.MSS;
  // RFC 7323 Appendix A: two NOPs align the 10-byte timestamps option to 4 bytes.
  if (hdr.hasTimestamps) length += 2 + TcpOptionLength.TIMESTAMPS;
  // A NOP and the 3-byte window scale option, as Linux sends it.
  if (sendsWindowScale(hdr)) length += 1 + TcpOptionLength.WINDOW_SCALE;
  return (length + 3) & ~3;
}

/** RFC 7323 §2.2: the window scale option goes in SYN segments only. */
function sendsWindowScale(hdr: ReplyHeader): boolean {
  return hdr.windowScale >= 0 && (hdr.flags & TcpFlag.SYN) !== 0;
}

/** Write the options of `hdr` into [`offset`, `end`), padding with End-of-List (zero) bytes. */
function writeTcpOptions(hdr: ReplyHeader, out: Uint8Array, offset: number, end: number): void {
  let position = offset;
  if (hdr.mss > 0) {
    out[position] = TcpOptionKind.MSS;
    out[position + 1] = TcpOptionLength.MSS;
    writeU16(out, position + 2, hdr.mss);
    position += TcpOptionLength.MSS;
  }
  if (hdr.hasTimestamps) {
    out[position] = TcpOptionKind.NO_OPERATION;
    out[position + 1] = TcpOptionKind.NO_OPERATION;
    out[position + 2] = TcpOptionKind.TIMESTAMPS;
    out[position + 3] = TcpOptionLength.TIMESTAMPS;
    writeU32(out, position + 4, hdr.tsVal);
    writeU32(out, position + 8, hdr.tsEcr);
    position += 2 + TcpOptionLength.TIMESTAMPS;
  }
  if (sendsWindowScale(hdr)) {
    out[position] = TcpOptionKind.NO_OPERATION;
    out[position + 1] = TcpOptionKind.WINDOW_SCALE;
    out[position + 2] = TcpOptionLength.WINDOW_SCALE;
    out[position + 3] = hdr.windowScale;
    position += 1 + TcpOptionLength.WINDOW_SCALE;
  }
  // RFC 9293 §3.1: "The TCP header padding ... is composed of zeros."
  while (position < end) out[position++] = TcpOptionKind.END_OF_LIST;
}

/**
 * Write the TCP header of `hdr` (options included) at `offset`, with the checksum field zeroed;
 * `writeTcpChecksum` fills it in once the payload is in place.
 */
export function writeTcpHeader(hdr: ReplyHeader, out: Uint8Array, offset: number): void {
  const headerLength = TCP_HEADER_LENGTH + tcpOptionsLength(hdr);
  writeU16(out, offset + TcpField.SRC_PORT, hdr.srcPort);
  writeU16(out, offset + TcpField.DST_PORT, hdr.dstPort);
  writeU32(out, offset + TcpField.SEQ, hdr.seq);
  writeU32(out, offset + TcpField.ACK, hdr.ack);
  out[offset + TcpField.DATA_OFFSET] = (headerLength / 4) << 4;
  out[offset + TcpField.FLAGS] = hdr.flags;
  writeU16(out, offset + TcpField.WINDOW, hdr.window);
  writeU16(out, offset + TcpField.CHECKSUM, 0);
  // We never send urgent data (RFC 6093 §4 advises new applications against it).
  writeU16(out, offset + TcpField.URGENT_POINTER, 0);
  writeTcpOptions(hdr, out, offset + TcpField.OPTIONS, offset + headerLength);
}

/** Compute and store the checksum of the complete segment [`offset`, `offset + segmentLength`). */
export function writeTcpChecksum(hdr: ReplyHeader, out: Uint8Array, offset: number, segmentLength: number): void {
  const pseudo = pseudoHeaderSum(hdr.family, hdr.srcAddr, 0, hdr.dstAddr, 0, IpProtocol.TCP, segmentLength);
  writeU16(out, offset + TcpField.CHECKSUM, finish(combine(pseudo, sum16(out, offset, segmentLength))));
}
