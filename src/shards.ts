/**
 * The shard workers, seen from the main thread: a piscina pool of exactly one thread per shard,
 * each running one long task (workers/shard.ts) that drains that shard's ring until stopped.
 *
 * piscina starts the threads, applies their resource limits, and replaces a thread that dies
 * (its minThreads); this class re-runs the dead thread's shard task, which then lands on the
 * replacement and resumes the same ring at its READ_INDEX. The other shards' threads, rings and
 * flows are untouched. Every death is logged and counted (`shardN.restarts`).
 *
 * Counters: each worker reports its own every STATS_INTERVAL_MS and once more when it stops;
 * when a worker dies, its last report is kept, so at most that interval's counts are lost. The
 * rings' counters (packets in, drops) live in shared memory and lose nothing.
 */
import { MessageChannel, type MessagePort, type Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { readRingCounters, type RingRegion } from './ring/ring.js';
import type { ShardCommand, ShardReport, ShardStats, ShardTask } from './shard-protocol.js';
import type { RegistrySnapshot } from './metrics.js';

/** The shard task's settings except what differs per shard or per start. */
export type ShardSettings = Omit<ShardTask, 'shard' | 'ring' | 'secrets' | 'control'>;

const SHARD_WORKER = new URL('../workers/shard.js', import.meta.url).href;
/**
 * Heap per shard worker. A shard's soft state is bounded by the responder (maxFlows 65536,
 * maxQueuedBytes 256 MiB); a worker that still outgrows this has a leak, and is better killed by
 * V8 (ERR_WORKER_OUT_OF_MEMORY) and replaced than left to take the whole process down.
 */
const SHARD_HEAP_MB = 1024;
/** A worker that dies sooner than this after starting is restarted only after this long. */
const RESTART_BACKOFF_MS = 1000;

interface Shard {
  readonly index: number;
  readonly ring: RingRegion;
  /** The running worker's control port; null between a death and the restart. */
  control: MessagePort | null;
  /** The running worker's thread, for the test hook. */
  threadId: number;
  restarts: number;
  /** Counters of dead workers, summed (gauges excepted: their flows died with them). */
  retired: ShardStats | null;
  /** The running worker's latest report (its final one once stopped). */
  latest: ShardStats | null;
  /** The running worker's latest Prometheus metrics (they start again from zero after a restart). */
  metrics: RegistrySnapshot | null;
  /** Resolves when the running task ends, whatever the outcome. */
  done: Promise<void>;
}

export class ShardPool {
  private readonly pool: Piscina<ShardTask, ShardStats>;
  private readonly shards: Shard[];
  private stopping = false;

  /**
   * `secrets` is the cookie secret history, oldest first (see ShardTask.secrets); `log` gets one
   * line per worker death and restart.
   */
  constructor(
    rings: readonly RingRegion[],
    private readonly settings: ShardSettings,
    private readonly secrets: Uint8Array[],
    private readonly log: (line: string) => void,
  ) {
    this.pool = new Piscina<ShardTask, ShardStats>({
      filename: SHARD_WORKER,
      minThreads: rings.length,
      maxThreads: rings.length,
      concurrentTasksPerWorker: 1,
      // The task never returns while the front end runs; never time an idle thread out.
      idleTimeout: Number.POSITIVE_INFINITY,
      // piscina's default has a worker block in Atomics.wait between tasks; ours serve sockets.
      atomics: 'disabled',
      resourceLimits: { maxOldGenerationSizeMb: SHARD_HEAP_MB },
    });
    // Emitted for a thread that dies without a task (none of ours); the task path logs the rest.
    this.pool.on('error', (error: Error) => this.log(`shard worker error: ${error.message}`));
    this.shards = rings.map((ring, index) => ({
      index,
      ring,
      control: null,
      threadId: -1,
      restarts: 0,
      retired: null,
      latest: null,
      metrics: null,
      done: Promise.resolve(),
    }));
  }

  get size(): number {
    return this.shards.length;
  }

  /** Starts every shard; rejects with the first worker's failure (e.g. no raw-socket privilege). */
  async start(): Promise<void> {
    try {
      await Promise.all(this.shards.map((shard) => this.launch(shard, true)));
    } catch (error) {
      await this.stop(0);
      throw error;
    }
  }

  /**
   * Tells every running worker to issue cookies with `secret` (the previous one stays valid), and
   * workers started later too. Resolves to how many workers confirmed within `timeoutMs`.
   */
  async rotate(secret: Uint8Array, timeoutMs: number): Promise<number> {
    this.secrets.splice(0, this.secrets.length, this.secrets.at(-1)!, secret);
    const confirmations = this.shards.flatMap((shard) => {
      const control = shard.control;
      if (control === null) return [];
      return [
        new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => finish(false), timeoutMs);
          const onReport = (report: ShardReport): void => {
            if (report.type === 'rotated') finish(true);
          };
          const finish = (confirmed: boolean): void => {
            clearTimeout(timer);
            control.off('message', onReport);
            resolve(confirmed);
          };
          control.on('message', onReport);
          control.postMessage({ type: 'rotate', secret } satisfies ShardCommand);
        }),
      ];
    });
    return (await Promise.all(confirmations)).filter(Boolean).length;
  }

  /**
   * Stops every worker after its current batch and waits up to `timeoutMs` for their final
   * counters; then ends the pool (terminating any thread still running).
   */
  async stop(timeoutMs: number): Promise<void> {
    this.stopping = true;
    for (const shard of this.shards) this.command(shard, { type: 'stop' });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(this.shards.map((shard) => shard.done)),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs))),
    ]);
    clearTimeout(timer);
    await this.pool.destroy();
  }

  /** Totals over all shards and all workers each shard has had. */
  totals(): ShardStats {
    return sumStats(this.shards.flatMap((shard) => [shard.retired, shard.latest]));
  }

  /** Each running worker's latest metrics (as of its last report, at most a second old). */
  metricsSnapshots(): RegistrySnapshot[] {
    return this.shards.flatMap((shard) => (shard.metrics === null ? [] : [shard.metrics]));
  }

  /** Per shard: ring counters (shared memory, exact) and restarts. */
  ringAndRestarts(): { shard: number; ringIn: number; ringDropped: number; restarts: number }[] {
    return this.shards.map((shard) => {
      const ring = readRingCounters(shard.ring);
      return { shard: shard.index, ringIn: ring.pushed, ringDropped: ring.dropped, restarts: shard.restarts };
    });
  }

  /** `shardN.name=value` pairs: packets in, replies out, ring drops, flows with soft state, restarts. */
  summaryPairs(): string[] {
    return this.shards.flatMap((shard) => {
      const ring = readRingCounters(shard.ring);
      const stats = sumStats([shard.retired, shard.latest]);
      const p = `shard${shard.index}.`;
      return [
        `${p}packets_in=${ring.popped}`,
        `${p}replies_out=${stats.sent}`,
        `${p}ring_drops=${ring.dropped}`,
        `${p}flows=${stats.flows}`,
        `${p}restarts=${shard.restarts}`,
      ];
    });
  }

  /**
   * Test hook: terminates shard `index`'s worker thread at once, as a crash would (no cleanup,
   * mid-batch). Resolves once the thread has exited; the restart follows as for any death.
   */
  async terminateWorker(index: number): Promise<void> {
    const shard = this.shards[index];
    const worker = this.pool.threads.find((thread: Worker) => thread.threadId === shard?.threadId);
    if (worker === undefined) throw new Error(`shard ${index} has no running worker`);
    await worker.terminate();
  }

  /**
   * Runs `shard`'s task on a free thread of the pool. Resolves when the worker reports ready.
   * A first (`initial`) launch rejects if the task ends before that: a start-up failure. Any
   * other end of the task, except by `stop`, is logged, counted and followed by a new launch.
   */
  private launch(shard: Shard, initial: boolean): Promise<void> {
    const { port1, port2 } = new MessageChannel();
    const started = Date.now();
    let ready = false;
    return new Promise<void>((resolve, reject) => {
      const secrets = [...this.secrets];
      port1.on('message', (report: ShardReport) => {
        if (report.type === 'ready') {
          ready = true;
          shard.threadId = report.threadId;
          shard.control = port1;
          // A rotation or a stop while it was starting did not reach it.
          const current = this.secrets.at(-1)!;
          if (current !== secrets.at(-1)) this.command(shard, { type: 'rotate', secret: current });
          if (this.stopping) this.command(shard, { type: 'stop' });
          if (!initial) this.log(`shard ${shard.index}: worker thread ${report.threadId} took over its ring after ${Date.now() - started} ms`);
          resolve();
        } else if (report.type === 'stats') {
          shard.latest = report.stats;
          if (report.metrics !== undefined) shard.metrics = report.metrics;
        }
      });
      const task: ShardTask = { ...this.settings, shard: shard.index, ring: shard.ring, secrets, control: port2 };
      const run = this.pool.run(task, { transferList: [port2] });
      shard.done = run.then(
        (final) => {
          shard.latest = final;
          shard.control = null;
          port1.close();
        },
        (error: unknown) => {
          shard.control = null;
          port1.close();
          const message = error instanceof Error ? error.message : String(error);
          if (!ready && initial) {
            reject(new Error(message));
            return;
          }
          if (this.stopping) return;
          shard.restarts++;
          shard.retired = sumStats([shard.retired, shard.latest], false);
          shard.latest = null;
          shard.metrics = null;
          const delay = Date.now() - started < RESTART_BACKOFF_MS ? RESTART_BACKOFF_MS : 0;
          const who = ready ? `worker thread ${shard.threadId} died` : 'restarted worker failed to start';
          this.log(`shard ${shard.index}: ${who} (${message}); restarting it on its ring (restart ${shard.restarts})`);
          setTimeout(() => {
            if (!this.stopping) void this.launch(shard, false);
          }, delay);
        },
      );
    });
  }

  private command(shard: Shard, command: ShardCommand): void {
    shard.control?.postMessage(command);
  }
}

/** Adds counters element by element; gauges (flows, queued bytes) too unless `withGauges` is false. */
function sumStats(parts: readonly (ShardStats | null)[], withGauges = true): ShardStats {
  const total: ShardStats = { decode: [], outcomes: [], tcpEvents: [], relay: [], flows: 0, queuedBytes: 0, sent: 0, sendFailed: 0 };
  const add = (into: number[], from: readonly number[]): void => {
    for (let i = 0; i < from.length; i++) into[i] = (into[i] ?? 0) + from[i]!;
  };
  for (const part of parts) {
    if (part === null) continue;
    add(total.decode, part.decode);
    add(total.outcomes, part.outcomes);
    add(total.tcpEvents, part.tcpEvents);
    add(total.relay, part.relay);
    if (withGauges) {
      total.flows += part.flows;
      total.queuedBytes += part.queuedBytes;
    }
    total.sent += part.sent;
    total.sendFailed += part.sendFailed;
  }
  return total;
}
