/**
 * The lab: two throw-away network namespaces, `client` and `server`, joined by a veth pair, with an
 * unbound resolver on the server's loopback serving the small static zone `lab.test.`. Integration
 * tests, the demo and benchmarks run the front end in the server namespace (capturing on
 * `serverInterface`, relaying to `upstream`) and DNS clients in the client namespace.
 *
 *   client ns                               server ns
 *   clientInterface ─────── veth ─────── serverInterface
 *   198.18.0.1/24, 2001:2::1/64             198.18.0.2/24, 2001:2::2/64
 *                                           lo: unbound on 127.0.0.1@5300 and [::1]@5300
 *
 * With the `wire` option a third namespace sits between them (client ↔ wire ↔ server, two veth
 * pairs): a userspace forwarder there (wire.ts) loses, duplicates, delays and reorders TCP as netem
 * would, since this kernel has no netem. Addresses and interface names stay the same.
 *
 * Addresses come only from the benchmarking ranges 198.18.0.0/15 (RFC 2544) and 2001:2::/48
 * (RFC 5180). The root namespace's network is never touched: the veth pair is created inside the
 * client namespace with its peer placed straight into the server namespace.
 *
 * Everything a lab creates (namespaces, child processes, its temp dir) is removed by `close()`, and
 * also, synchronously, when the process exits for any reason (the 'exit' event also fires after an
 * uncaught exception or unhandled rejection), and on SIGINT/SIGTERM (clean up, then exit 130/143).
 */
