/**
 * The lab: two throw-away network namespaces, `client` and `server`, joined by a veth pair
 * (network.ts), with an unbound resolver on the server's loopback serving the small static zone
 * `lab.test.` (unbound.ts, zone.ts). Integration tests, the demo and benchmarks run stateless-tcp
 * in the server namespace (stateless-tcp.ts: capturing on `serverInterface`, relaying to
 * `upstream`) and clients in the client namespace.
 *
 *   client ns                               server ns
 *   clientInterface ─────── veth ─────── serverInterface
 *   198.18.0.1/24, 2001:2::1/64             198.18.0.2/24, 2001:2::2/64
 *                                           lo: unbound on 127.0.0.1@5300 and [::1]@5300
 *
 * With the `wire` option a third namespace sits between them (client ↔ wire ↔ server, two veth
 * pairs): a userspace forwarder there (impaired-link.ts) loses, duplicates, delays and reorders
 * TCP as netem would, since this kernel has no netem. Addresses and interface names stay the same.
 * With `remoteResolver`, unbound runs in a namespace of its own behind the server (server ↔
 * resolver, a second veth pair; 198.18.1.1@5300): a resolver on another host, whose traffic
 * leaves the server's loopback. With `router`, a forwarding namespace sits between client and
 * server, the client in a subnet of its own (198.18.2.1, 2001:2:0:2::1) and the router's link
 * toward it narrower than the rest (`mtuTowardClient`): a path whose MTU only the router knows,
 * which it tells the server with real ICMP too-big messages (path MTU discovery tests).
 *
 * This module puts those parts together behind one handle, `Lab`, and owns their lifetime:
 * everything a lab creates (namespaces, child processes, its temp dir) is removed by `close()`,
 * and also, synchronously, when the process exits for any reason, and on SIGINT/SIGTERM
 * (cleanup-on-exit.ts).
 */
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closeOnExit, forgetOnExit } from './cleanup-on-exit.js';
import { ImpairedLink, type WireImpairment, type WireStats } from './impaired-link.js';
import { LAB_ADDRESSES, LabNetwork, type SetupSteps } from './network.js';
import { type ExecOptions, type ExecResult, type SpawnOptions, SpawnedProcesses, messageOf, runChecked, runCommand } from './processes.js';
import { requireTools } from './tools.js';
import { LAB_UPSTREAM, REMOTE_UPSTREAM, type UpstreamEndpoints, startUnbound } from './unbound.js';

/** The namespaces commands run in; 'resolver' only with the option `remoteResolver`, 'router' with `router`. */
export type Side = 'client' | 'server' | 'resolver' | 'router';

/**
 * The veth ends' offloads: 'off' turns checksum offload (and with it TSO) off on both ends, so
 * captures hold wire-sized segments with full checksums; 'kernel-defaults' leaves the kernel's
 * defaults (tx checksumming, TSO, GSO) and turns GRO on at the server's end, as on a host whose
 * clients are local VMs or containers and whose NIC coalesces: the server captures segments whose
 * checksum was left to offload and frames of several segments (docs/operations.md, "Offloads").
 */
export type LabOffloads = 'off' | 'kernel-defaults';
const LAB_OFFLOADS: readonly LabOffloads[] = ['off', 'kernel-defaults'];

/**
 * The offloads a lab gets when its options name none: STATELESS_TCP_LAB_OFFLOADS, so that every
 * lab suite can be run at the kernel's defaults without a copy of its tests, else 'off'.
 */
export function defaultLabOffloads(environment: NodeJS.ProcessEnv = process.env): LabOffloads {
  const value = environment.STATELESS_TCP_LAB_OFFLOADS;
  if (value === undefined || value === '') return 'off';
  if (!(LAB_OFFLOADS as readonly string[]).includes(value)) {
    throw new Error(`STATELESS_TCP_LAB_OFFLOADS must be ${LAB_OFFLOADS.join(' or ')}, not "${value}"`);
  }
  return value as LabOffloads;
}

