/**
 * The lab's impaired link: netem for a kernel without netem. With the lab option `wire`, a third
 * namespace sits between client and server (network.ts), and a process there
 * (impaired-link-forwarder.ts) forwards every frame between its two veth ends, losing,
 * duplicating, delaying and reordering TCP as `tc qdisc … netem` would, in both directions and
 * invisible to both ends. This module is the lab's side of it: what to impair, starting the
 * forwarder, and reading its counters.
 */
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { LabNetwork } from './network.js';

/** What the link does to TCP frames, in each direction, as netem's options of the same names. */
export interface WireImpairment {
  lossPercent: number;
  duplicatePercent: number;
  reorderPercent: number;
  delayMs: number;
  jitterMs: number;
  /**
   * Deterministic loss: the first TCP frame toward the server that contains one of these byte
   * strings (hex) is dropped; its retransmission passes. Applied before the random impairment.
   */
  dropOnceToServer?: string[];
}

/** The forwarder's one argument (as JSON): the impairment and where to apply it. */
export interface WireSpec extends WireImpairment {
  /** The end facing the client, and the client's MAC (frames from it are captured there). */
  clientSideInterface: string;
  clientMac: string;
  serverSideInterface: string;
  serverMac: string;
  /** The links' MTU: frames the hosts hand over longer than this are cut to it, as a NIC's TSO would. */
  mtu: number;
  /** Exit on its own after this long, whatever happens (a bound, not the normal way to stop). */
  maxLifetimeMs: number;
}

export interface DirectionStats {
  /** Frames captured, and TCP frames among them. */
  frames: number;
  tcp: number;
  dropped: number;
  /** Frames dropped by `dropOnceToServer`. */
  droppedByRule: number;
  duplicated: number;
  /** Frames sent ahead of one captured before them. */
  reordered: number;
  sent: number;
  injectFailed: number;
}

export interface WireStats {
  toServer: DirectionStats;
  toClient: DirectionStats;
}

/** The forwarder's script, next to this file in dist/lab/. */
const FORWARDER_SCRIPT = fileURLToPath(new URL('./impaired-link-forwarder.js', import.meta.url));
const READY_TIMEOUT_MS = 10_000;
const STATS_TIMEOUT_MS = 5_000;
/** The forwarder exits on its own after this long even if nobody stops it. */
const MAX_LIFETIME_MS = 30 * 60_000;

/** What starting the forwarder needs of the lab: a tracked process in the wire namespace. */
export interface WireNamespace {
  spawn(argv: readonly string[]): ChildProcess;
  waitForLine(child: ChildProcess, pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray>;
}

export class ImpairedLink {
  /** How many stats reports were asked of the forwarder (its reports are numbered). */
  private reports = 0;

  private constructor(
    private readonly wire: WireNamespace,
    readonly forwarder: ChildProcess,
  ) {}

  /** Starts the forwarder in the wire namespace; resolves once it captures on both ends. */
  static async start(network: LabNetwork, impairment: WireImpairment, wire: WireNamespace): Promise<ImpairedLink> {
    const { towardClient, towardServer } = network.wireInterfaces;
    const spec: WireSpec = {
      ...impairment,
      clientSideInterface: towardClient,
      clientMac: await network.macAddress(network.clientNamespace, network.clientInterface),
      serverSideInterface: towardServer,
      serverMac: await network.macAddress(network.serverNamespace, network.serverInterface),
      mtu: network.mtu,
      maxLifetimeMs: MAX_LIFETIME_MS,
    };
    const forwarder = wire.spawn([process.execPath, FORWARDER_SCRIPT, JSON.stringify(spec)]);
    await wire.waitForLine(forwarder, /^wire ready/, READY_TIMEOUT_MS);
    return new ImpairedLink(wire, forwarder);
  }

  /** The counters so far, per direction: SIGUSR2 asks for a numbered report line. */
  async stats(): Promise<WireStats> {
    const report = ++this.reports;
    this.forwarder.kill('SIGUSR2');
    const [, json] = await this.wire.waitForLine(this.forwarder, new RegExp(`^wire stats ${report} (.*)$`), STATS_TIMEOUT_MS);
    return JSON.parse(json!) as WireStats;
  }
}
