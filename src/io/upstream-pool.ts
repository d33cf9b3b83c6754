/**
 * Several upstream resolvers behind one `UpstreamTransport`: each has its own sockets
 * (`UdpTcpUpstream`, with its own RFC 5452 port pool) and a health probe each interval, and each
 * query goes where the policy says (upstream-selection.ts decides and schedules the probes; this
 * file does the sockets, the probe and the counting).
 *
 * Socket numbers: upstream i's socket s is i · SOCKETS_PER_UPSTREAM + s, so the relay keeps one
 * number per query and an answer is still accepted only on the socket its query left from.
 */
import { RelayCounter, type TcpAnswerHandler, UNANSWERED, type UpstreamTransport } from '../dns/relay.js';
import { DEFAULT_HEALTH_CHECK, type HealthCheckSettings } from '../dns/upstream-pool.js';
import { HealthProbes, perUpstreamCounterNames, UpstreamSelection, type UpstreamPolicy } from '../upstream-selection.js';
import { formatEndpoint, type Endpoint } from '../endpoint.js';
import type { UpstreamsView } from '../tcp/transport.js';
import { UdpTcpUpstream, probeUpstream, type UpstreamPorts } from './upstream.js';

/** More than a port pool's sockets ever number (twice `--upstream-ports`, at most 64). */
const SOCKETS_PER_UPSTREAM = 256;

/**
 * Each upstream's own counters, after the relay's in the same array (`upstreamCounterNames`):
 * queries sent to it (failovers and truncated answers' TCP retries included), the answers it
 * gave, the queries it left unanswered (their time ran out, or their half of it before a
 * failover), those of them moved to another upstream, health probes it failed, and the times it
 * was marked down and up.
 */
const UPSTREAM_COUNTER_NAMES = ['queries', 'answers', 'timeouts', 'failed_over', 'probe_failures', 'marked_down', 'marked_up'] as const;
const UpstreamCounter = { QUERIES: 0, ANSWERS: 1, TIMEOUTS: 2, FAILED_OVER: 3, PROBE_FAILURES: 4, MARKED_DOWN: 5, MARKED_UP: 6 } as const;

/** The names of the per-upstream counters of a pool of `size`: upstream0_queries, upstream0_answers, … (0: the first --upstream). */
export function upstreamCounterNames(size: number): string[] {
  return perUpstreamCounterNames(size, UPSTREAM_COUNTER_NAMES);
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
  /** The health check; dnsdist's defaults when absent. */
  healthCheck?: HealthCheckSettings;
  policy?: UpstreamPolicy;
  /** One per upstream (`--upstream ADDR:PORT,weight=N`), for the weighted policy. */
  weights?: readonly number[];
  /** Each change of an upstream's state, as one line (the shard worker logs it, once, not per query). */
  onStateChange?: (line: string) => void;
}

export class UpstreamPool implements UpstreamTransport, UpstreamsView {
  readonly selection: UpstreamSelection;
  readonly names: readonly string[];
  observeLatency: ((index: number, seconds: number) => void) | null = null;
  private readonly members: UdpTcpUpstream[] = [];
  private readonly healthCheck: HealthCheckSettings;
  private readonly probes: HealthProbes;
  private closed = false;

  constructor(
    addresses: readonly Endpoint[],
    private readonly options: UpstreamPoolOptions,
  ) {
    this.healthCheck = options.healthCheck ?? DEFAULT_HEALTH_CHECK;
    this.selection = new UpstreamSelection(addresses.length, this.healthCheck, options.policy, options.weights);
    this.names = addresses.map(formatEndpoint);
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
    // The question dnsdist's health check asks (`--health-check-name`, `--health-check-type`).
    const { name, type, timeoutMs, intervalMs } = this.healthCheck;
    this.probes = new HealthProbes(
      addresses.length,
      intervalMs,
      (index) => probeUpstream(addresses[index]!, timeoutMs, options.proxyProtocol, { name, type }),
      (index, problem) => {
        if (problem !== null) this.count(index, UpstreamCounter.PROBE_FAILURES);
        this.changed(index, this.selection.probed(index, problem === null), problem ?? '');
      },
    );
  }

  isUp(index: number): boolean {
    return this.selection.up[index]!;
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
    this.count(from, UpstreamCounter.FAILED_OVER);
    return this.sendTo(index, query, nowMs);
  }

  private sendTo(index: number, query: Uint8Array, nowMs: number): number {
    this.selection.outstanding[index]!++;
    this.count(index, UpstreamCounter.QUERIES);
    return index * SOCKETS_PER_UPSTREAM + this.members[index]!.sendDatagram(query, nowMs);
  }

  private count(index: number, counter: number): void {
    this.options.counts[this.options.firstUpstreamCounter + index * UPSTREAM_COUNTER_NAMES.length + counter]!++;
  }

  resendDatagram(query: Uint8Array, socket: number): void {
    this.members[Math.floor(socket / SOCKETS_PER_UPSTREAM)]!.resendDatagram(query, socket % SOCKETS_PER_UPSTREAM);
  }

  queryDone(socket: number, answeredAfterMs: number): void {
    const index = Math.floor(socket / SOCKETS_PER_UPSTREAM);
    this.selection.outstanding[index]!--;
    this.members[index]!.queryDone(socket % SOCKETS_PER_UPSTREAM);
    this.queryOutcome(index, answeredAfterMs);
  }

  /** A query to upstream `index` was answered after `answeredAfterMs`, or not (UNANSWERED): counted, and a failure of its health. */
  private queryOutcome(index: number, answeredAfterMs: number): void {
    if (answeredAfterMs === UNANSWERED) {
      this.count(index, UpstreamCounter.TIMEOUTS);
      this.changed(index, this.selection.failed(index), 'it left a query unanswered within its time');
      return;
    }
    this.count(index, UpstreamCounter.ANSWERS);
    this.selection.answered(index);
    this.observeLatency?.(index, answeredAfterMs / 1000);
  }

  /** Over TCP to the upstream the policy picks now (a truncated answer's retry), or null when none is up. */
  queryOverTcp(query: Uint8Array, timeoutMs: number, onAnswer: TcpAnswerHandler, preamble?: Uint8Array): void {
    const index = this.selection.pick();
    if (index < 0) {
      queueMicrotask(() => onAnswer(null, 0, 0));
      return;
    }
    this.count(index, UpstreamCounter.QUERIES);
    const sentMs = Date.now();
    this.members[index]!.queryOverTcp(
      query,
      timeoutMs,
      (answer, offset, length) => {
        if (!this.closed) this.queryOutcome(index, answer === null ? UNANSWERED : Date.now() - sentMs);
        onAnswer(answer, offset, length);
      },
      preamble,
    );
  }

  /** Upstream `index` went up (+1) or down (−1; `reason`: its last failure), or neither (0): counted, and logged once. */
  private changed(index: number, change: -1 | 0 | 1, reason: string): void {
    if (change === 0) return;
    this.options.counts[change > 0 ? RelayCounter.UPSTREAMS_MARKED_UP : RelayCounter.UPSTREAMS_MARKED_DOWN]!++;
    this.count(index, change > 0 ? UpstreamCounter.MARKED_UP : UpstreamCounter.MARKED_DOWN);
    const where = this.names[index]!;
    const { downAfter } = this.healthCheck;
    this.options.onStateChange?.(
      change > 0 ? `upstream ${where} is up again` : `upstream ${where} is down after ${downAfter} failures in a row; the last: ${reason}`,
    );
  }

  close(): void {
    this.closed = true;
    this.probes.close();
    for (const member of this.members) member.close();
  }
}
