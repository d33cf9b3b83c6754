/**
 * The lab's network: two throw-away network namespaces, `client` and `server`, joined by a veth
 * pair — or, for an impaired link, a third namespace between them joined to each by its own veth
 * pair (impaired-link.ts forwards between those). Addresses and interface names are the same
 * either way.
 *
 *   client ns                               server ns
 *   clientInterface ─────── veth ─────── serverInterface
 *   198.18.0.1/24, 2001:2::1/64             198.18.0.2/24, 2001:2::2/64
 *
 *   client ns ── veth ── wire ns ── veth ── server ns          (with an impaired link)
 *
 *   server ns ── veth ── resolver ns                            (with a remote resolver)
 *
 *   client ns ── veth ── router ns ── veth ── server ns        (with a router)
 *   198.18.2.1/24           .2.254 | .0.254          198.18.0.2/24
 *   2001:2:0:2::1/64   2001:2:0:2::fe | 2001:2::fe   2001:2::2/64
 *   The router's end toward the client has its own MTU (`routerMtuTowardClient`): a smaller
 *   link in the path, for which the router's kernel sends real ICMP "fragmentation needed" /
 *   "packet too big" back to the server.
 *   serverToResolverInterface            resolverInterface
 *   198.18.1.2/24, 2001:2:0:1::2/64      198.18.1.1/24, 2001:2:0:1::1/64
 *
 * Addresses come only from the benchmarking ranges 198.18.0.0/15 (RFC 2544) and 2001:2::/48
 * (RFC 5180). The root namespace's network is never touched: each veth pair is created inside one
 * namespace with its peer placed straight into the other.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { LabOffloads } from './lab.js';
import { killPids, messageOf, runChecked, runCommand, waitUntil } from './processes.js';

export const LAB_ADDRESSES = {
  clientV4: '198.18.0.1',
  serverV4: '198.18.0.2',
  clientV6: '2001:2::1',
  serverV6: '2001:2::2',
  /** The server's end of the link to the resolver's namespace, and the resolver's (option `remoteResolver`). */
  serverToResolverV4: '198.18.1.2',
  resolverV4: '198.18.1.1',
  serverToResolverV6: '2001:2:0:1::2',
  resolverV6: '2001:2:0:1::1',
  /** With a router: the client's subnet, and the router's ends on it and on the server's. */
  routedClientV4: '198.18.2.1',
  routedClientV6: '2001:2:0:2::1',
  routerTowardClientV4: '198.18.2.254',
  routerTowardClientV6: '2001:2:0:2::fe',
  routerTowardServerV4: '198.18.0.254',
  routerTowardServerV6: '2001:2::fe',
  v4PrefixLength: 24,
  v6PrefixLength: 64,
} as const;

/** How setup runs its commands: each refused once the lab has begun closing (e.g. on SIGINT mid-setup). */
export interface SetupSteps {
  step(argv: readonly string[], what: string, input?: string): Promise<void>;
  /** Throws once the lab is closing, which ends a wait in progress. */
  assertOpen(): void;
}

const LINK_READY_TIMEOUT_MS = 5_000;

let networkCounter = 0;

export class LabNetwork {
  /** `<pid>-<counter>`: in every name this lab creates, so they are unique across processes and labs. */
  readonly tag: string;
  readonly clientNamespace: string;
  readonly serverNamespace: string;
  /** The namespace of the impaired link, else null. */
  readonly wireNamespace: string | null;
  /** The namespace of a remote resolver, else null. */
  readonly resolverNamespace: string | null;
  /** The namespace of the router between client and server, else null. */
  readonly routerNamespace: string | null;
  readonly clientInterface: string;
  readonly serverInterface: string;
  /** The server's end of its link to the resolver's namespace, and the resolver's end (a remote resolver only). */
  readonly serverToResolverInterface: string;
  readonly resolverInterface: string;
  /** Namespaces that exist now; only these are deleted. */
  private readonly namespaces: string[] = [];

