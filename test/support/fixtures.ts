/**
 * The real captures in test/fixtures (made by test/fixtures/capture.sh) and what is known about
 * them. All three pcap files hold the same 32 packets, captured at once on one veth:
 *
 *   0-9    IPv4 `dig +tcp a.stcp.test A`: handshake, 54-byte query, 58-byte answer, FIN both ways
 *   10-19  the same over IPv6 (AAAA, 70-byte answer)
 *   20-31  IPv4 `big.stcp.test TXT`: the 1628-byte answer in two segments (1208 + 420 bytes)
 *
 * packets.txt holds tcpdump's line for each (`tcpdump -n -S -t`, trimmed). The values pinned
 * below and in the tests are those of the committed capture.
 */
import { readFileSync } from 'node:fs';
import { LinkType } from '../../src/wire/segment.js';
import { type PcapFile, readPcap } from './pcap-file.js';

const FIXTURES = new URL('../../../test/fixtures/', import.meta.url);

export const CAPTURES = [
  { name: 'ethernet', linkType: LinkType.ETHERNET, linkHeaderLength: 14 },
  { name: 'linux-sll', linkType: LinkType.LINUX_SLL, linkHeaderLength: 16 },
  { name: 'linux-sll2', linkType: LinkType.LINUX_SLL2, linkHeaderLength: 20 },
] as const;
export type CaptureName = (typeof CAPTURES)[number]['name'];

/** Indices of notable packets (the same in every capture). */
export const Packet = {
  V4_SYN: 0,
  V4_SYN_ACK: 1,
  V4_HANDSHAKE_ACK: 2,
  V4_QUERY: 3,
  V4_QUERY_ACK: 4,
  V4_ANSWER: 5,
  V4_CLIENT_FIN: 7,
  V4_SERVER_FIN: 8,
  V6_SYN: 10,
  V6_SYN_ACK: 11,
  V6_HANDSHAKE_ACK: 12,
  V6_QUERY: 13,
  V6_ANSWER: 15,
  BIG_SYN: 20,
  BIG_QUERY: 23,
  BIG_ANSWER_FIRST: 25,
  BIG_ANSWER_SECOND: 27,
} as const;
export const PACKET_COUNT = 32;

const cache = new Map<CaptureName, PcapFile>();

export function loadCapture(name: CaptureName): PcapFile {
  let file = cache.get(name);
  if (file === undefined) {
    file = readPcap(new URL(`${name}.pcap`, FIXTURES));
    cache.set(name, file);
  }
  return file;
}

/** A copy of captured frame `index` (tests mutate frames; the cache must stay pristine). */
export function frame(name: CaptureName, index: number): Uint8Array {
  return Uint8Array.from(loadCapture(name).records[index]!.data);
}

/** A copy of packet `index` without its link header: what LINKTYPE_RAW would have captured. */
export function ipPacket(index: number): Uint8Array {
  return frame('ethernet', index).slice(14);
}

/** tcpdump's line for each packet, in capture order. */
export function tcpdumpLines(): string[] {
  return readFileSync(new URL('packets.txt', FIXTURES), 'utf8').trimEnd().split('\n');
}

/**
 * offloaded.pcap: 28 packets captured with `tcpdump -s 262144` on the server's veth of two lab
 * namespaces left at the kernel's default offloads (tx checksumming, TSO and GSO on both ends) with
 * GRO turned on at the server: a client uploads 30,000 bytes to port 8080 over IPv4 (packets 0-11,
 * 24-25), then over IPv6 (12-23, 26-27), to a plain kernel socket. Every packet's TCP checksum
 * field holds the folded pseudo-header sum, not a checksum (CHECKSUM_PARTIAL: tcpdump calls each
 * "incorrect"), and the uploads arrive as TSO frames of several segments, whose IP length is the
 * whole frame's: 7240 + 7240 + 14480 + 1040 bytes of data over IPv4 (MSS 1448), 7140 + 7140 +
 * 14280 + 1440 over IPv6 (MSS 1428).
 */
export const Offloaded = {
  V4_SYN: 0,
  V4_HANDSHAKE_ACK: 2,
  V4_DATA_FIRST: 3,
  V4_DATA_14480: 7,
  V4_DATA_LAST: 9,
  V4_CLIENT_FIN: 11,
  V6_SYN: 12,
  V6_DATA_FIRST: 15,
  V6_DATA_14280: 19,
  V6_DATA_LAST: 21,
  COUNT: 28,
} as const;

/** A copy of frame `index` of offloaded.pcap (Ethernet). */
export function offloadedFrame(index: number): Uint8Array {
  let file = offloadedCapture;
  if (file === undefined) offloadedCapture = file = readPcap(new URL('offloaded.pcap', FIXTURES));
  return Uint8Array.from(file.records[index]!.data);
}
let offloadedCapture: PcapFile | undefined;