export interface LabOptions {
  /** MTU of both veth ends (default 1500; at least 1280, the IPv6 minimum). */
  mtu?: number;
  /** The veth ends' offloads (default: `defaultLabOffloads()`). */
  offloads?: LabOffloads;
  /** Start unbound in the server namespace (default true). Without it `upstream` is free for a test's own resolver. */
  unbound?: boolean;
  /** Extra lines for unbound's `server:` clause, e.g. `num-threads: 4` for benchmarks (later lines override). */
  unboundServerConfig?: readonly string[];
  /**
   * Put an impairing wire between client and server (the kernel has no netem; see
   * impaired-link.ts): a third namespace whose two veth ends face the client and the server, and
   * a process there that forwards frames, dropping, duplicating, delaying and reordering TCP as
   * netem would. Both directions, invisible to both ends.
   */
  wire?: WireImpairment;
  /**
   * Run unbound in a namespace of its own, reached from the server over a second veth pair
   * (`upstream` is then 198.18.1.1@5300 and [2001:2:0:1::1]@5300), rather than on the server's
   * loopback: a resolver on another host.
   */
  remoteResolver?: boolean;
  /**
   * Put a router between client and server (network.ts): a namespace forwarding between the
   * client's subnet (198.18.2.0/24, 2001:2:0:2::/64; `clientV4`/`clientV6` follow) and the
   * server's, whose end toward the client has MTU `mtuTowardClient` — a narrower link in the path,
   * for which it sends real ICMP "fragmentation needed" / "packet too big" to the server.
   */
  router?: { mtuTowardClient: number };
}

export interface Lab {
  readonly clientNamespace: string;
  readonly serverNamespace: string;
  /** The namespace of the impairing wire (option `wire`), else null. */
  readonly wireNamespace: string | null;
  /** The resolver's own namespace (option `remoteResolver`), else null. */
  readonly resolverNamespace: string | null;
  /** The router's namespace (option `router`), else null. */
  readonly routerNamespace: string | null;
  /** The resolver's end of its link to the server (option `remoteResolver`), else null. */
  readonly resolverInterface: string | null;
  readonly clientInterface: string;
  readonly serverInterface: string;
  readonly clientV4: string;
  readonly serverV4: string;
  readonly clientV6: string;
  readonly serverV6: string;
  readonly mtu: number;
  readonly offloads: LabOffloads;
  /** The resolver's addresses as the server reaches them (served by `unbound` unless disabled). */
  readonly upstream: UpstreamEndpoints;
  /** The unbound process, or null with `unbound: false`. */
  readonly unbound: ChildProcess | null;
  /** Private temp dir (unbound.conf, unbound.pid); removed on close. */
  readonly tempDir: string;
  /** Runs argv in a namespace (`ip netns exec NS …`), always bounded by a timeout. */
  exec(where: Side, argv: readonly string[], options?: ExecOptions): Promise<ExecResult>;
  /** Starts a long-running process in a namespace; its stdout/stderr are pipes, and close() stops it. */
  spawn(where: Side, argv: readonly string[], options?: SpawnOptions): ChildProcess;
  /**
   * Resolves with the first line of `child`'s stdout or stderr (including lines already printed)
   * that matches; rejects when `timeoutMs` (default 5 s) passes or the process exits first.
   */
  waitForLine(child: ChildProcess, pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  /** SIGTERM, then SIGKILL if it has not exited after `timeoutMs` (default 3 s); resolves once it has exited. */
  stop(child: ChildProcess, timeoutMs?: number): Promise<void>;
  /** The impairing wire's counters so far, per direction (option `wire` only). */
  wireStats(): Promise<WireStats>;
  /** Stops every process, deletes the namespaces and the temp dir. Idempotent. */
  close(): Promise<void>;
}

/** Builds a lab; on any failure, removes whatever it had created before rethrowing. */
export async function createLab(options: LabOptions = {}): Promise<Lab> {
  const mtu = options.mtu ?? 1500;
  if (!Number.isInteger(mtu) || mtu < 1280 || mtu > 65535) {
    throw new Error(`lab mtu must be an integer 1280-65535 (IPv6 needs 1280), not ${mtu}`);
  }
  const withUnbound = options.unbound ?? true;
  requireTools('ip', 'ethtool', ...(withUnbound ? ['unbound', 'dig'] : []));

  if (options.router !== undefined && options.wire !== undefined) throw new Error('a lab has a router or an impairing wire, not both');
  const offloads = options.offloads ?? defaultLabOffloads();
  const lab = new NetworkLab(mtu, offloads, options.wire ?? null, options.remoteResolver ?? false, options.router?.mtuTowardClient ?? null);
  try {
    await lab.setUp(withUnbound, options.unboundServerConfig ?? []);
  } catch (setupError) {
    try {
      await lab.close();
    } catch (cleanupError) {
      throw new AggregateError([setupError, cleanupError], `lab setup failed and cleanup was incomplete: ${messageOf(setupError)}`);
    }
    throw setupError;
  }
  return lab;
}

class NetworkLab implements Lab {
  readonly serverV4 = LAB_ADDRESSES.serverV4;
  readonly serverV6 = LAB_ADDRESSES.serverV6;
  readonly upstream: UpstreamEndpoints;
  unbound: ChildProcess | null = null;
  tempDir = '';

