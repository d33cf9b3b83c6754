/**
 * A shard worker: one piscina task that runs for the life of the front end (or of this worker).
 * It drains its shard's ring and runs a whole DnsPipeline on its own: its own raw sockets, its
 * own UDP upstream socket, its own timers, and the soft state of the flows that hash to it. It
 * shares nothing with other shards but the ring and the cookie secret's value, so it takes no
 * lock. A new worker started for a dead one attaches to the same ring at its READ_INDEX and
 * carries on; the flows the dead one held are recovered by the clients' retransmissions (a
 * flow's later segments prove themselves with the timestamp token, docs/tcp-behaviour.md).
 *
 * Messages with the main thread: src/shard-protocol.ts.
 */
import { randomFillSync } from 'node:crypto';
import { threadId } from 'node:worker_threads';
import { APPLICATION_COUNTER_NAMES, DnsPipeline, HttpPipeline, type TcpPipeline } from '../src/pipeline.js';
import { SynCookies } from '../src/tcp/cookie.js';
import { DEFAULT_RESPONDER_CONFIG } from '../src/tcp/responder.js';
import { LiveFlows } from '../src/tcp/live-flows.js';
import { RingConsumer } from '../src/ring/ring.js';
import { RawSender, rawSocketProblem } from '../src/io/raw-send.js';
import { UdpTcpUpstream } from '../src/io/upstream.js';
import { UndiciBackend } from '../src/io/http-backend.js';
import { nameThisThread } from '../src/io/thread-name.js';
import { pipelineMetrics, snapshot } from '../src/metrics.js';
import { STATS_INTERVAL_MS, type ShardCommand, type ShardReport, type ShardStats, type ShardTask } from '../src/shard-protocol.js';

/** Timer resolution for retransmission and upstream timeouts. */
const TICK_INTERVAL_MS = 10;
/**
 * Frames handled before the event loop gets a turn: enough to amortise the turn, few enough
 * that the upstream socket's answers and the 10 ms timers are never kept waiting long (64
 * frames take well under a millisecond).
 */
const BATCH_SIZE = 64;
/** Longest sleep on an empty ring; the producer's notify normally ends it much sooner. */
const IDLE_TIMEOUT_MS = 1000;

export default async function runShard(task: ShardTask): Promise<ShardStats> {
  const { control } = task;
  nameThisThread(`stcp-shard${task.shard}`);
  let sender: RawSender;
  try {
    sender = new RawSender();
  } catch (error) {
    control.close();
    throw new Error(rawSocketProblem(error as Error));
  }
  const cookies = new SynCookies(task.secrets[0]!);
  for (const secret of task.secrets.slice(1)) cookies.rotate(secret);

  const consumer = new RingConsumer(task.ring);
  const liveFlows = new LiveFlows(task.liveFlows, task.shard);
  liveFlows.clear();
  let ticker: NodeJS.Timeout | undefined;
  let reporter: NodeJS.Timeout | undefined;
  let closeApplication = (): void => {};
  try {
    const tcp = { ...DEFAULT_RESPONDER_CONFIG, closeAfterResponse: task.closeAfterResponse };
    const application = task.application;
    let running: TcpPipeline & { relay: { counts: Float64Array; observeLatency: ((seconds: number) => void) | null } };
    if (application.kind === 'dns') {
      let pipeline: DnsPipeline | undefined;
      // Answers arrive from the event loop, after `pipeline` is set below.
      const upstream = new UdpTcpUpstream(application.upstream, (bytes, offset, length) => pipeline!.relay.handleUpstreamAnswer(bytes, offset, length, Date.now()));
      closeApplication = () => upstream.close();
      pipeline = new DnsPipeline(task.linkType, task.checksumPolicy, cookies, tcp, sender, { timeoutMs: application.timeoutMs }, upstream, (bytes) => randomFillSync(bytes), liveFlows);
      running = pipeline;
    } else {
      const backend = new UndiciBackend(application.origin, application.timeoutMs);
      closeApplication = () => void backend.close();
      running = new HttpPipeline(task.linkType, task.checksumPolicy, cookies, tcp, sender, backend, liveFlows);
    }
    const metrics = pipelineMetrics(task.shard, {
      decodeCounts: running.decodeCounts,
      outcomeCounts: running.outcomeCounts,
      events: running.responder.events,
      application: application.kind,
      applicationCounterNames: APPLICATION_COUNTER_NAMES[application.kind],
      applicationCounts: running.relay.counts,
      flows: () => running.responder.flows.size,
      queuedBytes: () => running.responder.queuedBytes,
      packetsSent: () => sender.stats.sent,
      sendFailures: () => sender.stats.failed,
    });
    running.relay.observeLatency = metrics.observeUpstreamLatency;
    const stats = (): ShardStats => ({
      decode: Array.from(running.decodeCounts),
      outcomes: Array.from(running.outcomeCounts),
      tcpEvents: Array.from(running.responder.events),
      relay: Array.from(running.relay.counts),
      flows: running.responder.flows.size,
      queuedBytes: running.responder.queuedBytes,
      sent: sender.stats.sent,
      sendFailed: sender.stats.failed,
    });
    const report = (message: ShardReport): void => control.postMessage(message);

    control.on('message', (command: ShardCommand) => {
      switch (command.type) {
        case 'rotate':
          cookies.rotate(command.secret);
          report({ type: 'rotated' });
          break;
        case 'stop':
          consumer.stop();
          break;
      }
    });
    ticker = setInterval(() => running.tick(Date.now()), TICK_INTERVAL_MS);
    reporter = setInterval(() => {
      void snapshot(metrics.registry).then((taken) => report({ type: 'stats', stats: stats(), metrics: taken }));
    }, STATS_INTERVAL_MS);
    report({ type: 'ready', threadId });

    // The frame is processed in place in its ring slot: `bytes` is a view of the whole ring. The
    // clock is read once per batch (a batch takes well under a millisecond): a fresh Date.now()
    // per frame would be a new heap number per frame.
    let batchStartMs = Date.now();
    const handleFrame = (bytes: Uint8Array, offset: number, capturedLength: number): void =>
      running.handleFrame(bytes, offset, capturedLength, batchStartMs);
    await consumer.run(handleFrame, { batchSize: BATCH_SIZE, idleTimeoutMs: IDLE_TIMEOUT_MS, beforeBatch: () => (batchStartMs = Date.now()) });
    // Stopped: the capture thread stopped first, so what is left in the ring (at most a ring's
    // worth) is all there will be. Handle it, so that the final counters include every packet
    // that arrived before the stop.
    batchStartMs = Date.now();
    consumer.drain(handleFrame, consumer.slotCount);
    return stats();
  } finally {
    clearInterval(ticker);
    clearInterval(reporter);
    control.close();
    closeApplication();
    sender.close();
  }
}