import { type ChildProcess, execFileSync, spawn as spawnProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, existsSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { constants as osConstants, tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { fileURLToPath } from 'node:url';
import type { WireImpairment, WireSpec, WireStats } from './wire.js';

// ---------------------------------------------------------------------------------------------
// Facts: addresses, upstream, zone
// ---------------------------------------------------------------------------------------------

export const LAB_ADDRESSES = {
  clientV4: '198.18.0.1',
  serverV4: '198.18.0.2',
  clientV6: '2001:2::1',
  serverV6: '2001:2::2',
  v4PrefixLength: 24,
  v6PrefixLength: 64,
} as const;

export interface UpstreamEndpoint {
  address: string;
  port: number;
}

/** Where the lab's unbound listens (UDP and TCP) inside the server namespace. */
export const LAB_UPSTREAM: { readonly v4: UpstreamEndpoint; readonly v6: UpstreamEndpoint } = {
  v4: { address: '127.0.0.1', port: 5300 },
  v6: { address: '::1', port: 5300 },
};

/** Length of every TXT string in the zone: one string per record, below the 255-byte limit. */
export const TXT_STRING_BYTES = 250;

export interface TxtRecordSet {
  /** Owner name, fully qualified. */
  name: string;
  /** The strings, one per TXT record, in the order unbound returns them (rrset-roundrobin: no). */
  strings: readonly string[];
  /** Sum of the string lengths. */
  textBytes: number;
  /**
   * Size of the whole response to a query for `name` TXT that carries an EDNS OPT record without
   * options (what dig sends; unbound 1.17 answers no cookie): header 12 + question (name + 4) +
   * per record (compressed owner 2 + type/class/ttl/rdlength 10 + string length byte 1 + string)
   * + OPT 11. Without EDNS in the query it is 11 bytes less.
   */
  responseBytes: number;
}

const FILLER = 'abcdefghijklmnopqrstuvwxyz0123456789';

/**
 * `count` TXT records of TXT_STRING_BYTES each: `<label>-<NN>-` then the filler alphabet starting
 * at offset NN, so every string differs and a misplaced or repeated byte range shows.
 */
function txtRecordSet(label: string, count: number): TxtRecordSet {
  const name = `${label}.lab.test.`;
  const strings: string[] = [];
  for (let i = 0; i < count; i++) {
    const prefix = `${label}-${String(i).padStart(2, '0')}-`;
    const filler = FILLER.slice(i % FILLER.length) + FILLER.repeat(Math.ceil(TXT_STRING_BYTES / FILLER.length));
    strings.push((prefix + filler).slice(0, TXT_STRING_BYTES));
  }
  const nameWireBytes = name.length + 1;
  return {
    name,
    strings,
    textBytes: count * TXT_STRING_BYTES,
    responseBytes: 12 + nameWireBytes + 4 + count * (2 + 10 + 1 + TXT_STRING_BYTES) + 11,
  };
}

/**
 * The zone unbound serves. `local-zone: "." static` makes every other name NXDOMAIN, so nothing
 * ever recurses; `lab.test.` itself is static too, so unknown names below it are NXDOMAIN as well.
 */
export const LAB_ZONE = {
  apex: 'lab.test.',
  ttl: 300,
  www: { name: 'www.lab.test.', a: '198.18.0.100', aaaa: '2001:2::100' },
  /** 1619-byte response: over UDP (limit 1232) TC=1; over TCP two segments at MSS 1220. */
  mid: txtRecordSet('mid', 6),
  /** 4249-byte response: over UDP TC=1; over TCP four segments at MSS 1220. */
  big: txtRecordSet('big', 16),
  /** A name in the zone that has no data: NXDOMAIN. */
  missing: 'missing.lab.test.',
} as const;

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

export type Side = 'client' | 'server';

export interface LabOptions {
  /** MTU of both veth ends (default 1500; at least 1280, the IPv6 minimum). */
  mtu?: number;
  /** Start unbound in the server namespace (default true). Without it `upstream` is free for a test's own resolver. */
  unbound?: boolean;
  /** Extra lines for unbound's `server:` clause, e.g. `num-threads: 4` for benchmarks (later lines override). */
  unboundServerConfig?: readonly string[];
  /**
   * Put an impairing wire between client and server (the kernel has no netem; see wire.ts): a
   * third namespace whose two veth ends face the client and the server, and a process there that
   * forwards frames, dropping, duplicating, delaying and reordering TCP as netem would. Both
   * directions, invisible to both ends.
   */
  wire?: WireImpairment;
}

export interface ExecOptions {
  /** Kill the command (SIGKILL) after this long; default 10 s. */
  timeoutMs?: number;
  /** Written to the command's stdin, which is then closed. */
  input?: string | Buffer;
}

export interface ExecResult {
  /** Exit status, or null when the command was ended by a signal (including the timeout's). */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface SpawnOptions {
  env?: NodeJS.ProcessEnv;
}

export interface Lab {
  readonly clientNamespace: string;
  readonly serverNamespace: string;
  /** The namespace of the impairing wire (option `wire`), else null. */
  readonly wireNamespace: string | null;
  readonly clientInterface: string;
  readonly serverInterface: string;
  readonly clientV4: string;
  readonly serverV4: string;
  readonly clientV6: string;
  readonly serverV6: string;
  readonly mtu: number;
  /** The resolver address inside the server namespace (served by `unbound` unless disabled). */
  readonly upstream: typeof LAB_UPSTREAM;
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

/** Builds a lab; on any failure, removes whatever it had created before rethrowing. */
export async function createLab(options: LabOptions = {}): Promise<Lab> {
  const mtu = options.mtu ?? 1500;
  if (!Number.isInteger(mtu) || mtu < 1280 || mtu > 65535) {
    throw new Error(`lab mtu must be an integer 1280-65535 (IPv6 needs 1280), not ${mtu}`);
  }
  const withUnbound = options.unbound ?? true;
  requireTools('ip', 'ethtool', ...(withUnbound ? ['unbound', 'dig'] : []));

  const lab = new NetworkLab(mtu, options.wire ?? null);
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

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

const DEFAULT_EXEC_TIMEOUT_MS = 10_000;
const LINK_READY_TIMEOUT_MS = 5_000;
const UNBOUND_READY_TIMEOUT_MS = 10_000;
const DEFAULT_STOP_TIMEOUT_MS = 3_000;
/** Lines of each spawned process's output kept for waitForLine and for error messages. */
const KEPT_OUTPUT_LINES = 1000;
/** The impairing wire's script, next to this file in dist/test/lab/. */
const WIRE_SCRIPT = fileURLToPath(new URL('./wire.js', import.meta.url));
const WIRE_READY_TIMEOUT_MS = 10_000;
/** The wire exits on its own after this long even if nobody stops it. */
const WIRE_MAX_LIFETIME_MS = 30 * 60_000;

let labCounter = 0;

/** Output kept per spawned process, and whoever waits for a line of it. */
interface OutputLog {
  lines: string[];
  waiters: Set<(line: string) => void>;
}

class NetworkLab implements Lab {
  readonly clientNamespace: string;
  readonly serverNamespace: string;
  readonly wireNamespace: string | null;
  readonly clientInterface: string;
  readonly serverInterface: string;
  readonly clientV4 = LAB_ADDRESSES.clientV4;
  readonly serverV4 = LAB_ADDRESSES.serverV4;
  readonly clientV6 = LAB_ADDRESSES.clientV6;
  readonly serverV6 = LAB_ADDRESSES.serverV6;
  readonly upstream = LAB_UPSTREAM;
  unbound: ChildProcess | null = null;
  tempDir = '';
  /** The impairing wire's process, and how many stats reports were asked of it. */
  private wire: ChildProcess | null = null;
  private wireReports = 0;

  /** Namespaces that exist now; only these are deleted. */
  private readonly namespaces: string[] = [];
  private readonly children = new Set<ChildProcess>();
  private readonly outputs = new WeakMap<ChildProcess, OutputLog>();
  private closing: Promise<void> | null = null;
  /** Set while setUp runs, so that a close() arriving mid-setup (a signal) waits for the command in flight. */
  private settingUp: Promise<void> | null = null;

  /** `<pid>-<counter>`: in every name this lab creates, so they are unique across processes and labs. */
  private readonly tag: string;

  constructor(readonly mtu: number, private readonly impairment: WireImpairment | null) {
    // A namespace left by a killed process whose pid has been reused is skipped, not clobbered.
    let tag: string;
    do tag = `${process.pid}-${++labCounter}`;
    while (['c', 's', 'w'].some((side) => existsSync(`/run/netns/stcp-${side}-${tag}`)));
    this.tag = tag;
    this.clientNamespace = `stcp-c-${tag}`;
    this.serverNamespace = `stcp-s-${tag}`;
    this.wireNamespace = impairment === null ? null : `stcp-w-${tag}`;
    // At most 2 + 7 (pid_max 4194304) + 1 + 5 = 15 bytes, the interface name limit (IFNAMSIZ - 1).
    this.clientInterface = `vc${tag}`;
    this.serverInterface = `vs${tag}`;
    if (this.serverInterface.length > 15) throw new Error(`interface name ${this.serverInterface} is longer than 15 bytes`);
    liveLabs.add(this);
    installProcessHooks();
  }

  setUp(withUnbound: boolean, unboundServerConfig: readonly string[]): Promise<void> {
    this.settingUp = this.build(withUnbound, unboundServerConfig);
    return this.settingUp;
  }

  private async build(withUnbound: boolean, unboundServerConfig: readonly string[]): Promise<void> {
    this.tempDir = await mkdtemp(join(tmpdir(), `stcp-lab-${this.tag}-`));
    for (const ns of [this.clientNamespace, this.serverNamespace, ...(this.wireNamespace === null ? [] : [this.wireNamespace])]) {
      await this.setupStep(['ip', 'netns', 'add', ns], 'create namespace');
      this.namespaces.push(ns);
    }
    if (this.wireNamespace === null) {
      await this.setupStep(
        ['ip', '-n', this.clientNamespace, 'link', 'add', this.clientInterface, 'type', 'veth',
          'peer', 'name', this.serverInterface, 'netns', this.serverNamespace],
        'create veth pair',
      );
    } else {
      await this.createWireLinks(this.wireNamespace);
    }
    await this.configureEnd(this.clientNamespace, this.clientInterface, LAB_ADDRESSES.clientV4, LAB_ADDRESSES.clientV6);
    await this.configureEnd(this.serverNamespace, this.serverInterface, LAB_ADDRESSES.serverV4, LAB_ADDRESSES.serverV6);
    if (this.wireNamespace !== null) await this.startWire(this.wireNamespace);
    await this.waitForLinks();
    if (withUnbound) await this.startUnbound(unboundServerConfig);
  }

  /** The ends facing client and server in the wire namespace (same length as the client's and server's names). */
  private get wireInterfaces(): [string, string] {
    return [`wc${this.tag}`, `ws${this.tag}`];
  }

  /**
   * Two veth pairs, client ↔ wire and wire ↔ server. The wire namespace gets no addresses and no
   * IPv6 (so its kernel sends nothing of its own: no neighbour discovery, no router solicitations).
   */
  private async createWireLinks(wireNs: string): Promise<void> {
    const [towardClient, towardServer] = this.wireInterfaces;
    await this.setupStep(['ip', 'netns', 'exec', wireNs, 'sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1',
      'net.ipv6.conf.default.disable_ipv6=1'], 'disable IPv6 on the wire');
    await this.setupStep(['ip', '-n', this.clientNamespace, 'link', 'add', this.clientInterface, 'type', 'veth',
      'peer', 'name', towardClient, 'netns', wireNs], 'create client-wire veth pair');
    await this.setupStep(['ip', '-n', this.serverNamespace, 'link', 'add', this.serverInterface, 'type', 'veth',
      'peer', 'name', towardServer, 'netns', wireNs], 'create wire-server veth pair');
    for (const device of [towardClient, towardServer]) {
      await this.setupStep(['ip', 'netns', 'exec', wireNs, 'ethtool', '-K', device, 'tx', 'off', 'rx', 'off'], 'disable checksum offload');
      await this.setupStep(['ip', '-n', wireNs, 'link', 'set', device, 'mtu', String(this.mtu), 'up'], `bring up ${device}`);
    }
  }

  /** Starts the forwarding process in the wire namespace; setup waits until it captures on both ends. */
  private async startWire(wireNs: string): Promise<void> {
    const macOf = async (ns: string, device: string): Promise<string> => {
      const shown = await runCommand(['ip', '-n', ns, '-j', 'link', 'show', 'dev', device]);
      const [link] = JSON.parse(shown.stdout || '[]') as Array<{ address?: string }>;
      if (link?.address === undefined) throw new Error(`lab: no MAC address for ${device}: ${shown.stderr.trim()}`);
      return link.address;
    };
    const [towardClient, towardServer] = this.wireInterfaces;
    const spec: WireSpec = {
      ...this.impairment!,
      clientSideInterface: towardClient,
      clientMac: await macOf(this.clientNamespace, this.clientInterface),
      serverSideInterface: towardServer,
      serverMac: await macOf(this.serverNamespace, this.serverInterface),
      maxLifetimeMs: WIRE_MAX_LIFETIME_MS,
    };
    this.assertOpen();
    this.wire = this.spawnIn(wireNs, [process.execPath, WIRE_SCRIPT, JSON.stringify(spec)]);
    await this.waitForLine(this.wire, /^wire ready/, WIRE_READY_TIMEOUT_MS);
  }

  async wireStats(): Promise<WireStats> {
    const wire = this.wire;
    if (wire === null) throw new Error('wireStats: this lab has no wire (option `wire`)');
    const report = ++this.wireReports;
    wire.kill('SIGUSR2');
    const [, json] = await this.waitForLine(wire, new RegExp(`^wire stats ${report} (.*)$`), 5_000);
    return JSON.parse(json!) as WireStats;
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
   * IPv6 addresses are `nodad`: no second of Duplicate Address Detection before they can be used.
   */
  private async configureEnd(ns: string, device: string, v4: string, v6: string): Promise<void> {
    await this.setupStep(['ip', 'netns', 'exec', ns, 'ethtool', '-K', device, 'tx', 'off', 'rx', 'off'], 'disable checksum offload');
    const batch = [
      'link set lo up',
      `link set ${device} mtu ${this.mtu}`,
      `addr add ${v4}/${LAB_ADDRESSES.v4PrefixLength} dev ${device}`,
      `addr add ${v6}/${LAB_ADDRESSES.v6PrefixLength} dev ${device} nodad`,
      `link set ${device} up`,
    ];
    await this.setupStep(['ip', '-n', ns, '-batch', '-'], `configure ${device}`, batch.join('\n') + '\n');
  }

  /**
   * Both ends report operstate UP (the kernel propagates carrier asynchronously, via linkwatch) and
   * have a global IPv6 address that is neither tentative nor failed DAD — with `nodad` that holds at
   * once; the check catches a DAD that would otherwise silently delay IPv6 traffic. (The link-local
   * fe80:: addresses still run DAD for a moment; traffic between the global addresses does not need them.)
   */
  private async waitForLinks(): Promise<void> {
    const ends: Array<[string, string]> = [
      [this.clientNamespace, this.clientInterface],
      [this.serverNamespace, this.serverInterface],
    ];
    await waitUntil(`veth links up with usable addresses`, LINK_READY_TIMEOUT_MS, async () => {
      this.assertOpen();
      for (const [ns, device] of ends) {
        const shown = await runCommand(['ip', '-n', ns, '-j', 'addr', 'show', 'dev', device]);
        if (shown.code !== 0) return false;
        const [link] = JSON.parse(shown.stdout) as Array<{ operstate: string; addr_info: Array<Record<string, unknown>> }>;
        const ready = link !== undefined && link.operstate === 'UP' &&
          link.addr_info.some((a) => a.family === 'inet6' && a.scope === 'global' && a.tentative !== true && a.dadfailed !== true);
        if (!ready) return false;
      }
      return true;
    });
  }

  /**
   * Unbound logs to stderr (kept for error messages). It is ready once it answers www.lab.test
   * correctly over UDP; if it exits first, setup fails with its last log lines.
   */
  private async startUnbound(serverConfig: readonly string[]): Promise<void> {
    const configFile = join(this.tempDir, 'unbound.conf');
    await writeFile(configFile, unboundConfig(this.tempDir, serverConfig));
    const unbound = this.spawn('server', ['unbound', '-c', configFile]);
    this.unbound = unbound;
    const { address, port } = LAB_UPSTREAM.v4;
    await waitUntil('unbound answering www.lab.test', UNBOUND_READY_TIMEOUT_MS, async () => {
      this.assertOpen();
      if (hasExited(unbound)) {
        throw new Error(`unbound exited during lab setup (${exitDescription(unbound)}): ${this.recentOutput(unbound)}`);
      }
      const answer = await this.exec('server',
        ['dig', `@${address}`, '-p', String(port), '+time=1', '+tries=1', '+short', LAB_ZONE.www.name, 'A'],
        { timeoutMs: 2_000 });
      return answer.code === 0 && answer.stdout.trim() === LAB_ZONE.www.a;
    });
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
    const child = spawnProcess('ip', ['netns', 'exec', ns, ...argv], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: options.env ?? process.env,
    });
    const log: OutputLog = { lines: [], waiters: new Set() };
    this.outputs.set(child, log);
    this.children.add(child);
    const keep = (line: string): void => {
      log.lines.push(line);
      if (log.lines.length > KEPT_OUTPUT_LINES) log.lines.shift();
      for (const waiter of log.waiters) waiter(line);
    };
    forEachLine(child.stdout!, keep);
    forEachLine(child.stderr!, keep);
    // Without a listener a spawn failure would be an uncaught 'error'; 'exit' cannot follow it, so untrack here.
    child.on('error', (error) => {
      keep(`spawn error: ${error.message}`);
      this.children.delete(child);
    });
    child.on('exit', () => this.children.delete(child));
    return child;
  }

  waitForLine(child: ChildProcess, pattern: RegExp, timeoutMs = 5_000): Promise<RegExpExecArray> {
    const log = this.outputs.get(child);
    if (log === undefined) return Promise.reject(new Error('waitForLine: not a process spawned by this lab'));
    for (const line of log.lines) {
      const match = pattern.exec(line);
      if (match !== null) return Promise.resolve(match);
    }
    return new Promise((resolve, reject) => {
      const finish = (): void => {
        clearTimeout(timer);
        log.waiters.delete(onLine);
        child.off('exit', onExit);
      };
      const onLine = (line: string): void => {
        const match = pattern.exec(line);
        if (match === null) return;
        finish();
        resolve(match);
      };
      const onExit = (): void => {
        finish();
        reject(new Error(`process ${child.pid} exited (${exitDescription(child)}) before printing ${pattern}: ${this.recentOutput(child)}`));
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`no line matching ${pattern} from process ${child.pid} within ${timeoutMs} ms: ${this.recentOutput(child)}`));
      }, timeoutMs);
      log.waiters.add(onLine);
      if (hasExited(child)) onExit();
      else child.once('exit', onExit);
    });
  }

  async stop(child: ChildProcess, timeoutMs = DEFAULT_STOP_TIMEOUT_MS): Promise<void> {
    // No pid: it never started (the 'error' event says why), so there is nothing to stop.
    if (hasExited(child) || child.pid === undefined) return;
    child.kill('SIGTERM');
    if (await exited(child, timeoutMs)) return;
    child.kill('SIGKILL');
    if (!(await exited(child, 2_000))) throw new Error(`process ${child.pid} survived SIGKILL for 2 s`);
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
    const attempt = async (what: string, action: () => Promise<unknown>): Promise<void> => {
      try {
        await action();
      } catch (error) {
        failures.push(`${what}: ${messageOf(error)}`);
      }
    };
    await Promise.all([...this.children].map((child) => attempt(`stop pid ${child.pid}`, () => this.stop(child))));
    for (const ns of this.namespaces) {
      // Processes someone else started inside our namespace (e.g. via plain `ip netns exec`).
      await attempt(`kill processes in ${ns}`, async () => {
        const listed = await runCommand(['ip', 'netns', 'pids', ns]);
        killPids(listed.stdout);
      });
      await attempt(`delete namespace ${ns}`, () => runChecked(['ip', 'netns', 'del', ns], 'delete namespace'));
    }
    this.namespaces.length = 0;
    if (this.tempDir !== '') await attempt(`remove ${this.tempDir}`, () => rm(this.tempDir, { recursive: true, force: true }));
    liveLabs.delete(this);
    if (liveLabs.size === 0) removeProcessHooks();
    if (failures.length > 0) throw new Error(`lab cleanup incomplete: ${failures.join('; ')}`);
  }

  /** The 'exit' path: only synchronous calls work here. SIGKILL, since nothing can wait. */
  closeSync(): void {
    for (const child of this.children) child.kill('SIGKILL');
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
    if (this.tempDir !== '') rmSync(this.tempDir, { recursive: true, force: true });
  }

  /** A setup command: refused once closing has begun, so a signal mid-setup stops further creation. */
  private async setupStep(argv: readonly string[], what: string, input?: string): Promise<void> {
    this.assertOpen();
    await runChecked(argv, what, input);
  }

  /** Once closing has begun (e.g. on SIGINT mid-setup) nothing new may be created. */
  private assertOpen(): void {
    if (this.closing !== null) throw new Error('lab is closed');
  }

  private namespaceOf(where: Side): string {
    return where === 'client' ? this.clientNamespace : this.serverNamespace;
  }

  private recentOutput(child: ChildProcess): string {
    const lines = this.outputs.get(child)?.lines ?? [];
    return lines.length === 0 ? '(no output)' : lines.slice(-5).join(' | ');
  }
}

function unboundConfig(directory: string, extraServerLines: readonly string[]): string {
  const { www, mid, big, apex, ttl } = LAB_ZONE;
  const localData = [
    `${www.name} ${ttl} IN A ${www.a}`,
    `${www.name} ${ttl} IN AAAA ${www.aaaa}`,
    ...[mid, big].flatMap((set) => set.strings.map((text) => `${set.name} ${ttl} IN TXT "${text}"`)),
  ];
  const server = [
    ...Object.values(LAB_UPSTREAM).map((e) => `interface: ${e.address}@${e.port}`),
    // Run in the foreground as a child we own: no daemon, chroot, privilege drop or syslog.
    'do-daemonize: no',
    'chroot: ""',
    'username: ""',
    `directory: "${directory}"`,
    `pidfile: "${join(directory, 'unbound.pid')}"`,
    'use-syslog: no',
    'logfile: ""',
    'verbosity: 1',
    // No DNSSEC validation (no trust anchor needed); one thread keeps start-up fast.
    'module-config: "iterator"',
    'num-threads: 1',
    'so-reuseport: no',
    'do-not-query-localhost: yes',
    // The UDP limit that makes mid and big come back TC=1 (1232 is also the default).
    'max-udp-size: 1232',
    // Keep RRset order fixed so tests can compare TXT strings in order.
    'rrset-roundrobin: no',
    // Local-zone answers are synthesised per query, never taken from the message/RRset caches, and
    // "." static leaves the iterator nothing to look up: answers cannot go stale or differ by cache state.
    'local-zone: "." static',
    `local-zone: "${apex}" static`,
    ...localData.map((rr) => `local-data: '${rr}'`),
    ...extraServerLines,
  ];
  return ['server:', ...server.map((line) => `  ${line}`), 'remote-control:', '  control-enable: no', ''].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Process-wide cleanup
// ---------------------------------------------------------------------------------------------

const liveLabs = new Set<NetworkLab>();
let hooksInstalled = false;
let signalled = false;
/** Whatever happens during cleanup after a signal, exit within this time ('exit' then cleans up synchronously). */
const SIGNAL_CLEANUP_LIMIT_MS = 15_000;

function onProcessExit(): void {
  for (const lab of liveLabs) lab.closeSync();
}

function onSignal(signal: NodeJS.Signals): void {
  const status = 128 + osConstants.signals[signal];
  if (signalled) process.exit(status); // a second signal: stop waiting, the 'exit' hook cleans up
  signalled = true;
  setTimeout(() => process.exit(status), SIGNAL_CLEANUP_LIMIT_MS).unref();
  void Promise.allSettled([...liveLabs].map((lab) => lab.close())).then(() => process.exit(status));
}

/** Installed while any lab is alive, so a process without labs keeps Node's default signal behaviour. */
function installProcessHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', onProcessExit);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

function removeProcessHooks(): void {
  if (!hooksInstalled || signalled) return;
  hooksInstalled = false;
  process.off('exit', onProcessExit);
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/**
 * The one way this module runs a command to completion: output collected, stdin optionally fed,
 * and a timeout that SIGKILLs it. After a timeout the result is returned as soon as the process has
 * exited, without waiting for its pipes, which a leftover grandchild might hold open.
 */
function runCommand(argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
  const [file, ...args] = argv;
  if (file === undefined) return Promise.reject(new Error('runCommand: empty argv'));
  const timeoutMs = options.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS;
  return new Promise((resolve) => {
    const child = spawnProcess(file, args, { stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout!.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk));
    let timedOut = false;
    let settled = false;
    const settle = (code: number | null, signal: NodeJS.Signals | null, extraError = ''): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8') + extraError,
        timedOut,
      });
    };
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
      if (hasExited(child)) settle(child.exitCode, child.signalCode);
      else child.once('exit', (code, signal) => settle(code, signal));
    }, timeoutMs);
    child.on('error', (error) => settle(null, null, `${file}: ${error.message}`));
    child.on('close', (code, signal) => settle(code, signal));
    if (options.input !== undefined) {
      child.stdin!.on('error', () => {}); // the command may exit without reading its input (EPIPE)
      child.stdin!.end(options.input);
    }
  });
}

