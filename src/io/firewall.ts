/**
 * Keeps the kernel's own TCP from answering on our listen endpoints.
 *
 * libpcap only copies packets: the kernel still sees each SYN to a port no socket listens on and
 * answers RST (RFC 9293 §3.10.7.1), which would kill the connection we are answering. As masscan
 * does, we drop those packets in netfilter; AF_PACKET taps see them before netfilter, so capture
 * is unaffected. The rule sits in prerouting at raw priority (-300), ahead of connection
 * tracking, so these packets also cost no conntrack entry.
 */
import { execFileSync } from 'node:child_process';
import type { Endpoint } from '../endpoint.js';

export class KernelTcpGuard {
  private installed = false;
  readonly table: string;

  constructor(private readonly endpoints: readonly Endpoint[]) {
    this.table = `stateless_tcp_${process.pid}`;
  }

  /** Installs the drop rules; throws an Error with a one-line message naming the fix. */
  install(): void {
    const rules = this.endpoints.map((e) => `    ${e.family === 6 ? 'ip6' : 'ip'} daddr ${e.address} tcp dport ${e.port} drop`).join('\n');
    const script = [
      `table inet ${this.table} {`,
      '  chain prerouting {',
      '    type filter hook prerouting priority raw; policy accept;',
      rules,
      '  }',
      '}',
      '',
    ].join('\n');
    runNft(['-f', '-'], script);
    this.installed = true;
  }

  /** Removes the rules; safe to call more than once, and from a process 'exit' handler. */
  remove(): void {
    if (!this.installed) return;
    this.installed = false;
    try {
      runNft(['delete', 'table', 'inet', this.table]);
    } catch {
      // Already gone (e.g. removed by an operator); nothing else to undo.
    }
  }
}

function runNft(args: string[], input?: string): void {
  try {
    execFileSync('nft', args, { input, stdio: ['pipe', 'ignore', 'pipe'], timeout: 10_000 });
  } catch (error) {
    const e = error as NodeJS.ErrnoException & { stderr?: Buffer };
    if (e.code === 'ENOENT') throw new Error('nft not found: install nftables (apt-get install nftables)');
    const detail = (e.stderr?.toString() ?? e.message).trim().split('\n')[0];
    if (/Operation not permitted/i.test(detail ?? '')) {
      throw new Error('cannot install nftables rules: run as root (needs CAP_NET_ADMIN)');
    }
    throw new Error(`nft ${args.join(' ')} failed: ${detail}`);
  }
}