  constructor(
    readonly mtu: number,
    readonly offloads: LabOffloads,
    withImpairedLink: boolean,
    withRemoteResolver: boolean,
    /** With a router between client and server: the MTU of its end toward the client; else null. */
    readonly routerMtuTowardClient: number | null = null,
  ) {
    // A namespace left by a killed process whose pid has been reused is skipped, not clobbered.
    let tag: string;
    do tag = `${process.pid}-${++networkCounter}`;
    while (['c', 's', 'w', 'r', 'g'].some((side) => existsSync(`/run/netns/stcp-${side}-${tag}`)));
    this.tag = tag;
    this.clientNamespace = `stcp-c-${tag}`;
    this.serverNamespace = `stcp-s-${tag}`;
    this.wireNamespace = withImpairedLink ? `stcp-w-${tag}` : null;
    this.resolverNamespace = withRemoteResolver ? `stcp-r-${tag}` : null;
    this.routerNamespace = routerMtuTowardClient !== null ? `stcp-g-${tag}` : null;
    // At most 2 + 7 (pid_max 4194304) + 1 + 5 = 15 bytes, the interface name limit (IFNAMSIZ - 1).
    this.clientInterface = `vc${tag}`;
    this.serverInterface = `vs${tag}`;
    this.serverToResolverInterface = `vu${tag}`;
    this.resolverInterface = `vr${tag}`;
    if (this.serverInterface.length > 15) throw new Error(`interface name ${this.serverInterface} is longer than 15 bytes`);
  }

  /** The ends facing client and server in the wire namespace (same length as the client's and server's names). */
  get wireInterfaces(): { towardClient: string; towardServer: string } {
    return { towardClient: `wc${this.tag}`, towardServer: `ws${this.tag}` };
  }

  /** The router's ends toward client and server (same length as the client's and server's names). */
  get routerInterfaces(): { towardClient: string; towardServer: string } {
    return { towardClient: `gc${this.tag}`, towardServer: `gs${this.tag}` };
  }

  /** The client's addresses: its own subnet behind the router, if there is one. */
  get clientAddresses(): { v4: string; v6: string } {
    return this.routerNamespace === null
      ? { v4: LAB_ADDRESSES.clientV4, v6: LAB_ADDRESSES.clientV6 }
      : { v4: LAB_ADDRESSES.routedClientV4, v6: LAB_ADDRESSES.routedClientV6 };
  }

  /** Namespaces, veth pairs, addresses; resolves once both ends are up with usable addresses. */
  async build(setup: SetupSteps): Promise<void> {
    const optional = [this.wireNamespace, this.resolverNamespace, this.routerNamespace].filter((ns) => ns !== null);
    for (const ns of [this.clientNamespace, this.serverNamespace, ...optional]) {
      await setup.step(['ip', 'netns', 'add', ns], 'create namespace');
      this.namespaces.push(ns);
    }
    if (this.routerNamespace !== null) {
      await this.createRouter(setup, this.routerNamespace);
    } else if (this.wireNamespace === null) {
      await vethPair(setup, this.clientNamespace, this.clientInterface, this.serverInterface, this.serverNamespace, 'create veth pair');
    } else {
      await this.createWireLinks(setup, this.wireNamespace);
    }
    // The wire's forwarder (impaired-link.ts) passes frames one by one: it needs wire-sized frames
    // with full checksums from the client, so with a wire only the server's end is left at the
    // kernel's defaults.
    const clientDefaults = this.offloads === 'kernel-defaults' && this.wireNamespace === null;
    const client = this.clientAddresses;
    await this.configureEnd(setup, this.clientNamespace, this.clientInterface, client.v4, client.v6, clientDefaults);
    await this.configureEnd(
      setup,
      this.serverNamespace,
      this.serverInterface,
      LAB_ADDRESSES.serverV4,
      LAB_ADDRESSES.serverV6,
      this.offloads === 'kernel-defaults',
    );
    if (this.offloads === 'kernel-defaults') {
      // veth has GRO off by default; a NIC or virtio-net has it on: coalesced frames reach the capture.
      await setup.step(['ip', 'netns', 'exec', this.serverNamespace, 'ethtool', '-K', this.serverInterface, 'gro', 'on'], 'turn GRO on');
    }
    if (this.resolverNamespace !== null) {
      const { serverNamespace, serverToResolverInterface, resolverInterface, resolverNamespace } = this;
      await vethPair(setup, serverNamespace, serverToResolverInterface, resolverInterface, resolverNamespace, 'create resolver veth pair');
      await this.configureEnd(
        setup,
        serverNamespace,
        serverToResolverInterface,
        LAB_ADDRESSES.serverToResolverV4,
        LAB_ADDRESSES.serverToResolverV6,
        false,
      );
      await this.configureEnd(setup, resolverNamespace, resolverInterface, LAB_ADDRESSES.resolverV4, LAB_ADDRESSES.resolverV6, false);
    }
    if (this.routerNamespace !== null) await this.routeThroughRouter(setup);
    await this.waitForLinks(setup);
  }

