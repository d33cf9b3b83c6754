/**
 * Several upstream resolvers behind one `UpstreamTransport`: each has its own sockets
 * (`UdpTcpUpstream`, with its own RFC 5452 port pool), a health probe every second, and queries
 * go to the healthy one with the fewest outstanding (dns/upstream-pool.ts decides; this file does
 * the sockets and the timer).
 *
 * Socket numbers: upstream i's socket s is i · SOCKETS_PER_UPSTREAM + s, so the relay keeps one
 * number per query and an answer is still accepted only on the socket its query left from.
 */
import { RelayCounter, type TcpAnswerHandler, type UpstreamTransport } from '../dns/relay.js';
import { PROBE_INTERVAL_MS, PROBE_TIMEOUT_MS, UpstreamSelection } from '../dns/upstream-pool.js';
import { formatEndpoint, type Endpoint } from '../endpoint.js';
import { UdpTcpUpstream, probeUpstream, type UpstreamPorts } from './upstream.js';

/** More than a port pool's sockets ever number (twice `--upstream-ports`, at most 64). */
const SOCKETS_PER_UPSTREAM = 256;

/**
 * Each upstream's own counters, after the relay's in the same array (`upstreamCounterNames`):
 * queries sent to it (failovers included), queries moved from it to another after half the
 * timeout without its answer, health probes it failed, and the times it was marked down and up
 * (its state: down while marked down more often than up).
 */
const UpstreamCounter = { QUERIES: 0, FAILED_OVER: 1, PROBE_FAILURES: 2, MARKED_DOWN: 3, MARKED_UP: 4 } as const;
const UPSTREAM_COUNTERS = 5;

/** The names of the per-upstream counters of a pool of `size`: upstream0_queries, upstream0_failed_over, … (0: the first --upstream). */
export function upstreamCounterNames(size: number): string[] {
  const names: string[] = [];
  for (let i = 0; i < size; i++) {
    for (const name of ['queries', 'failed_over', 'probe_failures', 'marked_down', 'marked_up']) names.push(`upstream${i}_${name}`);
  }
  return names;
}

export interface UpstreamPoolOptions {
  /** The UDP sockets of each upstream. */
  ports: (address: Endpoint) => UpstreamPorts;
  onAnswer: (bytes: Uint8Array, offset: number, length: number, socket: number) => void;
  /**
   * The relay's counters: the pool counts upstreams marked down and up into them, and from
   * `firstUpstreamCounter` on each upstream's own (`upstreamCounterNames`).
   */
  counts: Float64Array;
  firstUpstreamCounter: number;
  /** Upstreams that start down (they did not answer the start-up probe). */
  downAtStart?: readonly number[];
  nowMs: number;
  /** Health probes carry a PROXY protocol header (`--upstream-proxy-protocol`). */
  proxyProtocol: boolean;
  /** Each change of an upstream's state, as one line (the shard worker logs it, once, not per query). */
  onStateChange?: (line: string) => void;
}

export class UpstreamPool implements UpstreamTransport {
  readonly selection: UpstreamSelection;
  private readonly members: UdpTcpUpstream[] = [];
  private readonly timer: NodeJS.Timeout;
  /** Per upstream: its probe is still waiting for an answer. */
  private readonly probing: boolean[];
  private closed = false;

  constructor(
    private readonly addresses: readonly Endpoint[],
    private readonly options: UpstreamPoolOptions,
  ) {
    this.selection = new UpstreamSelection(addresses.length);
    this.probing = new Array<boolean>(addresses.length).fill(false);
    for (const index of options.downAtStart ?? []) this.selection.markDown(index);
    try {
      addresses.forEach((address, index) => {
        const base = index * SOCKETS_PER_UPSTREAM;
        this.members.push(
          new UdpTcpUpstream(address, {
            ports: options.ports(address),
            onAnswer: (bytes, offset, length, socket) => options.onAnswer(bytes, offset, length, base + socket),
            counts: options.counts,
            nowMs: options.nowMs,
          }),
        );
      });
    } catch (error) {
      for (const member of this.members) member.close();
      throw error;
    }
    this.timer = setInterval(() => this.probeAll(), PROBE_INTERVAL_MS);
    this.timer.unref();
  }

  sendDatagram(query: Uint8Array, nowMs: number): number {
    const index = this.selection.pick();
    if (index < 0) return -1;
    return this.sendTo(index, query, nowMs);
  }

  failover(query: Uint8Array, socket: number, nowMs: number): number {
    const from = Math.floor(socket / SOCKETS_PER_UPSTREAM);
    const index = this.selection.pick(from);
    if (index < 0) return -1;
    this.options.counts[this.counterOf(from, UpstreamCounter.FAILED_OVER)]!++;
    return this.sendTo(index, query, nowMs);
  }

  private sendTo(index: number, query: Uint8Array, nowMs: number): number {
    this.selection.outstanding[index]!++;
    this.options.counts[this.counterOf(index, UpstreamCounter.QUERIES)]!++;
    return index * SOCKETS_PER_UPSTREAM + this.members[index]!.sendDatagram(query, nowMs);
  }

  private counterOf(index: number, counter: number): number {
    return this.options.firstUpstreamCounter + index * UPSTREAM_COUNTERS + counter;
  }

  resendDatagram(query: Uint8Array, socket: number): void {
    this.members[Math.floor(socket / SOCKETS_PER_UPSTREAM)]!.resendDatagram(query, socket % SOCKETS_PER_UPSTREAM);
  }

  queryDone(socket: number): void {
    const index = Math.floor(socket / SOCKETS_PER_UPSTREAM);
    this.selection.outstanding[index]!--;
    this.members[index]!.queryDone(socket % SOCKETS_PER_UPSTREAM);
  }

  /** Over TCP to the upstream the policy picks now (a truncated answer's retry), or null when none is up. */
  queryOverTcp(query: Uint8Array, timeoutMs: number, onAnswer: TcpAnswerHandler, preamble?: Uint8Array): void {
    const index = this.selection.pick();
    if (index < 0) queueMicrotask(() => onAnswer(null, 0, 0));
    else this.members[index]!.queryOverTcp(query, timeoutMs, onAnswer, preamble);
  }

  /** Probes every upstream once, as dnsdist's health check does (`. SOA`, PROBE_TIMEOUT_MS). */
  private probeAll(): void {
    this.addresses.forEach((address, index) => {
      if (this.probing[index] || this.closed) return;
      this.probing[index] = true;
      void probeUpstream(address, PROBE_TIMEOUT_MS, this.options.proxyProtocol).then((problem) => {
        this.probing[index] = false;
        if (this.closed) return;
        if (problem !== null) this.options.counts[this.counterOf(index, UpstreamCounter.PROBE_FAILURES)]!++;
        const change = this.selection.probed(index, problem === null);
        if (change === 0) return;
        this.options.counts[change > 0 ? RelayCounter.UPSTREAMS_MARKED_UP : RelayCounter.UPSTREAMS_MARKED_DOWN]!++;
        this.options.counts[this.counterOf(index, change > 0 ? UpstreamCounter.MARKED_UP : UpstreamCounter.MARKED_DOWN)]!++;
        const where = formatEndpoint(address);
        this.options.onStateChange?.(change > 0 ? `upstream ${where} is up again` : `upstream ${where} is down: ${problem}`);
      });
    });
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    for (const member of this.members) member.close();
  }
}
