/**
 * The shard workers, seen from the main thread: a piscina pool of exactly one thread per shard,
 * each running one long task (thread.ts) that drains that shard's ring until stopped.
 *
 * piscina starts the threads, applies their resource limits, and replaces a thread that dies
 * (its minThreads); this class re-runs the dead thread's shard task, which then lands on the
 * replacement and resumes the same ring at its READ_INDEX. The other shards' threads, rings and
 * flows are untouched. Every death is logged and counted (`shardN.restarts`).
 *
 * Counters: each worker reports its metrics every METRICS_INTERVAL_MS and once more when it
 * stops; when a worker dies, the counters of its last report are kept and added to its
 * successor's, so at most that interval's counts are lost. The rings' counters (packets in,
 * drops) live in shared memory and lose nothing.
 */
import { MessageChannel, type MessagePort, type Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { readRingCounters, type RingRegion } from '../../src/ring/ring.js';
import { countersOnly, type RegistrySnapshot } from '../../src/metrics.js';
import type { ShardCommand, ShardReport, ShardTask } from './protocol.js';

/** The shard task's settings except what differs per shard or per start. */
export type ShardSettings = Omit<ShardTask, 'shard' | 'ring' | 'secrets' | 'control'>;

const SHARD_WORKER = new URL('./thread.js', import.meta.url).href;
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
  /** The counters of dead workers' last reports (not their gauges: their flows died with them). */
  retired: RegistrySnapshot[];
  /** The running worker's latest metrics (its final ones once stopped). */
  latest: RegistrySnapshot | null;
  /** Resolves when the running task ends, whatever the outcome. */
  done: Promise<void>;
}

export class ShardPool {
  private readonly pool: Piscina<ShardTask, RegistrySnapshot>;
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
    this.pool = new Piscina<ShardTask, RegistrySnapshot>({
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
      retired: [],
      latest: null,
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

  /** Every shard's metrics: each running worker's latest, and the counters its dead predecessors left. */
  metricsSnapshots(): RegistrySnapshot[] {
    return this.shards.flatMap((shard) => (shard.latest === null ? shard.retired : [...shard.retired, shard.latest]));
  }

  /** Per shard: ring counters (shared memory, exact) and restarts. */
  ringAndRestarts(): { shard: number; ringIn: number; ringDropped: number; restarts: number }[] {
    return this.shards.map((shard) => {
      const ring = readRingCounters(shard.ring);
      return { shard: shard.index, ringIn: ring.pushed, ringDropped: ring.dropped, restarts: shard.restarts };
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
          if (!initial)
            this.log(`shard ${shard.index}: worker thread ${report.threadId} took over its ring after ${Date.now() - started} ms`);
          resolve();
        } else if (report.type === 'metrics') {
          shard.latest = report.metrics;
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
          if (shard.latest !== null) shard.retired.push(countersOnly(shard.latest));
          shard.latest = null;
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