  /**
   * The router's namespace between client and server: forwarding on, its end toward the client at
   * `routerMtuTowardClient`, and no rate limit on the ICMP errors it sends (Linux limits them per
   * destination: icmp_ratelimit, 1 s; a test sends a few in a burst).
   */
  private async createRouter(setup: SetupSteps, routerNs: string): Promise<void> {
    const { towardClient, towardServer } = this.routerInterfaces;
    await setup.step(
      [
        'ip',
        'netns',
        'exec',
        routerNs,
        'sysctl',
        '-q',
        '-w',
        'net.ipv4.ip_forward=1',
        'net.ipv6.conf.all.forwarding=1',
        'net.ipv4.icmp_ratelimit=0',
        'net.ipv6.icmp.ratelimit=0',
      ],
      'make the namespace a router',
    );
    await vethPair(setup, this.clientNamespace, this.clientInterface, towardClient, routerNs, 'create client-router veth pair');
    await vethPair(setup, this.serverNamespace, this.serverInterface, towardServer, routerNs, 'create router-server veth pair');
    await this.configureEnd(setup, routerNs, towardClient, LAB_ADDRESSES.routerTowardClientV4, LAB_ADDRESSES.routerTowardClientV6, false);
    await this.configureEnd(setup, routerNs, towardServer, LAB_ADDRESSES.routerTowardServerV4, LAB_ADDRESSES.routerTowardServerV6, false);
    await setup.step(
      ['ip', '-n', routerNs, 'link', 'set', towardClient, 'mtu', String(this.routerMtuTowardClient)],
      'narrow the link toward the client',
    );
  }

  /** Client and server reach each other's subnets through the router. */
  private async routeThroughRouter(setup: SetupSteps): Promise<void> {
    const routes: Array<[string, string]> = [
      [this.clientNamespace, `route add default via ${LAB_ADDRESSES.routerTowardClientV4}`],
      [this.clientNamespace, `-6 route add default via ${LAB_ADDRESSES.routerTowardClientV6}`],
      [this.serverNamespace, `route add 198.18.2.0/24 via ${LAB_ADDRESSES.routerTowardServerV4}`],
      [this.serverNamespace, `-6 route add 2001:2:0:2::/64 via ${LAB_ADDRESSES.routerTowardServerV6}`],
    ];
    for (const [ns, route] of routes) await setup.step(['ip', '-n', ns, ...route.split(' ')], `add a route in ${ns}`);
  }

  /** The MAC address of `device` in `ns`. */
  async macAddress(ns: string, device: string): Promise<string> {
    const shown = await runCommand(['ip', '-n', ns, '-j', 'link', 'show', 'dev', device]);
    const [link] = JSON.parse(shown.stdout || '[]') as Array<{ address?: string }>;
    if (link?.address === undefined) throw new Error(`lab: no MAC address for ${device}: ${shown.stderr.trim()}`);
    return link.address;
  }

  /**
   * Kills whatever still runs in the namespaces (also processes someone else started there, e.g.
   * with plain `ip netns exec`) and deletes them. Best effort through every namespace; returns
   * what failed.
   */
  async remove(): Promise<string[]> {
    const failures: string[] = [];
    for (const ns of this.namespaces) {
      try {
        killPids((await runCommand(['ip', 'netns', 'pids', ns])).stdout);
      } catch (error) {
        failures.push(`kill processes in ${ns}: ${messageOf(error)}`);
      }
      try {
        await runChecked(['ip', 'netns', 'del', ns], 'delete namespace');
      } catch (error) {
        failures.push(`delete namespace ${ns}: ${messageOf(error)}`);
      }
    }
    this.namespaces.length = 0;
    return failures;
  }

  /** `remove` for the 'exit' path: only synchronous calls work there. */
  removeSync(): void {
    const bestEffort = (action: () => void): void => {
      try {
        action();
      } catch {
        // Nothing more can be done while exiting; carry on with the rest.
      }
    };
    for (const ns of this.namespaces) {
      bestEffort(() => killPids(execFileSync('ip', ['netns', 'pids', ns], { timeout: 2_000, encoding: 'utf8' })));
      bestEffort(() => execFileSync('ip', ['netns', 'del', ns], { timeout: 2_000, stdio: 'ignore' }));
    }
  }

  /**
   * Two veth pairs, client ↔ wire and wire ↔ server. The wire namespace gets no addresses and no
   * IPv6 (so its kernel sends nothing of its own: no neighbour discovery, no router solicitations).
   */
  private async createWireLinks(setup: SetupSteps, wireNs: string): Promise<void> {
    const { towardClient, towardServer } = this.wireInterfaces;
    await setup.step(
      ['ip', 'netns', 'exec', wireNs, 'sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1'],
      'disable IPv6 on the wire',
    );
    await vethPair(setup, this.clientNamespace, this.clientInterface, towardClient, wireNs, 'create client-wire veth pair');
    await vethPair(setup, this.serverNamespace, this.serverInterface, towardServer, wireNs, 'create wire-server veth pair');
    for (const device of [towardClient, towardServer]) {
      await setup.step(['ip', 'netns', 'exec', wireNs, 'ethtool', '-K', device, 'tx', 'off', 'rx', 'off'], 'disable checksum offload');
      await setup.step(['ip', '-n', wireNs, 'link', 'set', device, 'mtu', String(this.mtu), 'up'], `bring up ${device}`);
    }
  }

