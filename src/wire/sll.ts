/**
 * Linux "cooked" capture headers, which libpcap produces for `-i any` (and devices without a
 * link-layer header). Layouts from tcpdump.org's LINKTYPE_LINUX_SLL and LINKTYPE_LINUX_SLL2 pages.
 *
 * For IP the protocol type is the EtherType. The packet type tells incoming from outgoing
 * (PACKET_OUTGOING = 4); we do not filter on it here: which direction to capture is the capture
 * layer's choice (pcap_setdirection).
 */
import { readU16 } from './bytes.js';
import { LINK_HEADER_TRUNCATED, skipVlanTags } from './ethernet.js';
import type { Segment } from './segment.js';

/** LINUX_SLL (v1) field offsets; all fields are 2 bytes except the 8-byte address. */
const SllField = {
  PACKET_TYPE: 0,
  ARPHRD_TYPE: 2,
  ADDRESS_LENGTH: 4,
  ADDRESS: 6,
  PROTOCOL: 14,
} as const;
export const SLL_HEADER_LENGTH = 16;

/** LINUX_SLL2 field offsets (the protocol moved to the front, fields resized). */
const Sll2Field = {
  PROTOCOL: 0, // 2 bytes
  RESERVED: 2, // 2 bytes
  INTERFACE_INDEX: 4, // 4 bytes
  ARPHRD_TYPE: 8, // 2 bytes
  PACKET_TYPE: 10, // 1 byte
  ADDRESS_LENGTH: 11, // 1 byte
  ADDRESS: 12, // 8 bytes
} as const;
export const SLL2_HEADER_LENGTH = 20;

/**
 * Decode a LINUX_SLL header at `offset`: sets `out.ipOffset`, returns the protocol (EtherType) or
 * `LINK_HEADER_TRUNCATED`. VLAN tags that libpcap inserted at the protocol field are skipped.
 */
export function decodeSll(buf: Uint8Array, offset: number, end: number, out: Segment): number {
  return skipVlanTags(buf, offset + SllField.PROTOCOL, end, out);
}

/**
 * Decode a LINUX_SLL2 header at `offset`: sets `out.ipOffset`, returns the protocol (EtherType) or
 * `LINK_HEADER_TRUNCATED`. libpcap does not insert VLAN tags into SLL2 headers.
 */
export function decodeSll2(buf: Uint8Array, offset: number, end: number, out: Segment): number {
  if (offset + SLL2_HEADER_LENGTH > end) return LINK_HEADER_TRUNCATED;
  out.ipOffset = offset + SLL2_HEADER_LENGTH;
  return readU16(buf, offset + Sll2Field.PROTOCOL);
}
