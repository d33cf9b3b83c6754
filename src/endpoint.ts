/** Parsing `ADDR:PORT` command-line endpoints (`198.18.0.2:53`, `[2001:2::2]:53`, RFC 3986 §3.2.2). */
import net from 'node:net';

export interface Endpoint {
  address: string;
  port: number;
  family: 4 | 6;
}

/** Parses an endpoint; throws an Error with a one-line message saying what is wrong. */
export function parseEndpoint(text: string): Endpoint {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:[\]]+):(\d+)$/.exec(text);
  if (m === null) {
    throw new Error(`"${text}" is not ADDR:PORT (write IPv6 addresses in brackets: [2001:2::2]:53)`);
  }
  const address = m[1]!;
  const port = Number(m[2]);
  const family = net.isIP(address);
  if (family === 0) throw new Error(`"${address}" in "${text}" is not an IP address`);
  if (family === 6 && !text.startsWith('[')) throw new Error(`write the IPv6 address in brackets: [${address}]:${port}`);
  if (!(port >= 1 && port <= 65535)) throw new Error(`port ${m[2]} in "${text}" is not 1-65535`);
  return { address, port, family: family as 4 | 6 };
}

/**
 * The 4 or 16 bytes, in network order, of an IPv4 or IPv6 address in text (RFC 4291 §2.2, an
 * IPv4 tail such as ::ffff:198.18.0.1 included, a zone such as %eth0 ignored: RFC 4007 §11 keeps
 * it out of the address); throws an Error if it is not one.
 */
export function addressBytes(text: string): Uint8Array {
  const family = net.isIP(text);
  if (family === 4) return Uint8Array.from(text.split('.'), Number);
  if (family !== 6) throw new Error(`"${text}" is not an IP address`);
  const address = text.replace(/%.*$/, '');
  // An IPv4 tail is the last two groups.
  const tail = /^(.*:)(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(address);
  const groupsText =
    tail === null
      ? address
      : `${tail[1]}${((Number(tail[2]) << 8) | Number(tail[3])).toString(16)}:${((Number(tail[4]) << 8) | Number(tail[5])).toString(16)}`;
  const [head, rest] = groupsText.split('::') as [string, string | undefined];
  const groupsOf = (part: string | undefined): number[] =>
    part === undefined || part === '' ? [] : part.split(':').map((g) => parseInt(g, 16));
  const before = groupsOf(head);
  const after = groupsOf(rest);
  const groups = [...before, ...new Array<number>(8 - before.length - after.length).fill(0), ...after];
  const bytes = new Uint8Array(16);
  groups.forEach((group, i) => {
    bytes[2 * i] = group >>> 8;
    bytes[2 * i + 1] = group & 0xff;
  });
  return bytes;
}

export function formatEndpoint(e: { address: string; port: number }): string {
  return net.isIPv6(e.address) ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
}

/** 127.0.0.0/8 and ::1 (RFC 1122 §3.2.1.3, RFC 4291 §2.5.3); BlockList also matches IPv4-mapped IPv6. */
const LOOPBACK = new net.BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** Whether the endpoint's address is a loopback address: traffic to it never leaves the host. */
export function isLoopback(e: Endpoint): boolean {
  return LOOPBACK.check(e.address, e.family === 4 ? 'ipv4' : 'ipv6');
}

/**
 * Whether the 16 bytes at `address` are an IPv4-mapped IPv6 address (::ffff:a.b.c.d, RFC 4291
 * §2.5.5.2): how a dual-stack socket shows an IPv4 peer. Reads in place, allocates nothing.
 */
export function isV4Mapped(address: Uint8Array): boolean {
  if (address.length < 16 || address[10] !== 0xff || address[11] !== 0xff) return false;
  for (let i = 0; i < 10; i++) if (address[i] !== 0) return false;
  return true;
}
