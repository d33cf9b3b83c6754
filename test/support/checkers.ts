/**
 * Composable checkers for packets the wire layer emits, after gVisor's `pkg/tcpip/checker`.
 *
 *   import { checkPacket, ipv4, ipv6, src, dst, hopLimit, tcp, srcPort, dstPort, flags, seqNum,
 *            ackNum, window, mss, payload } from '../../support/checkers.js';
 *
 *   checkPacket(bytes,
 *     ipv4(src('198.18.0.2'), dst('198.18.0.1'), hopLimit(64)),
 *     tcp(srcPort(53), dstPort(53910), flags(TcpFlag.SYN | TcpFlag.ACK), seqNum(isn),
 *         ackNum(clientIsn + 1), window(65535), mss(1220), payload(new Uint8Array(0))));
 *
 *   checkPacket(bytes, ipv6(src('2001:2::2'), dst('2001:2::1')), tcp(flags(TcpFlag.RST), ...));
 *
 * `bytes` is one complete IP packet (no link header), e.g. what `emitReply` wrote. Before any
 * listed check runs, `checkPacket` asserts that the packet decodes (`decodeFrame` with
 * LINKTYPE_RAW) with the IPv4 header checksum and the TCP checksum verified, that the IP length
 * fields account for exactly `bytes.length` bytes, and that the IP version is the one asked for.
 * Each check then compares one field; a failure throws an `AssertionError` whose message names
 * the field and ends with the packet's tcpdump-style line, e.g.
 *
 *   ackNum: expected 3154750378, got 3154750377
 *     packet: 198.18.0.2.53 > 198.18.0.1.45483: Flags [S.], seq 1, ack 3154750377, win 65535, ...
 *
 * Checks left out are not checked. `checkPacket` returns the decoded `Segment` for further asserts.
 */
import { AssertionError } from 'node:assert';
import { formatAddress, formatSegment } from '../../src/wire/format.js';
import { decodeFrame } from '../../src/wire/frame.js';
import { ChecksumPolicy, DECODE_RESULT_NAMES, DecodeResult, LinkType, Segment } from '../../src/wire/segment.js';
import { addressBytes, addressFamily } from './address.js';

/** What every check sees: the packet, its decoding, and its tcpdump line for messages. */
export interface CheckedPacket {
  readonly bytes: Uint8Array;
  readonly seg: Segment;
  readonly line: string;
}

/** A check of an IP-layer field; pass to `ipv4(...)` or `ipv6(...)`. */
export interface IpCheck {
  readonly layer: 'ip';
  readonly run: (packet: CheckedPacket) => void;
}

/** A check of a TCP-layer field; pass to `tcp(...)`. */
export interface TcpCheck {
  readonly layer: 'tcp';
  readonly run: (packet: CheckedPacket) => void;
}

export interface IpChecker {
  readonly family: 4 | 6;
  readonly checks: readonly IpCheck[];
}

export interface TcpChecker {
  readonly checks: readonly TcpCheck[];
}

function fail(field: string, expected: unknown, actual: unknown, line: string): never {
  throw new AssertionError({
    message: `${field}: expected ${String(expected)}, got ${String(actual)}\n  packet: ${line}`,
    expected,
    actual,
    // Not 'strictEqual': Node would append its own diff to a message that already says it all.
    operator: 'fail',
  });
}

