/**
 * Start-up checks of the host, each a one-line problem naming the fix (or null): that the listen
 * addresses are this host's, that no kernel socket already serves a listen port — the
 * nftables rule would hide every packet from it, silently breaking that server — and that the
 * capture interface delivers no frames the front end cannot take (`offloadProblem`).
 */
import { execFileSync } from 'node:child_process';
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

/**
 * What the capture interface's receive offloads would deliver that the front end cannot take
 * (docs/operations.md, "Offloads"). GRO, and TSO/GSO frames from senders on this host, it takes:
 * checksums left to offload are recognized, frames up to 64 KiB captured whole and cut into
 * segments. Two things it cannot:
 *   - LRO (`lro` is whether it is on): the NIC merges segments and marks the result verified, but
 *     the TCP checksum field is not one the merged frame satisfies, so with checksums verified
 *     every merged frame would be dropped as `decode.bad_tcp_checksum`. GRO does the same merging
 *     in the kernel and leaves a checksum the front end recognizes.
 *   - BIG TCP GRO (`groMaxSizes`, the interface's gro_max_size and gro_ipv4_max_size): frames
 *     beyond 64 KiB, longer than the capture keeps (IPv4 ones with total length 0), would be
 *     dropped as `decode.truncated`.
 */
export function offloadProblem(
  device: string,
  verifyChecksums: boolean,
  lro: boolean | null,
  groMaxSizes: readonly GroMaxSize[],
): string | null {
  if (lro === true && verifyChecksums) {
    return `large receive offload (LRO) is on at ${device}; its merged frames carry TCP checksums that cannot be verified: turn it off (ethtool -K ${device} lro off; GRO does the same merging and is handled) or run with --checksums ignore`;
  }
  const over = groMaxSizes.filter((setting) => setting.bytes > MAX_GRO_SIZE);
  if (over.length > 0) {
    const largest = Math.max(...over.map((setting) => setting.bytes));
    const fix = over.map((setting) => `${setting.name} ${MAX_GRO_SIZE}`).join(' ');
    return `${device} coalesces received frames up to ${largest} bytes (BIG TCP GRO), more than the capture keeps (${MAX_GRO_SIZE}): ip link set dev ${device} ${fix}`;
  }
  return null;
}

/** One of an interface's GRO size limits: `gro_max_size` (IPv6, and IPv4 on older kernels) or `gro_ipv4_max_size`. */
export interface GroMaxSize {
  name: 'gro_max_size' | 'gro_ipv4_max_size';
  bytes: number;
}

/** The largest frame GRO makes without BIG TCP (GRO_LEGACY_MAX_SIZE). */
const MAX_GRO_SIZE = 65536;

/**
 * `device`'s gro_max_size and gro_ipv4_max_size as `ip -details link show` reports them (those
 * it reports: older kernels and iproute2 have neither or only the first); none when `ip` fails.
 */
export function groMaxSizes(device: string): GroMaxSize[] {
  try {
    const shown = execFileSync('ip', ['-json', '-details', 'link', 'show', 'dev', device], {
      encoding: 'utf8',
      timeout: 5_000,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const [link] = JSON.parse(shown) as Array<Record<string, unknown>>;
    const sizes: GroMaxSize[] = [];
    for (const name of ['gro_max_size', 'gro_ipv4_max_size'] as const) {
      const bytes = link?.[name];
      if (typeof bytes === 'number') sizes.push({ name, bytes });
    }
    return sizes;
  } catch {
    return [];
  }
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
