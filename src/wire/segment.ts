/**
 * The two plain structs that cross the boundary between the wire layer and the responder:
 *
 *  - `Segment`: what `decodeFrame` (frame.ts) learned from one captured frame. It is a zero-copy
 *    description: addresses and payload stay in the capture buffer and are named by offset, so a
 *    `Segment` is valid only while that buffer is. One instance is reused for every packet.
 *  - `ReplyHeader`: everything `emitReply` (emit.ts) needs to write one IPv4/IPv6 + TCP packet.
 *    It owns copies of the addresses, so replies can be built after the captured frame is gone
 *    (the DNS answer arrives one upstream round trip later).
 *
 * Neither allocates per packet: callers keep one instance and overwrite it.
 */
import { counterNames } from '../counter-names.js';

/** TCP header flags, RFC 9293 §3.1 (CWR/ECE: RFC 3168 §23.2). */
export const TcpFlag = {
  FIN: 0x01,
  SYN: 0x02,
  RST: 0x04,
  PSH: 0x08,
  ACK: 0x10,
  URG: 0x20,
  ECE: 0x40,
  CWR: 0x80,
} as const;

/** Link-layer header types we decode (numbers from the tcpdump.org LINKTYPE_ registry). */
export const LinkType = {
  ETHERNET: 1,
  RAW: 101,
  LINUX_SLL: 113,
  LINUX_SLL2: 276,
} as const;
export type LinkType = (typeof LinkType)[keyof typeof LinkType];

/**
 * Why a captured frame was not handed to the responder. Every decode outcome other than `OK` is a
 * drop that the caller counts under this reason; the numbering is stable (used as array indices
 * for counters), so append, never reorder.
 */
export const DecodeResult = {
  OK: 0,
  /** Shorter than the link-layer header, or capture length smaller than the packet claims. */
  TRUNCATED: 1,
  /** Not IPv4/IPv6 at the link layer (ARP, LLDP, ...). */
  NOT_IP: 2,
  /** IP header fields impossible: version, IHL < 5, total length < header, bad extension header chain. */
  BAD_IP_HEADER: 3,
  /** IPv4 header checksum wrong (RFC 791 §3.1). */
  BAD_IP_CHECKSUM: 4,
  /** IP fragment (MF set or offset != 0), or IPv6 fragment header: we never reassemble. */
  FRAGMENT: 5,
  /** IP payload is not TCP (after skipping IPv6 extension headers we understand). */
  NOT_TCP: 6,
  /** TCP data offset < 5 or beyond the segment; an option whose length runs past the header. */
  BAD_TCP_HEADER: 7,
  /** TCP checksum wrong (RFC 9293 §3.1), when checksums are verified. */
  BAD_TCP_CHECKSUM: 8,
  /** Source or destination address we must never answer (multicast, broadcast, unspecified). */
  BAD_ADDRESS: 9,
} as const;
export type DecodeResult = (typeof DecodeResult)[keyof typeof DecodeResult];
export const DECODE_RESULT_NAMES = counterNames(DecodeResult);

/**
 * Whether to verify the IPv4 header and TCP checksums of captured packets. Verifying accepts a TCP
 * segment whose checksum the sender's kernel left to offload (CHECKSUM_PARTIAL: a same-host
 * sender, a TSO/GSO/GRO frame), recognized by its field (tcp.ts `tcpChecksumState`); `IGNORE`
 * accepts every checksum (`--checksums ignore`). `IP_HEADER_ONLY` is VERIFY for a packet whose
 * TCP checksum the kernel vouched for (`KernelChecksum`): only the IPv4 header's is summed.
 */
export const ChecksumPolicy = {
  VERIFY: 0,
  IGNORE: 1,
  IP_HEADER_ONLY: 2,
} as const;
export type ChecksumPolicy = (typeof ChecksumPolicy)[keyof typeof ChecksumPolicy];

/**
 * What the kernel told the capture of a packet's TCP checksum (native/capture.c reads the ring
 * frame's tp_status): `VALIDATED` (TP_STATUS_CSUM_VALID: the NIC, veth or GRO checked it),
 * `LEFT_TO_OFFLOAD` (TP_STATUS_CSUMNOTREADY: a sender on this host left it to offload, so the
 * field holds only the pseudo-header sum), or `UNKNOWN` (neither, or the ring header was not
 * found): then the checksum is summed here.
 */
export const KernelChecksum = {
  UNKNOWN: 0,
  VALIDATED: 1,
  LEFT_TO_OFFLOAD: 2,
} as const;
export type KernelChecksum = (typeof KernelChecksum)[keyof typeof KernelChecksum];

/** The checksum policy for one packet: `policy`, unless the kernel vouched for its TCP checksum. */
export function packetChecksumPolicy(policy: ChecksumPolicy, kernel: KernelChecksum): ChecksumPolicy {
  return policy === ChecksumPolicy.VERIFY && kernel !== KernelChecksum.UNKNOWN ? ChecksumPolicy.IP_HEADER_ONLY : policy;
}