function expectEqual(field: string, expected: unknown, actual: unknown, packet: CheckedPacket): void {
  if (!Object.is(actual, expected)) fail(field, expected, actual, packet.line);
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/**
 * Assert that `bytes` is one valid IP packet carrying TCP, with correct checksums, then run the
 * IP checks and (if given) the TCP checks. Returns the decoded segment.
 */
export function checkPacket(bytes: Uint8Array, ip: IpChecker, transport?: TcpChecker): Segment {
  const seg = new Segment();
  const result = decodeFrame(LinkType.RAW, bytes, 0, bytes.length, ChecksumPolicy.VERIFY, seg);
  if (result !== DecodeResult.OK) {
    fail('decode', DECODE_RESULT_NAMES[DecodeResult.OK], DECODE_RESULT_NAMES[result], `(undecodable) ${hex(bytes)}`);
  }
  const packet: CheckedPacket = { bytes, seg, line: formatSegment(seg) };
  expectEqual('IP version', ip.family, seg.family, packet);
  // The decoder ignores bytes after the IP packet (link padding); an emitted packet has none.
  expectEqual('IP packet length', bytes.length, seg.payloadOffset + seg.payloadLength, packet);
  for (const check of ip.checks) check.run(packet);
  if (transport !== undefined) for (const check of transport.checks) check.run(packet);
  return seg;
}

export function ipv4(...checks: IpCheck[]): IpChecker {
  return { family: 4, checks };
}

export function ipv6(...checks: IpCheck[]): IpChecker {
  return { family: 6, checks };
}

export function tcp(...checks: TcpCheck[]): TcpChecker {
  return { checks };
}

function ipCheck(run: (packet: CheckedPacket) => void): IpCheck {
  return { layer: 'ip', run };
}

function tcpCheck(run: (packet: CheckedPacket) => void): TcpCheck {
  return { layer: 'tcp', run };
}

function addressCheck(field: string, expected: string, offsetOf: (seg: Segment) => number): IpCheck {
  // Normalize the expectation through bytes so '2001:2:0::1' matches the printed '2001:2::1'.
  const family = addressFamily(expected);
  const canonical = formatAddress(addressBytes(expected), 0, family);
  return ipCheck((p) => expectEqual(field, canonical, formatAddress(p.seg.buf, offsetOf(p.seg), p.seg.family), p));
}

/** Source address, in IPv4 dotted-quad or IPv6 notation. */
export function src(address: string): IpCheck {
  return addressCheck('source address', address, (seg) => seg.srcAddrOffset);
}

/** Destination address, in IPv4 dotted-quad or IPv6 notation. */
export function dst(address: string): IpCheck {
  return addressCheck('destination address', address, (seg) => seg.dstAddrOffset);
}

/** IPv4 TTL or IPv6 Hop Limit. */
export function hopLimit(expected: number): IpCheck {
  return ipCheck((p) => {
    const offset = p.seg.family === 4 ? 8 : 7; // RFC 791 §3.1 TTL / RFC 8200 §3 Hop Limit
    expectEqual('hop limit', expected, p.bytes[offset], p);
  });
}

/** IPv4 only: Don't Fragment set, More Fragments clear, Identification `id` (RFC 6864 §4.1). */
export function atomicDatagram(id = 0): IpCheck {
  return ipCheck((p) => {
    expectEqual('IPv4 flags/fragment offset', 0x4000, (p.bytes[6]! << 8) | p.bytes[7]!, p);
    expectEqual('IPv4 identification', id, (p.bytes[4]! << 8) | p.bytes[5]!, p);
  });
}

export function srcPort(expected: number): TcpCheck {
  return tcpCheck((p) => expectEqual('source port', expected, p.seg.srcPort, p));
}

export function dstPort(expected: number): TcpCheck {
  return tcpCheck((p) => expectEqual('destination port', expected, p.seg.dstPort, p));
}

/** All 8 flag bits exactly, e.g. `flags(TcpFlag.SYN | TcpFlag.ACK)`. */
export function flags(expected: number): TcpCheck {
  return tcpCheck((p) => expectEqual('flags', `0x${expected.toString(16)}`, `0x${p.seg.flags.toString(16)}`, p));
}

export function seqNum(expected: number): TcpCheck {
  return tcpCheck((p) => expectEqual('seqNum', expected >>> 0, p.seg.seq, p));
}

export function ackNum(expected: number): TcpCheck {
  return tcpCheck((p) => expectEqual('ackNum', expected >>> 0, p.seg.ack, p));
}

/** The raw 16-bit window field. */
export function window(expected: number): TcpCheck {
  return tcpCheck((p) => expectEqual('window', expected, p.seg.window, p));
}

/** MSS option value; `mss(0)` asserts there is no MSS option. */
export function mss(expected: number): TcpCheck {
  return tcpCheck((p) => expectEqual('mss', expected, p.seg.mss, p));
}

/** Window scale shift; `windowScale(-1)` asserts there is no window scale option. */
export function windowScale(expected: number): TcpCheck {
  return tcpCheck((p) => expectEqual('windowScale', expected, p.seg.windowScale, p));
}

export function sackPermitted(expected: boolean): TcpCheck {
  return tcpCheck((p) => expectEqual('sackPermitted', expected, p.seg.sackPermitted, p));
}

/** Timestamps option with these values; `timestamps(null)` asserts there is none. */
export function timestamps(expected: { val: number; ecr: number } | null): TcpCheck {
  return tcpCheck((p) => {
    const { seg } = p;
    const actual = seg.hasTimestamps ? `val ${seg.tsVal} ecr ${seg.tsEcr}` : 'none';
    expectEqual('timestamps', expected === null ? 'none' : `val ${expected.val} ecr ${expected.ecr}`, actual, p);
  });
}

/** TCP header length in bytes (20 = no options). */
export function tcpHeaderLength(expected: number): TcpCheck {
  return tcpCheck((p) => expectEqual('TCP header length', expected, p.seg.tcpHeaderLength, p));
}

/** The payload, byte for byte (a string is taken as latin1). */
export function payload(expected: Uint8Array | string): TcpCheck {
  const want = typeof expected === 'string' ? Uint8Array.from(Buffer.from(expected, 'latin1')) : expected;
  return tcpCheck((p) => {
    const { seg } = p;
    expectEqual('payload length', want.length, seg.payloadLength, p);
    for (let i = 0; i < want.length; i++) {
      const got = seg.buf[seg.payloadOffset + i];
      if (got !== want[i]) fail(`payload byte ${i}`, want[i], got, p.line);
    }
  });
}

export function payloadLength(expected: number): TcpCheck {
  return tcpCheck((p) => expectEqual('payload length', expected, p.seg.payloadLength, p));
}
