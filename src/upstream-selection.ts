/**
 * Which of several upstreams — resolvers of a DNS pool (io/upstream-pool.ts), web servers of an
 * HTTP pool (io/http-backend-pool.ts) — a query or request goes to, which are up, and when each is
 * probed: the part of a pool shared by both front ends (the pools do the sockets, the probes
 * themselves and the counting).
 *
 * Policies (dnsdist's names in https://www.dnsdist.org/guides/downstreams.html, "Server selection
 * policy"):
 * - `least-outstanding` (the default, dnsdist's `leastOutstanding`, nginx's `least_conn`): the
 *   healthy upstream with the fewest queries or requests outstanding; ties go to the lowest index,
 *   so that with equal load the first configured one is preferred. Like dnsdist's, it ignores weights.
 * - `weighted`: each healthy upstream gets queries in proportion to its weight — dnsdist's
 *   `wrandom` share, dealt by nginx's smooth weighted round robin rather than drawn at random, so
 *   that the split is exact over every round of (sum of weights) queries and interleaved within it
 *   (weights 1 and 3: b a b b, b a b b, …). A down upstream's share goes to the others.
 *
 * Health (dnsdist's `maxCheckFailures` and `rise`, nginx's `fails` and `passes`): an upstream is
 * marked down after `downAfter` failures in a row — failed health probes, and real queries or
 * requests it failed (DNS: left unanswered within their time; HTTP: refused, reset or timed out),
 * as dnsdist counts timeouts with lazy health checks — and up again after `upAfter` successful
 * probes in a row. An answer to a real query or probe breaks the run of failures. Only probes
 * bring a down upstream up: it gets no queries.
 */

export type UpstreamPolicy = 'least-outstanding' | 'weighted';
export const UPSTREAM_POLICIES: readonly UpstreamPolicy[] = ['least-outstanding', 'weighted'];

/** What both pools' health checks share (`--health-check-interval`, `-timeout`, `-down-after`, `-up-after`). */
export interface HealthThresholds {
  /** A probe this often (dnsdist `checkInterval`, 1 s), each given this long to be answered (`checkTimeout`). */
  intervalMs: number;
  timeoutMs: number;
  /** Failures in a row that mark an upstream down (dnsdist `maxCheckFailures`, 3). */
  downAfter: number;
  /** Successful probes in a row that mark a down upstream up again (dnsdist `rise`, 1). */
  upAfter: number;
}

/**
 * dnsdist's defaults, but the probe timeout just under the interval, so that a silent upstream's
 * probe has failed before the next is due and three failures take three seconds.
 */
export const DEFAULT_HEALTH_THRESHOLDS: HealthThresholds = {
  intervalMs: 1000,
  timeoutMs: 900,
  downAfter: 3,
  upAfter: 1,
};

/**
 * After a pool's start-up probes (`problems[i]` null: upstream i answered), the upstreams that
 * start down, each named in one log line.
 */
export function downAtStart(problems: readonly (string | null)[], log?: (line: string) => void): number[] {
  const down: number[] = [];
  problems.forEach((problem, index) => {
    if (problem === null) return;
    log?.(`${problem} (starting with the others)`);
    down.push(index);
  });
  return down;
}

/**
 * The names of a pool's per-upstream counters, after the relay's own in the same array: for each
 * upstream (in `--upstream` order, from 0) each of `names`, as upstream0_queries, upstream0_answers, …
 */
export function perUpstreamCounterNames(size: number, names: readonly string[]): string[] {
  const all: string[] = [];
  for (let i = 0; i < size; i++) for (const name of names) all.push(`upstream${i}_${name}`);
  return all;
}

export class UpstreamSelection {
  /** Queries sent and not yet answered or given up, per upstream. */
  readonly outstanding: Int32Array;
  readonly up: boolean[];
  private readonly failures: Int32Array;
  private readonly successes: Int32Array;
  /** Smooth weighted round robin: each upstream's current weight. */
  private readonly current: Float64Array;