  private readonly network: LabNetwork;
  private readonly processes = new SpawnedProcesses();
  private impairedLink: ImpairedLink | null = null;
  private closing: Promise<void> | null = null;
  /** Set while setUp runs, so that a close() arriving mid-setup (a signal) waits for the command in flight. */
  private settingUp: Promise<void> | null = null;
  /** Setup's commands, refused once closing has begun, so a signal mid-setup stops further creation. */
  private readonly setupSteps: SetupSteps = {
    step: async (argv, what, input) => {
      this.assertOpen();
      await runChecked(argv, what, input);
    },
    assertOpen: () => this.assertOpen(),
  };

  constructor(
    readonly mtu: number,
    readonly offloads: LabOffloads,
    private readonly impairment: WireImpairment | null,
    remoteResolver: boolean,
    routerMtuTowardClient: number | null = null,
  ) {
    this.network = new LabNetwork(mtu, offloads, impairment !== null, remoteResolver, routerMtuTowardClient);
    this.upstream = remoteResolver ? REMOTE_UPSTREAM : LAB_UPSTREAM;
    closeOnExit(this);
  }

  get clientNamespace(): string {
    return this.network.clientNamespace;
  }
  get serverNamespace(): string {
    return this.network.serverNamespace;
  }
  get wireNamespace(): string | null {
    return this.network.wireNamespace;
  }
  get resolverNamespace(): string | null {
    return this.network.resolverNamespace;
  }
  get routerNamespace(): string | null {
    return this.network.routerNamespace;
  }
  get clientV4(): string {
    return this.network.clientAddresses.v4;
  }
  get clientV6(): string {
    return this.network.clientAddresses.v6;
  }
  get resolverInterface(): string | null {
    return this.network.resolverNamespace === null ? null : this.network.resolverInterface;
  }
  get clientInterface(): string {
    return this.network.clientInterface;
  }
  get serverInterface(): string {
    return this.network.serverInterface;
  }

  setUp(withUnbound: boolean, unboundServerConfig: readonly string[]): Promise<void> {
    this.settingUp = this.build(withUnbound, unboundServerConfig);
    return this.settingUp;
  }

