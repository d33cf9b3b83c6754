/**
 * Start-up checks of the host, each a one-line problem naming the fix (or null): that the listen
 * addresses are this host's, and that no kernel socket already serves a listen port — the
 * nftables rule would hide every packet from it, silently breaking that server.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { networkInterfaces } from 'node:os';
import { formatEndpoint, type Endpoint } from '../endpoint.js';

/** Every listen address must be assigned here, to some interface (for anycast, `lo` will do). */
export function listenAddressProblem(listen: readonly Endpoint[]): string | null {
  const assigned = new Set<string>();
  for (const addresses of Object.values(networkInterfaces())) {
    for (const a of addresses ?? []) assigned.add(canonical(a.address));
  }
  for (const endpoint of listen) {
    if (!assigned.has(canonical(endpoint.address))) {
      const prefix = endpoint.family === 4 ? 32 : 128;
      return `listen address ${endpoint.address} is not on this host: add it (ip address add ${endpoint.address}/${prefix} dev <interface>) or correct --listen`;
    }
  }
  return null;
}

/** A kernel TCP socket listening on a listen port, at its address or the wildcard. */
export function kernelListenerProblem(listen: readonly Endpoint[]): string | null {
  const listeners = [...listeningSockets('/proc/net/tcp', 4), ...listeningSockets('/proc/net/tcp6', 6)];
  for (const endpoint of listen) {
    const clash = listeners.find(
      (l) => l.port === endpoint.port && (l.address === canonical(endpoint.address) || l.address === '0.0.0.0' || l.address === '::'),
    );
    if (clash !== undefined) {
      return (
        `a kernel socket already listens on ${formatEndpoint({ address: clash.address, port: clash.port })}, which --listen ${formatEndpoint(endpoint)} would hide from it: ` +
        `stop that server (ss -ltnp 'sport = :${endpoint.port}' shows it) or pick another --listen`
      );
    }
  }
  return null;
}

/** LISTEN sockets (state 0A) from /proc/net/tcp or tcp6. Addresses are 32-bit words in host order (little-endian here). */
function listeningSockets(file: string, family: 4 | 6): { address: string; port: number }[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return []; // no IPv6 in this kernel, say
  }
  return text
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter((fields) => fields[3] === '0A' && fields[1] !== undefined)
    .map((fields) => {
      const [hex, portHex] = fields[1]!.split(':') as [string, string];
      const bytes: number[] = [];
      for (let w = 0; w < hex.length; w += 8) {
        const word = parseInt(hex.slice(w, w + 8), 16);
        bytes.push(word & 0xff, (word >>> 8) & 0xff, (word >>> 16) & 0xff, word >>> 24);
      }
      const address =
        family === 4
          ? bytes.join('.')
          : canonical(Array.from({ length: 8 }, (_, i) => ((bytes[2 * i]! << 8) | bytes[2 * i + 1]!).toString(16)).join(':'));
      return { address, port: parseInt(portHex, 16) };
    });
}

/** One spelling per address (IPv6 compressed, lower case; IPv4-mapped IPv6 as IPv4). */
function canonical(address: string): string {
  if (!net.isIPv6(address)) return address;
  const socketAddress = new net.SocketAddress({ address, family: 'ipv6' });
  const text = socketAddress.address;
  return text.startsWith('::ffff:') && net.isIPv4(text.slice(7)) ? text.slice(7) : text;
}