  /**
   * All upstreams start up: start-up already checked that they answer (or marked them down,
   * `markDown`). `weights`: one per upstream (all 1 when absent).
   */
  constructor(
    readonly size: number,
    private readonly health: Pick<HealthThresholds, 'downAfter' | 'upAfter'> = DEFAULT_HEALTH_THRESHOLDS,
    private readonly policy: UpstreamPolicy = 'least-outstanding',
    private readonly weights: readonly number[] = new Array<number>(size).fill(1),
  ) {
    this.outstanding = new Int32Array(size);
    this.up = new Array<boolean>(size).fill(true);
    this.failures = new Int32Array(size);
    this.successes = new Int32Array(size);
    this.current = new Float64Array(size);
  }

  /** The upstream that is up which the policy picks, other than `except`; −1 if there is none. */
  pick(except = -1): number {
    let best = -1;
    if (this.policy === 'least-outstanding') {
      for (let i = 0; i < this.size; i++) {
        if (i === except || !this.up[i]) continue;
        if (best < 0 || this.outstanding[i]! < this.outstanding[best]!) best = i;
      }
      return best;
    }
    // nginx's smooth weighted round robin (ngx_http_upstream_get_peer): every candidate's current
    // weight grows by its weight; the largest is picked and loses the candidates' total.
    let total = 0;
    for (let i = 0; i < this.size; i++) {
      if (i === except || !this.up[i]) continue;
      this.current[i]! += this.weights[i]!;
      total += this.weights[i]!;
      if (best < 0 || this.current[i]! > this.current[best]!) best = i;
    }
    if (best >= 0) this.current[best]! -= total;
    return best;
  }

  /** Whether any upstream is up. */
  get anyUp(): boolean {
    return this.up.includes(true);
  }

  markDown(index: number): void {
    this.up[index] = false;
    this.failures[index] = this.health.downAfter;
    this.successes[index] = 0;
  }

  /**
   * A health probe of upstream `index` answered (`ok`) or not: returns +1 if that brought it up,
   * −1 if it brought it down, else 0.
   */
  probed(index: number, ok: boolean): -1 | 0 | 1 {
    if (!ok) return this.failed(index);
    this.failures[index] = 0;
    this.successes[index]!++;
    if (!this.up[index] && this.successes[index]! >= this.health.upAfter) {
      this.up[index] = true;
      return 1;
    }
    return 0;
  }

  /** Upstream `index` answered a real query or request: its run of failures ends (only probes bring it up). */
  answered(index: number): void {
    this.failures[index] = 0;
  }

  /** Upstream `index` failed a probe, or a query or request: returns −1 if that brought it down, else 0. */
  failed(index: number): -1 | 0 {
    this.successes[index] = 0;
    this.failures[index]!++;
    if (this.up[index] && this.failures[index]! >= this.health.downAfter) {
      this.up[index] = false;
      return -1;
    }
    return 0;
  }
}

/**
 * A health probe of every upstream each `intervalMs` (`--health-check-interval`), never a second
 * one to an upstream whose last is still out. `probe(index)` resolves to null if upstream `index`
 * answered, else to the reason; `onResult` hears each, until `close`.
 */
export class HealthProbes {
  private readonly probing: boolean[];
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  constructor(
    size: number,
    intervalMs: number,
    private readonly probe: (index: number) => Promise<string | null>,
    private readonly onResult: (index: number, problem: string | null) => void,
  ) {
    this.probing = new Array<boolean>(size).fill(false);
    this.timer = setInterval(() => this.probeAll(), intervalMs);
    this.timer.unref();
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
  }

  private probeAll(): void {
    this.probing.forEach((out, index) => {
      if (out || this.closed) return;
      this.probing[index] = true;
      void this.probe(index).then((problem) => {
        this.probing[index] = false;
        if (!this.closed) this.onResult(index, problem);
      });
    });
  }
}