/** A decoded TCP/IP packet, as offsets into the buffer it was captured in. */
export class Segment {
  /** The buffer holding the frame; not owned. */
  buf: Uint8Array = new Uint8Array(0);
  /** 4 or 6. */
  family: 4 | 6 = 4;
  /**
   * Offset of the Ethernet header in `buf` when the frame is Ethernet with no VLAN tag (its
   * destination MAC there, its source 6 bytes on), else -1.
   */
  ethernetOffset = -1;
  /** Offset of the IP header in `buf`, and of the end of the IP packet (by its length field, not the capture: Ethernet pads short frames). */
  ipOffset = 0;
  ipEnd = 0;
  /** Offsets of the source/destination address bytes in `buf` (4 or 16 bytes each). */
  srcAddrOffset = 0;
  dstAddrOffset = 0;
  /** Offset of the TCP header in `buf`, and its length in bytes (data offset × 4). */
  tcpOffset = 0;
  tcpHeaderLength = 0;
  /** Offset and length of the TCP payload in `buf`. */
  payloadOffset = 0;
  payloadLength = 0;

  srcPort = 0;
  dstPort = 0;
  /** Sequence and acknowledgment numbers as unsigned 32-bit values (0 … 2^32-1). */
  seq = 0;
  ack = 0;
  /** The 8 flag bits (see `TcpFlag`). */
  flags = 0;
  /** The raw 16-bit window field (unscaled). */
  window = 0;

  // TCP options (RFC 9293 §3.2, RFC 7323, RFC 2018). Absent options keep these defaults.
  /** Maximum segment size option (kind 2), 0 if absent. */
  mss = 0;
  /** Window scale shift (kind 3), -1 if absent. Values above 14 are kept as sent (RFC 7323 §2.3 says treat as 14). */
  windowScale = -1;
  /** SACK-permitted (kind 4) present. */
  sackPermitted = false;
  /** Timestamps option (kind 8) present, and its values (unsigned 32-bit). */
  hasTimestamps = false;
  tsVal = 0;
  tsEcr = 0;

  /**
   * The TCP checksum field held the folded pseudo-header sum, not a checksum: the sender's kernel
   * left it to offload (tcp.ts `tcpChecksumState`). Set only when checksums are verified.
   */
  checksumOffloaded = false;

  /** Bytes in the address: 4 for IPv4, 16 for IPv6. */
  get addrLength(): number {
    return this.family === 4 ? 4 : 16;
  }
}

/** Everything needed to emit one TCP segment in an IPv4 or IPv6 packet. */
export class ReplyHeader {
  family: 4 | 6 = 4;
  /** Source and destination addresses; IPv4 uses the first 4 bytes. */
  readonly srcAddr = new Uint8Array(16);
  readonly dstAddr = new Uint8Array(16);
  srcPort = 0;
  dstPort = 0;
  seq = 0;
  ack = 0;
  flags = 0;
  window = 0;
  /** If non-zero, emit an MSS option (kind 2) with this value; only meaningful on SYN segments. */
  mss = 0;
  /** If 0 or more, emit a window scale option (kind 3, RFC 7323 §2.2) with this shift; SYN segments only. */
  windowScale = -1;
  /** If set, emit the timestamps option (RFC 7323 §3) with these values. */
  hasTimestamps = false;
  tsVal = 0;
  tsEcr = 0;
  /** IPv4 TTL / IPv6 hop limit. */
  hopLimit = 64;
  /**
   * The Ethernet addresses for a reply sent on the link itself (io/link-send.ts): ours, and the
   * next hop's — the MAC address the segment we answer came from. Set when it came in an untagged
   * Ethernet frame (`hasLinkAddresses`).
   */
  hasLinkAddresses = false;
  readonly linkSrc = new Uint8Array(6);
  readonly linkDst = new Uint8Array(6);

  /** Make this a copy of `other`. */
  copyFrom(other: ReplyHeader): this {
    this.family = other.family;
    this.srcAddr.set(other.srcAddr);
    this.dstAddr.set(other.dstAddr);
    this.srcPort = other.srcPort;
    this.dstPort = other.dstPort;
    this.seq = other.seq;
    this.ack = other.ack;
    this.flags = other.flags;
    this.window = other.window;
    this.mss = other.mss;
    this.windowScale = other.windowScale;
    this.hasTimestamps = other.hasTimestamps;
    this.tsVal = other.tsVal;
    this.tsEcr = other.tsEcr;
    this.hopLimit = other.hopLimit;
    this.hasLinkAddresses = other.hasLinkAddresses;
    this.linkSrc.set(other.linkSrc);
    this.linkDst.set(other.linkDst);
    return this;
  }

  /** Fill addresses and ports as the reverse of a captured segment's (reply direction). */
  reverseOf(seg: Segment): this {
    const n = seg.addrLength;
    const buf = seg.buf;
    this.family = seg.family;
    for (let i = 0; i < n; i++) {
      this.srcAddr[i] = buf[seg.dstAddrOffset + i]!;
      this.dstAddr[i] = buf[seg.srcAddrOffset + i]!;
    }
    this.srcPort = seg.dstPort;
    this.dstPort = seg.srcPort;
    const ethernet = seg.ethernetOffset;
    this.hasLinkAddresses = ethernet >= 0;
    if (ethernet >= 0) {
      for (let i = 0; i < 6; i++) {
        this.linkSrc[i] = buf[ethernet + i]!;
        this.linkDst[i] = buf[ethernet + 6 + i]!;
      }
    }
    return this;
  }
}
