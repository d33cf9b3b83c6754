/**
 * Which of several upstream resolvers a query goes to, and which are up: the pure part of an
 * upstream pool (io/upstream-pool.ts does the sockets and the probe timer).
 *
 * Policy: the healthy upstream with the fewest outstanding queries, dnsdist's `leastOutstanding`
 * (https://www.dnsdist.org/guides/downstreams.html, "Server selection policy"); ties go to the
 * lowest index, so that with equal load the first configured resolver is preferred.
 *
 * Health: dnsdist's default health check — a query for `. SOA` every second, 1 s to answer; an
 * upstream is marked down after `maxCheckFailures` (3) failed checks in a row and up again after
 * `rise` (1) successful one (https://www.dnsdist.org/reference/config.html#newServer).
 */

/** Failed probes in a row that mark an upstream down (dnsdist `maxCheckFailures`). */
export const DOWN_AFTER_FAILURES = 3;
/** Successful probes in a row that mark a down upstream up again (dnsdist `rise`). */
export const UP_AFTER_SUCCESSES = 1;
/**
 * Probe interval and timeout (dnsdist `checkInterval`, 1 s, and `checkTimeout`): the timeout just
 * under the interval, so that a silent upstream's probe has failed before the next is due, and
 * three failures take three seconds.
 */
export const PROBE_INTERVAL_MS = 1000;
export const PROBE_TIMEOUT_MS = 900;

export class UpstreamSelection {
  /** Queries sent and not yet answered or given up, per upstream. */
  readonly outstanding: Int32Array;
  readonly up: boolean[];
  private readonly failures: Int32Array;
  private readonly successes: Int32Array;

  /** All upstreams start up: start-up already checked that they answer (or marked them down, `markDown`). */
  constructor(readonly size: number) {
    this.outstanding = new Int32Array(size);
    this.up = new Array<boolean>(size).fill(true);
    this.failures = new Int32Array(size);
    this.successes = new Int32Array(size);
  }

  /** The healthy upstream with the fewest outstanding queries other than `except`, or −1 if there is none. */
  pick(except = -1): number {
    let best = -1;
    for (let i = 0; i < this.size; i++) {
      if (i === except || !this.up[i]) continue;
      if (best < 0 || this.outstanding[i]! < this.outstanding[best]!) best = i;
    }
    return best;
  }

  /** Whether any upstream is up. */
  get anyUp(): boolean {
    return this.up.includes(true);
  }

  markDown(index: number): void {
    this.up[index] = false;
    this.failures[index] = DOWN_AFTER_FAILURES;
    this.successes[index] = 0;
  }

  /**
   * A health probe of upstream `index` answered (`ok`) or not: returns +1 if that brought it up,
   * −1 if it brought it down, else 0.
   */
  probed(index: number, ok: boolean): -1 | 0 | 1 {
    if (ok) {
      this.failures[index] = 0;
      this.successes[index]!++;
      if (!this.up[index] && this.successes[index]! >= UP_AFTER_SUCCESSES) {
        this.up[index] = true;
        return 1;
      }
      return 0;
    }
    this.successes[index] = 0;
    this.failures[index]!++;
    if (this.up[index] && this.failures[index]! >= DOWN_AFTER_FAILURES) {
      this.up[index] = false;
      return -1;
    }
    return 0;
  }
}
