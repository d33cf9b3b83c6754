/**
 * The programs the lab and its users run, and the check that they can: root (network namespaces
 * need CAP_NET_ADMIN) and each tool on PATH, or a one-line message naming the Debian package.
 */
import { accessSync, constants as fsConstants } from 'node:fs';
import { delimiter, join } from 'node:path';

/** Which Debian package provides each tool the lab or its users need. */
const TOOL_PACKAGES: Readonly<Record<string, string>> = {
  ip: 'iproute2',
  ethtool: 'ethtool',
  unbound: 'unbound',
  'unbound-checkconf': 'unbound',
  dig: 'bind9-dnsutils',
  kdig: 'knot-dnsutils',
  ping: 'iputils-ping',
  tcpdump: 'tcpdump',
  nft: 'nftables',
  dnsperf: 'dnsperf',
  nginx: 'nginx-light',
  curl: 'curl',
  wrk: 'wrk',
  hping3: 'hping3',
};

/**
 * Throws an Error with a one-line message naming the fix unless running as root with every tool on
 * PATH. createLab checks its own needs; tests call this for the tools they use themselves.
 */
export function requireTools(...tools: string[]): void {
  if (process.getuid?.() !== 0) {
    throw new Error('lab needs root: run as root (network namespaces need CAP_NET_ADMIN)');
  }
  for (const tool of tools) {
    if (findOnPath(tool) === null) {
      throw new Error(`${tool} not found: apt-get install ${TOOL_PACKAGES[tool] ?? tool}`);
    }
  }
}

function findOnPath(tool: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    try {
      accessSync(join(dir, tool), fsConstants.X_OK);
      return join(dir, tool);
    } catch {
      // Not in this directory.
    }
  }
  return null;
}