  /**
   * Offloads off, loopback up, MTU and addresses, then the veth end up. veth hands packets to its
   * peer without ever computing checksums: with tx checksum offload on, the kernel leaves TCP/UDP
   * checksums CHECKSUM_PARTIAL (only the pseudo-header sum filled in) and AF_PACKET captures show
   * them that way. `tx off` makes the stack compute full checksums in software — the front end
   * verifies the checksums of what it captures — and `rx off` makes the receiving stack verify them
   * rather than trust the peer. With tx checksumming off the kernel also turns TSO off, so GSO
   * segments in software before packet taps see anything: captures hold wire-sized segments. (Seen
   * on a 20 KB TCP transfer: offload on, tcpdump shows 7240-byte segments, every checksum
   * "incorrect"; off, 1448-byte segments, every checksum correct.)
   * With `kernelDefaults` (the lab option `offloads: 'kernel-defaults'`) the offloads stay as the
   * kernel set them, and captures show exactly that: partial checksums and TSO frames.
   * IPv6 addresses are `nodad`: no second of Duplicate Address Detection before they can be used.
   */
  private async configureEnd(
    setup: SetupSteps,
    ns: string,
    device: string,
    v4: string,
    v6: string,
    kernelDefaults: boolean,
  ): Promise<void> {
    if (!kernelDefaults) {
      await setup.step(['ip', 'netns', 'exec', ns, 'ethtool', '-K', device, 'tx', 'off', 'rx', 'off'], 'disable checksum offload');
    }
    const batch = [
      'link set lo up',
      `link set ${device} mtu ${this.mtu}`,
      `addr add ${v4}/${LAB_ADDRESSES.v4PrefixLength} dev ${device}`,
      `addr add ${v6}/${LAB_ADDRESSES.v6PrefixLength} dev ${device} nodad`,
      `link set ${device} up`,
    ];
    await setup.step(['ip', '-n', ns, '-batch', '-'], `configure ${device}`, `${batch.join('\n')}\n`);
  }

  /**
   * Both ends report operstate UP (the kernel propagates carrier asynchronously, via linkwatch) and
   * have a global IPv6 address that is neither tentative nor failed DAD — with `nodad` that holds at
   * once; the check catches a DAD that would otherwise silently delay IPv6 traffic. (The link-local
   * fe80:: addresses still run DAD for a moment; traffic between the global addresses does not need them.)
   */
  private async waitForLinks(setup: SetupSteps): Promise<void> {
    const ends: Array<[string, string]> = [
      [this.clientNamespace, this.clientInterface],
      [this.serverNamespace, this.serverInterface],
    ];
    if (this.resolverNamespace !== null) {
      ends.push([this.serverNamespace, this.serverToResolverInterface], [this.resolverNamespace, this.resolverInterface]);
    }
    if (this.routerNamespace !== null) {
      const { towardClient, towardServer } = this.routerInterfaces;
      ends.push([this.routerNamespace, towardClient], [this.routerNamespace, towardServer]);
    }
    await waitUntil(`veth links up with usable addresses`, LINK_READY_TIMEOUT_MS, async () => {
      setup.assertOpen();
      for (const [ns, device] of ends) {
        const shown = await runCommand(['ip', '-n', ns, '-j', 'addr', 'show', 'dev', device]);
        if (shown.code !== 0) return false;
        const [link] = JSON.parse(shown.stdout) as Array<{ operstate: string; addr_info: Array<Record<string, unknown>> }>;
        const ready =
          link !== undefined &&
          link.operstate === 'UP' &&
          link.addr_info.some((a) => a.family === 'inet6' && a.scope === 'global' && a.tentative !== true && a.dadfailed !== true);
        if (!ready) return false;
      }
      return true;
    });
  }
}

/** A veth pair: `name` in namespace `namespace`, its peer `peerName` in `peerNamespace`. */
function vethPair(
  setup: SetupSteps,
  namespace: string,
  name: string,
  peerName: string,
  peerNamespace: string,
  what: string,
): Promise<void> {
  return setup.step(['ip', '-n', namespace, 'link', 'add', name, 'type', 'veth', 'peer', 'name', peerName, 'netns', peerNamespace], what);
}
