/**
 * Surgery on real captured packets for tests: insert bytes, rewrite TCP options, and recompute the
 * checksums afterwards so that only the property under test is wrong.
 */
import { writeU16 } from '../../src/wire/bytes.js';
import { combine, finish, pseudoHeaderSum, sum16 } from '../../src/wire/checksum.js';

/** `buf` with `bytes` inserted at `at`. */
export function insertBytes(buf: Uint8Array, at: number, bytes: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(buf.length + bytes.length);
  out.set(buf.subarray(0, at), 0);
  out.set(bytes, at);
  out.set(buf.subarray(at), at + bytes.length);
  return out;
}

/** Recompute the IPv4 header checksum (RFC 791 §3.1) of the header at `ipOffset`. */
export function fixIpv4Checksum(packet: Uint8Array, ipOffset: number): void {
  const headerLength = (packet[ipOffset]! & 0x0f) * 4;
  writeU16(packet, ipOffset + 10, 0);
  writeU16(packet, ipOffset + 10, finish(sum16(packet, ipOffset, headerLength)));
}

/**
 * Recompute the TCP checksum of the segment [`tcpOffset`, `end`) of the IPv4 or IPv6 packet at
 * `ipOffset` (pseudo-header addresses taken from that header).
 */
export function fixTcpChecksum(packet: Uint8Array, ipOffset: number, tcpOffset: number, end: number): void {
  const family = packet[ipOffset]! >>> 4 === 6 ? 6 : 4;
  const src = ipOffset + (family === 4 ? 12 : 8);
  const dst = ipOffset + (family === 4 ? 16 : 24);
  writeU16(packet, tcpOffset + 16, 0);
  const pseudo = pseudoHeaderSum(family, packet, src, packet, dst, 6, end - tcpOffset);
  writeU16(packet, tcpOffset + 16, finish(combine(pseudo, sum16(packet, tcpOffset, end - tcpOffset))));
}

/**
 * A raw IPv4 packet (no options, as captured) whose TCP options are replaced by `options`,
 * padded with zero (End-of-List) bytes to a multiple of 4; lengths and checksums are fixed up.
 */
export function withTcpOptions(ipv4Packet: Uint8Array, options: ArrayLike<number>): Uint8Array {
  const tcpOffset = 20;
  const oldHeaderLength = (ipv4Packet[tcpOffset + 12]! >>> 4) * 4;
  const paddedLength = (options.length + 3) & ~3;
  const tcpPayload = ipv4Packet.subarray(tcpOffset + oldHeaderLength);
  const out = new Uint8Array(tcpOffset + 20 + paddedLength + tcpPayload.length);
  out.set(ipv4Packet.subarray(0, tcpOffset + 20), 0);
  out.set(options, tcpOffset + 20);
  out.set(tcpPayload, tcpOffset + 20 + paddedLength);
  out[tcpOffset + 12] = ((20 + paddedLength) / 4) << 4;
  writeU16(out, 2, out.length);
  fixIpv4Checksum(out, 0);
  fixTcpChecksum(out, 0, tcpOffset, out.length);
  return out;
}