/** runCommand for commands that must succeed: throws a one-line error naming the command otherwise. */
async function runChecked(argv: readonly string[], what: string, input?: string): Promise<void> {
  const result = await runCommand(argv, input === undefined ? {} : { input });
  if (result.code !== 0) {
    const reason = result.timedOut ? 'timed out' : (result.stderr.trim() || `exit ${result.code ?? result.signal}`);
    throw new Error(`lab: ${what} failed: ${argv.join(' ')}: ${reason.replace(/\s*\n\s*/g, ' | ')}`);
  }
}

/** Polls `check` every 20 ms until it returns true; throws after `timeoutMs` or if `check` throws. */
async function waitUntil(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() >= deadline) throw new Error(`lab: timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function exited(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (hasExited(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off('exit', onExit);
      resolve(false);
    }, timeoutMs);
    const onExit = (): void => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once('exit', onExit);
  });
}

function exitDescription(child: ChildProcess): string {
  return child.signalCode !== null ? `signal ${child.signalCode}` : `exit ${child.exitCode}`;
}

/** SIGKILL each pid listed one per line (the output of `ip netns pids`). */
function killPids(listing: string): void {
  for (const pid of listing.split('\n').map(Number).filter((n) => Number.isInteger(n) && n > 0 && n !== process.pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

function forEachLine(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  const decoder = new StringDecoder('utf8');
  let partial = '';
  stream.on('data', (chunk: Buffer) => {
    const lines = (partial + decoder.write(chunk)).split('\n');
    partial = lines.pop()!;
    lines.forEach(onLine);
  });
  stream.on('end', () => {
    const rest = partial + decoder.end();
    if (rest !== '') onLine(rest);
  });
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

/** True while `pid` is a live process (a zombie, killed but not yet reaped, counts as gone). */
export function isProcessRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 3, after the parenthesised command name (which may itself contain spaces or parentheses).
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
