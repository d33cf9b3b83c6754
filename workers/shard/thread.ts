/**
 * A shard worker: one piscina task that runs for the life of the front end (or of this worker).
 * It drains its shard's ring and runs a whole TcpPipeline (src/pipeline.ts) on its own: its own
 * raw sockets, its own relay with its upstream sockets, its own timers, and the soft state of
 * the flows that hash to it. It
 * shares nothing with other shards but the ring and the cookie secret's value, so it takes no
 * lock. A new worker started for a dead one attaches to the same ring at its READ_INDEX and
 * carries on; the flows the dead one held are recovered by the clients' retransmissions (a
 * flow's later segments prove themselves with the timestamp token, docs/tcp-behaviour.md).
 *
 * Messages with the main thread: protocol.ts; the main thread's side: pool.ts.
 */
import { threadId } from 'node:worker_threads';
import { applicationFor } from '../../src/application.js';
import { TcpPipeline } from '../../src/pipeline.js';
import { SynCookies } from '../../src/tcp/cookie.js';
import { DEFAULT_RESPONDER_CONFIG } from '../../src/tcp/responder.js';
import { LiveFlows } from '../../src/tcp/live-flows.js';
import { FlowHash } from '../../src/wire/flow-hash.js';
import { MartianSources } from '../../src/wire/martian.js';
import type { Flow } from '../../src/tcp/flow.js';
import type { Relay } from '../../src/tcp/transport.js';
import { type FrameHandler, RingConsumer } from '../../src/ring/ring.js';
import type { KernelChecksum } from '../../src/wire/segment.js';
import { RawSender, rawSocketProblem, type TooBigListener } from '../../src/io/raw-send.js';
import { LinkSender } from '../../src/io/link-send.js';
import { randomBytes } from 'node:crypto';
import { PathMtuTable } from '../../src/tcp/path-mtu.js';
import { nameThisThread } from '../../src/io/thread-name.js';
import { pipelineMetrics, snapshot, type RegistrySnapshot } from '../../src/metrics.js';
import { METRICS_INTERVAL_MS, type ShardCommand, type ShardReport, type ShardTask } from './protocol.js';

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

export default async function runShard(task: ShardTask): Promise<RegistrySnapshot> {
  const { control } = task;
  nameThisThread(`stcp-shard${task.shard}`);
  let sender: RawSender;
  let linkSender: LinkSender | null = null;
  try {
    sender = new RawSender();
  } catch (error) {
    control.close();
    throw new Error(rawSocketProblem(error as Error));
  }
  if (task.linkInterface !== null) {
    try {
      linkSender = new LinkSender(task.linkInterface);
    } catch (error) {
      sender.close();
      control.close();
      throw new Error(
        `cannot send on ${task.linkInterface} (${(error as Error).message}): run as root with CAP_NET_RAW, or give --gso off`,
      );
    }
  }
  const cookies = SynCookies.fromHistory(task.secrets);

  const consumer = new RingConsumer(task.ring);
  const liveFlows = new LiveFlows(task.liveFlows, task.shard, new FlowHash(task.routingKey));
  liveFlows.clear();
  let ticker: NodeJS.Timeout | undefined;
  let reporter: NodeJS.Timeout | undefined;
  let relay: Relay<Flow> | undefined;
  try {
    const application = applicationFor(task.application);
    relay = application.open<Flow>();
    // The MTU toward each client, from the route (a connected UDP socket's IP_MTU) and from what
    // flows learn (tcp/path-mtu.ts); keyed by a secret of this thread's own.
    const routeMtu = (family: 4 | 6, address: Uint8Array): number => sender.pathMtu(family, address);
    const pathMtus = new PathMtuTable(routeMtu, randomBytes(16));
    const pipeline = new TcpPipeline(
      {
        linkType: task.linkType,
        checksumPolicy: task.checksumPolicy,
        cookies,
        tcp: {
          ...DEFAULT_RESPONDER_CONFIG,
          closeAfterResponse: task.closeAfterResponse,
          ...task.limits,
        },
        sender,
        linkSender,
        liveFlows,
        martians: new MartianSources(task.ownAddresses),
        pathMtus,
        routeMtu,
      },
      application,
      relay,
    );
    const metrics = pipelineMetrics(task.shard, {
      decodeCounts: pipeline.decodeCounts,
      checksumOffloaded: () => pipeline.checksumOffloaded,
      checksumValidated: () => pipeline.checksumValidated,
      outcomeCounts: pipeline.outcomeCounts,
      events: pipeline.responder.events,
      protocol: application,
      relayCounts: relay.counts,
      upstreams: relay.upstreams,
      flows: () => pipeline.responder.flows.size,
      queuedBytes: () => pipeline.responder.queuedBytes,
      packetsSent: () => sender.stats.sent + (linkSender?.stats.sent ?? 0),
      sendFailures: () => sender.stats.failed + (linkSender?.stats.failed ?? 0),
      linkFrames: () => linkSender?.stats.sent ?? 0,
      linkSegments: () => linkSender?.segments ?? 0,
    });
    relay.observeLatency = metrics.observeUpstreamLatency;
    const onTooBig: TooBigListener = (family, header, offset, length, packetLength) =>
      pipeline.sendRefused(family, header, offset, length, packetLength, Date.now());
    sender.refused.onTooBig = onTooBig;
    if (linkSender !== null) linkSender.refused.onTooBig = onTooBig;
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
    ticker = setInterval(() => pipeline.tick(Date.now()), TICK_INTERVAL_MS);
    reporter = setInterval(() => {
      void snapshot(metrics.registry).then((taken) => report({ type: 'metrics', metrics: taken }));
    }, METRICS_INTERVAL_MS);
    report({ type: 'ready', threadId });

    // The frame is processed in place in its ring slot: `bytes` is a view of the whole ring. The
    // clock is read once per batch (a batch takes well under a millisecond): a fresh Date.now()
    // per frame would be a new heap number per frame.
    let batchStartMs = Date.now();
    const handleFrame: FrameHandler = (bytes, offset, capturedLength, _wireLength, _seconds, _micros, kernelChecksum) =>
      pipeline.handleFrame(bytes, offset, capturedLength, kernelChecksum as KernelChecksum, batchStartMs);
    await consumer.run(handleFrame, {
      batchSize: BATCH_SIZE,
      idleTimeoutMs: IDLE_TIMEOUT_MS,
      beforeBatch: () => (batchStartMs = Date.now()),
    });
    // Stopped: the capture thread stopped first, so what is left in the ring (at most a ring's
    // worth) is all there will be. Handle it, so that the final counters include every packet
    // that arrived before the stop.
    batchStartMs = Date.now();
    consumer.drain(handleFrame, consumer.slotCount);
    return await snapshot(metrics.registry);
  } finally {
    clearInterval(ticker);
    clearInterval(reporter);
    control.close();
    relay?.close();
    linkSender?.close();
    sender.close();
  }
}
