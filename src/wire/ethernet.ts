/**
 * Ethernet II framing (IEEE 802.3 clause 3.2.6 "Length/Type" used as a type) with 802.1Q and
 * 802.1ad VLAN tags skipped. Only what decoding needs: where the network-layer packet starts and
 * which EtherType it has.
 *
 * Frames shorter than 60 bytes are padded by the sender (IEEE 802.3 clause 4.2.3.3 minimum frame
 * size), so the link layer does not delimit the IP packet: the IP length fields do (frame.ts).
 */
import { readU16 } from './bytes.js';
import type { Segment } from './segment.js';

/** EtherType values (IEEE Registration Authority; IP ones per RFC 894 and RFC 2464). */
export const EtherType = {
  IPV4: 0x0800,
  IPV6: 0x86dd,
  /** IEEE 802.1Q customer VLAN tag. */
  VLAN: 0x8100,
  /** IEEE 802.1ad service VLAN tag (outer tag of "Q-in-Q"). */
  QINQ: 0x88a8,
} as const;

/** Field offsets of the Ethernet II header. */
const EthernetField = {
  DESTINATION: 0,
  SOURCE: 6,
  ETHERTYPE: 12,
} as const;
export const ETHERNET_HEADER_LENGTH = 14;

/** A VLAN tag: TPID (the 0x8100/0x88a8 "EtherType") then TCI, 2 bytes each (IEEE 802.1Q §9.6). */
const VLAN_TAG_LENGTH = 4;

/** Returned instead of an EtherType when the capture ends inside the link-layer header. */
export const LINK_HEADER_TRUNCATED = -1;

/**
 * Given the offset of an EtherType field that is immediately followed by the payload, skip any
 * VLAN tags (each one is TPID + TCI, and the real EtherType follows the last one). Sets
 * `out.ipOffset` to the payload start and returns its EtherType, or `LINK_HEADER_TRUNCATED`.
 * Every tag consumes 4 bytes, so the walk is bounded by the captured length.
 *
 * Shared with Linux cooked captures: libpcap re-inserts tags the kernel stripped at the type field
 * of both DLT_EN10MB and DLT_LINUX_SLL (pcap-linux.c `set_vlan_offset`).
 */
export function skipVlanTags(buf: Uint8Array, typeOffset: number, end: number, out: Segment): number {
  let offset = typeOffset;
  if (offset + 2 > end) return LINK_HEADER_TRUNCATED;
  let etherType = readU16(buf, offset);
  while (etherType === EtherType.VLAN || etherType === EtherType.QINQ) {
    offset += VLAN_TAG_LENGTH;
    if (offset + 2 > end) return LINK_HEADER_TRUNCATED;
    etherType = readU16(buf, offset);
  }
  out.ipOffset = offset + 2;
  return etherType;
}

/** Decode the Ethernet header at `offset`: see `skipVlanTags` for the result. */
export function decodeEthernet(buf: Uint8Array, offset: number, end: number, out: Segment): number {
  return skipVlanTags(buf, offset + EthernetField.ETHERTYPE, end, out);
}
