/**
 * Several backend web servers behind one `HttpBackend`: each has its own keep-alive connection
 * pool (UndiciBackend) and a health probe each interval (`GET --health-check-path`); each request
 * goes where the policy says (upstream-selection.ts decides and schedules the probes, as for a
 * DNS pool; this file does the clients, the probe and the counting).
 *
 *   request ──pick──▶ backend i ──▶ response (answered: its run of failures ends)
 *                        └─ refused, reset, no response ──▶ failure of i's health
 *                             └─ idempotent and bodyless (RFC 9110 §9.2.2) ──▶ once to another backend
 */
import { BackendError, retryableElsewhere, type BackendRequest, type BackendResponse, type HttpBackend } from '../http/backend.js';
import type { UpstreamsView } from '../tcp/transport.js';
import {
  HealthProbes,
  perUpstreamCounterNames,
  UpstreamSelection,
  type HealthThresholds,
  type UpstreamPolicy,
} from '../upstream-selection.js';
import { UndiciBackend, probeHttpHealth } from './http-backend.js';

/**
 * Each backend's own counters, after the relay's in the same array (`backendCounterNames`):
 * requests sent to it (retries included), those it failed (refused, reset or timed out before
 * its response was whole), those of them retried on another backend, health probes it failed,
 * and the times it was marked down and up.
 */
const BACKEND_COUNTER_NAMES = ['requests', 'failures', 'retried', 'probe_failures', 'marked_down', 'marked_up'] as const;
const BackendCounter = { REQUESTS: 0, FAILURES: 1, RETRIED: 2, PROBE_FAILURES: 3, MARKED_DOWN: 4, MARKED_UP: 5 } as const;

/** The names of the per-backend counters of a pool of `size`: upstream0_requests, … (0: the first --upstream). */
export function backendCounterNames(size: number): string[] {
  return perUpstreamCounterNames(size, BACKEND_COUNTER_NAMES);
}

/** The HTTP pool's health check (`--health-check-*`). */
export interface HttpHealthCheck extends HealthThresholds {
  /** The path each probe asks for with GET (`--health-check-path`). */
  path: string;
}

export interface HttpBackendPoolOptions {
  /** How long a backend may take for its headers, and between body chunks (`--timeout`). */
  timeoutMs: number;
  /** The relay's counters: from `firstBackendCounter` on, each backend's own (`backendCounterNames`). */
  counts: Float64Array;
  firstBackendCounter: number;
  /** Backends that start down (they did not pass the start-up probe). */
  downAtStart: readonly number[];
  healthCheck: HttpHealthCheck;
  policy: UpstreamPolicy;
  /** One per backend (`--upstream URL,weight=N`), for the weighted policy. */
  weights: readonly number[];
  /** Each change of a backend's state, as one line (logged once per change, not per request). */
  onStateChange: (line: string) => void;
}

export class HttpBackendPool implements HttpBackend, UpstreamsView {
  readonly selection: UpstreamSelection;
  /** Each backend as `host:port`, in --upstream order. */
  readonly names: readonly string[];
  observeLatency: ((index: number, seconds: number) => void) | null = null;
  private readonly members: UndiciBackend[];
  private readonly probes: HealthProbes;
  private closed = false;

  constructor(
    origins: readonly string[],
    private readonly options: HttpBackendPoolOptions,
  ) {
    this.selection = new UpstreamSelection(origins.length, options.healthCheck, options.policy, options.weights);
    this.names = origins.map((origin) => new URL(origin).host);
    for (const index of options.downAtStart) this.selection.markDown(index);
    this.members = origins.map(
      (origin, index) =>
        new UndiciBackend(origin, options.timeoutMs, () => {
          this.selection.outstanding[index]!--;
        }),
    );
    // `GET --health-check-path` (below 500 passes).
    const { path, timeoutMs, intervalMs } = options.healthCheck;
    this.probes = new HealthProbes(
      origins.length,
      intervalMs,
      (index) => probeHttpHealth(origins[index]!, path, timeoutMs),
      (index, problem) => {
        if (problem !== null) this.count(index, BackendCounter.PROBE_FAILURES);
        this.changed(index, this.selection.probed(index, problem === null), problem ?? '');
      },
    );
  }

  isUp(index: number): boolean {
    return this.selection.up[index]!;
  }

  /**
   * To the backend the policy picks; refused at once when none is up. A request the backend
   * could not take (refused, reset before its response) goes once to another if it may
   * (retryableElsewhere); a timeout does not: the backend may be acting on it.
   */
  async request(request: BackendRequest): Promise<BackendResponse> {
    const first = this.selection.pick();
    if (first < 0) throw new BackendError('no-backend-up', 'no backend is up');
    try {
      return await this.requestTo(first, request);
    } catch (error) {
      if (!(error instanceof BackendError) || error.kind !== 'unreachable' || !retryableElsewhere(request)) throw error;
      const second = this.selection.pick(first);
      if (second < 0) throw error;
      this.count(first, BackendCounter.RETRIED);
      return this.requestTo(second, request);
    }
  }

  private async requestTo(index: number, request: BackendRequest): Promise<BackendResponse> {
    this.selection.outstanding[index]!++; // until the member's onFinished
    this.count(index, BackendCounter.REQUESTS);
    const sentMs = Date.now();
    try {
      const response = await this.members[index]!.request(request);
      this.selection.answered(index);
      this.observeLatency?.(index, (Date.now() - sentMs) / 1000);
      return response;
    } catch (error) {
      // Refused, reset or too slow: against its health. Abandoned by our side: not its fault.
      if (error instanceof BackendError && error.kind !== 'aborted' && !this.closed) {
        this.count(index, BackendCounter.FAILURES);
        this.changed(index, this.selection.failed(index), error.message);
      }
      throw error;
    }
  }

  private count(index: number, counter: number): void {
    this.options.counts[this.options.firstBackendCounter + index * BACKEND_COUNTER_NAMES.length + counter]!++;
  }

  /** Backend `index` went up (+1) or down (−1; `reason`: its last failure), or neither (0): counted, and logged once. */
  private changed(index: number, change: -1 | 0 | 1, reason: string): void {
    if (change === 0) return;
    this.count(index, change > 0 ? BackendCounter.MARKED_UP : BackendCounter.MARKED_DOWN);
    const where = this.names[index]!;
    if (change > 0) {
      this.options.onStateChange(`backend ${where} is up again`);
      return;
    }
    const { downAfter } = this.options.healthCheck;
    this.options.onStateChange(`backend ${where} is down after ${downAfter} failures in a row; the last: ${reason}`);
    if (!this.selection.anyUp) this.options.onStateChange('no backend is up: requests get 502 at once until a health probe passes');
  }

  async close(): Promise<void> {
    this.closed = true;
    this.probes.close();
    await Promise.all(this.members.map((member) => member.close()));
  }
}
