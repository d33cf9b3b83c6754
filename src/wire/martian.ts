/**
 * Martian sources: addresses no client on the network can send from. The kernel drops such
 * packets in its input path (its martian and rp_filter checks), but libpcap sees every packet
 * before that, so our answers would go where the forged source points: to this host itself, to
 * its loopback, or to a broadcast — a reflection an off-path sender aims at us or at the network.
 * A segment from a martian source gets no answer (tcp/flowless.ts).
 *
 * Martian, whatever the host (RFC 1812 §5.3.7: a source that is "a special IP address … or is
 * not a unicast address", or on network 0 or 127):
 *   IPv4  0.0.0.0/8      "this network" (RFC 1122 §3.2.1.3(a), (b): a source only while booting)
 *         127.0.0.0/8    loopback (RFC 1122 §3.2.1.3(g): never outside a host)
 *         224.0.0.0/4    multicast, never a source
 *         240.0.0.0/4    reserved (RFC 6890), with 255.255.255.255, limited broadcast
 *                        (RFC 1122 §3.2.1.3(c): never a source)
 *   IPv6  ::/96          the unspecified ::, loopback ::1 (RFC 4291 §2.5.2, §2.5.3: never sent
 *                        from a wire) and the deprecated IPv4-compatible addresses (§2.5.5.1)
 *         ::ffff:0:0/96  IPv4-mapped (RFC 4291 §2.5.5.2; RFC 4942 §2.2 on why a wire must not
 *                        carry them)
 *         ff00::/8       multicast (RFC 4291 §2.7: never a source)
 * And this host's own addresses (io/host-addresses.ts gathers them at start: every interface's,
 * the listen addresses, and each IPv4 subnet's broadcast address). The NAT64 prefix 64:ff9b::/96
 * (RFC 6052) and link-local addresses are real sources and stay answered.
 *
 * Pure and zero-copy: it reads the segment's source address bytes where they were captured.
 */
import { readI32 } from './bytes.js';
import type { Segment } from './segment.js';

export class MartianSources {
  /** This host's IPv4 addresses as big-endian int32 words. */
  private readonly ownV4: Int32Array;
  /** This host's IPv6 addresses, four big-endian int32 words each. */
  private readonly ownV6: Int32Array;

  /** `ownAddresses`: this host's addresses, 4 bytes (IPv4) or 16 (IPv6) each, in network order. */
  constructor(ownAddresses: readonly Uint8Array[] = []) {
    const v4 = ownAddresses.filter((address) => address.length === 4);
    const v6 = ownAddresses.filter((address) => address.length === 16);
    if (v4.length + v6.length !== ownAddresses.length) throw new RangeError('an address is 4 or 16 bytes');
    this.ownV4 = Int32Array.from(v4, (address) => readI32(address, 0));
    this.ownV6 = Int32Array.from(
      v6.flatMap((address) => [readI32(address, 0), readI32(address, 4), readI32(address, 8), readI32(address, 12)]),
    );
  }

  /** Whether `seg`'s source address is martian. */
  refuses(seg: Segment): boolean {
    const buf = seg.buf;
    const at = seg.srcAddrOffset;
    if (seg.family === 4) {
      const first = buf[at]!;
      if (first === 0 || first === 127 || first >= 224) return true;
      const address = readI32(buf, at);
      const own = this.ownV4;
      for (let i = 0; i < own.length; i++) if (own[i] === address) return true;
      return false;
    }
    if (buf[at] === 0xff) return true;
    const w0 = readI32(buf, at);
    const w1 = readI32(buf, at + 4);
    const w2 = readI32(buf, at + 8);
    // ::/96 and ::ffff:0:0/96: 80 zero bits, then 16 zero or 16 one bits.
    if (w0 === 0 && w1 === 0 && (w2 === 0 || w2 === 0xffff)) return true;
    const w3 = readI32(buf, at + 12);
    const own = this.ownV6;
    for (let i = 0; i < own.length; i += 4) {
      if (own[i] === w0 && own[i + 1] === w1 && own[i + 2] === w2 && own[i + 3] === w3) return true;
    }
    return false;
  }
}