  private async build(withUnbound: boolean, unboundServerConfig: readonly string[]): Promise<void> {
    this.tempDir = await mkdtemp(join(tmpdir(), `stcp-lab-${this.network.tag}-`));
    await this.network.build(this.setupSteps);
    const wireNs = this.network.wireNamespace;
    if (wireNs !== null) {
      this.impairedLink = await ImpairedLink.start(this.network, this.impairment!, {
        spawn: (argv) => this.spawnIn(wireNs, argv),
        waitForLine: (child, pattern, timeoutMs) => this.waitForLine(child, pattern, timeoutMs),
      });
    }
    if (withUnbound) {
      const where: Side = this.resolverNamespace === null ? 'server' : 'resolver';
      this.unbound = await startUnbound(
        {
          spawn: (argv) => this.spawn(where, argv),
          exec: (argv, options) => this.exec(where, argv, options),
          assertOpen: () => this.assertOpen(),
          recentOutput: (child) => this.processes.recentOutput(child),
        },
        this.tempDir,
        unboundServerConfig,
        this.upstream,
      );
    }
  }

  exec(where: Side, argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    return runCommand(['ip', 'netns', 'exec', this.namespaceOf(where), ...argv], options);
  }

  spawn(where: Side, argv: readonly string[], options: SpawnOptions = {}): ChildProcess {
    return this.spawnIn(this.namespaceOf(where), argv, options);
  }

  private spawnIn(ns: string, argv: readonly string[], options: SpawnOptions = {}): ChildProcess {
    this.assertOpen();
    // `ip netns exec` execs the command after entering the namespace: the child's pid is the command's.
    return this.processes.spawn(['ip', 'netns', 'exec', ns, ...argv], options);
  }

  waitForLine(child: ChildProcess, pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray> {
    return this.processes.waitForLine(child, pattern, timeoutMs);
  }

  stop(child: ChildProcess, timeoutMs?: number): Promise<void> {
    return this.processes.stop(child, timeoutMs);
  }

  wireStats(): Promise<WireStats> {
    if (this.impairedLink === null) return Promise.reject(new Error('wireStats: this lab has no wire (option `wire`)'));
    return this.impairedLink.stats();
  }

  close(): Promise<void> {
    this.closing ??= this.tearDown();
    return this.closing;
  }

  /** Best effort through every step; reports all that failed at the end. */
  private async tearDown(): Promise<void> {
    // Setup stops at its next step once closing has begun; let it get there, so that whatever its
    // command in flight creates is known (and deleted) below.
    await this.settingUp?.catch(() => {});
    const failures: string[] = [];
    await Promise.all(
      this.processes.running().map(async (child) => {
        try {
          await this.processes.stop(child);
        } catch (error) {
          failures.push(`stop pid ${child.pid}: ${messageOf(error)}`);
        }
      }),
    );
    failures.push(...(await this.network.remove()));
    if (this.tempDir !== '') {
      try {
        await rm(this.tempDir, { recursive: true, force: true });
      } catch (error) {
        failures.push(`remove ${this.tempDir}: ${messageOf(error)}`);
      }
    }
    forgetOnExit(this);
    if (failures.length > 0) throw new Error(`lab cleanup incomplete: ${failures.join('; ')}`);
  }

  /** The 'exit' path: only synchronous calls work here. SIGKILL, since nothing can wait. */
  closeSync(): void {
    this.processes.killAllSync();
    this.network.removeSync();
    if (this.tempDir !== '') rmSync(this.tempDir, { recursive: true, force: true });
  }

  /** Once closing has begun (e.g. on SIGINT mid-setup) nothing new may be created. */
  private assertOpen(): void {
    if (this.closing !== null) throw new Error('lab is closed');
  }

  private namespaceOf(where: Side): string {
    if (where === 'client') return this.clientNamespace;
    if (where === 'server') return this.serverNamespace;
    if (where === 'router') {
      if (this.routerNamespace === null) throw new Error('this lab has no router namespace (option `router`)');
      return this.routerNamespace;
    }
    if (this.resolverNamespace === null) throw new Error('this lab has no resolver namespace (option `remoteResolver`)');
    return this.resolverNamespace;
  }
}
