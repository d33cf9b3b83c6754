/**
 * ICMP too-big messages as a router on the path builds them (RFC 792/1191, RFC 4443 §3.2) around
 * packets of ours, in Ethernet frames from the lab router's addresses to the server's. The ICMP
 * checksum is left 0: nothing we test verifies it (wire/icmp.ts says why).
 */
/** An Ethernet frame from the router (198.18.0.254 / 2001:2::fe) to the server carrying `icmp`. */
export function frameAround(family: 4 | 6, icmp: Uint8Array): Uint8Array {
  const ip = new Uint8Array(family === 4 ? 20 : 40);
  if (family === 4) {
    ip.set([0x45, 0, (20 + icmp.length) >> 8, (20 + icmp.length) & 0xff, 0, 0, 0, 0, 64, 1, 0, 0, 198, 18, 0, 254, 198, 18, 0, 2]);
  } else {
    ip.set([0x60, 0, 0, 0, icmp.length >> 8, icmp.length & 0xff, 58, 64]);
    ip.set([0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfe], 8);
    ip.set([0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2], 24);
  }
  const ethernet = Uint8Array.from([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, family === 4 ? 0x08 : 0x86, family === 4 ? 0x00 : 0xdd]);
  return Uint8Array.from([...ethernet, ...ip, ...icmp]);
}

/** An ICMP fragmentation-needed (IPv4) or ICMPv6 packet-too-big reporting `mtu`, quoting the first `quotedBytes` of `quoted`. */
export function tooBig(family: 4 | 6, mtu: number, quoted: Uint8Array, quotedBytes: number): Uint8Array {
  const header =
    family === 4 ? [3, 4, 0, 0, 0, 0, mtu >> 8, mtu & 0xff] : [2, 0, 0, 0, mtu >>> 24, (mtu >> 16) & 0xff, (mtu >> 8) & 0xff, mtu & 0xff];
  return Uint8Array.from([...header, ...quoted.subarray(0, quotedBytes)]);
}
