/**
 * Assembles a running front end from its parts; it does nothing else. The stateless (raw)
 * front end: the firewall guard, the capture thread (workers/capture/), one frame ring per
 * shard and the shard workers (workers/shard/), each with its own raw sender and relay. The
 * kernel front end: the same relay over kernel sockets. Start-up checks each privilege and
 * resource in turn so that what is missing is reported as one line naming the fix; each part
 * started pushes its own undoing on a stack, which unwinds on a later failure and at stop.
 * docs/architecture.md follows one packet through the parts.
 */
import { existsSync } from 'node:fs';
import v8 from 'node:v8';
import { ChecksumPolicy } from './wire/segment.js';
import { LiveFlows } from './tcp/live-flows.js';
import { type ConnectionLimits, DEFAULT_RESPONDER_CONFIG } from './tcp/responder.js';
import { createRing } from './ring/ring.js';
import { applicationFor, type ApplicationSettings } from './application.js';
import { KernelTransport, type KernelConnection } from './io/kernel-transport.js';
import { captureLanes, lroEnabled, wholeFramesLane } from './io/capture.js';
import { sendsOnLink } from './io/link-send.js';
import { KernelTcpGuard } from './io/firewall.js';
import { RawSender, rawSocketProblem } from './io/raw-send.js';
import { loadCookieSecret, randomRoutingKey, type CookieSecret } from './io/secret.js';
import { hostAddresses } from './io/host-addresses.js';
import { startMetricsServer } from './io/metrics-server.js';
import { groMaxSizes, kernelListenerProblem, listenAddressProblem, offloadProblem } from './io/preflight.js';
import { exposition, frontEndMetrics, kernelTransportMetrics, snapshot, summaryLine, type RegistrySnapshot } from './metrics.js';
import { startCaptureThread } from '../workers/capture/handle.js';
import { ShardPool } from '../workers/shard/pool.js';
import type { Endpoint } from './endpoint.js';

/** What every front end takes. */
export interface FrontEndOptions {
  /** What it relays to (src/application.ts). */
  application: ApplicationSettings;
  listen: Endpoint[];
  closeAfterResponse: boolean;
  /**
   * Bounds on connections and sources; each one left out takes its default (DEFAULT_RESPONDER_CONFIG's,
   * and for maxPipelined the protocol's).
   */
  limits: Partial<ConnectionLimits>;
  /** Serve Prometheus metrics at http://ADDR:PORT/metrics. */
  metrics?: Endpoint | undefined;
}

/** What the stateless front end takes besides. */
export interface RawFrontEndOptions extends FrontEndOptions {
  /** Capture interface. */
  interface: string;
  checksumPolicy: ChecksumPolicy;
  /** The capture's first lane's kernel buffer (io/capture.ts captureLanes); the others are sized from it. */
  captureBufferBytes?: number;
  /** Send segments with link addresses on the capture interface, taken together into GSO frames (io/link-send.ts). */
  gso: boolean;
  /** File holding the shared SYN cookie secret (re-read on SIGHUP); else environment or random. */
  cookieSecretFile?: string | undefined;
  /** Shard worker threads, each with its own ring. */
  workers: number;
  /** Log line for events while running (a shard worker's death and restart). */
  log?: (line: string) => void;
}

export interface RunningFrontEnd {
  /** What the start-up line says about it, e.g. where the cookie secret came from. */
  readonly description: string;
  /**
   * Re-reads the cookie secret file and rotates to it; resolves to a line saying where it took
   * effect, rejects with a one-line Error on failure.
   */
  rotateSecret(): Promise<string>;
  /** Counters as `name=value` pairs (metrics.ts summaryLine). Final after `stop`. */
  summary(): Promise<string>;
  stop(): Promise<void>;
  /** Test hook: kill shard `index`'s worker thread as a crash would. */
  terminateShardWorker?(index: number): Promise<void>;
}

/** One-line start-up failure; the CLI prints its message without a stack trace. */
export class StartupError extends Error {
  override readonly name = 'StartupError';
}

/**
 * Ring slot size and the capture lanes' snap length: more than a 1500-byte-MTU frame with a VLAN
 * tag, and more than the largest IPv4/IPv6 + TCP header with options plus the MSS we offer.
 * Longer frames of open connections (coalesced by GRO or left whole by TSO) are captured whole and
 * cut to fit by the capture thread (io/capture.ts captureLanes).
 *
 * Exactly 1978 because of how libpcap lays out its TPACKET_V2 ring: each frame takes
 * TPACKET_ALIGN(70 + snap length) bytes (the tpacket2 header, sockaddr_ll, 16 bytes for the link
 * header and 4 reserved for a VLAN tag, less the 14 of Ethernet's) and a block — a page, 4 KiB —
 * holds whole frames only. At 1978 a frame is 2048 bytes and a page holds two; at 2048 a frame was
 * 2128 bytes, a page held one, and the lane of open connections' 64 MiB of frames took 126 MiB of
 * memory (measured: RSS of its mapping, 2026-12-03).
 */
const SNAP_LENGTH = 1978;
/**
 * Slots per shard ring: 16384 frames of 2 KB (34 MB) ride out ≈ 300 ms of a worker not running
 * (descheduled on a busy machine, a GC, a restart) at 50k packets/s per shard before the ring
 * drops; 4096 measurably dropped on a busy 2-core machine (bench/capture-rate.ts).
 */
const RING_SLOTS = 16384;
/**
 * V8's first old-generation limit for the worker threads' heaps, in MiB; later limits never go
 * below it. A shard's live heap is 12–13 MiB, and with V8's own start (a limit of about twice the
 * live heap, with the ArrayBuffers read from sockets counted in it) a full mark-compact came
 * every 80–200 ms under load: backend response bodies and upstream answers are garbage as soon
 * as they are copied into a flow's send queue. Measured (lab, 2026-12-03): HTTP 100 KiB bodies
 * 2.2–2.4k → 4.3k requests/s with 135 → 0 mark-compacts in 5 s, 4 KB DNS answers 41.9k → 45.6k
 * qps; idle RSS no higher (the limit is not memory taken, only how much garbage may wait).
 */
const WORKER_INITIAL_OLD_SPACE_MB = 64;
/** Timer resolution for upstream timeouts and the deadlines (the kernel transport; shard workers have their own). */
const TICK_INTERVAL_MS = 10;
/** Start-up taking longer than this is reported, and again after each such interval. */
const SLOW_START_REPORT_MS = 5000;
/** How long `stop` waits for the threads to finish their work and report their counters. */
const STOP_TIMEOUT_MS = 3000;

/** What was started, undone in reverse order: on a failure during start-up, and at stop. */
class Teardown {
  private readonly steps: (() => void | Promise<void>)[] = [];

  push(step: () => void | Promise<void>): void {
    this.steps.push(step);
  }

  async run(): Promise<void> {
    for (let step = this.steps.pop(); step !== undefined; step = this.steps.pop()) await step();
  }
}

/** Runs `start`; on failure undoes what it had started and throws a one-line StartupError. */
async function assemble<T>(teardown: Teardown, start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (error) {
    await teardown.run();
    throw error instanceof StartupError ? error : new StartupError((error as Error).message);
  }
}

/** Serves /metrics from `snapshots` if asked to, undone by the teardown. */
async function serveMetrics(teardown: Teardown, where: Endpoint | undefined, snapshots: () => Promise<RegistrySnapshot[]>): Promise<void> {
  if (where === undefined) return;
  const server = await startMetricsServer(where, async () => exposition(await snapshots()));
  teardown.push(() => server.close());
}

/** The stateless front end: checks what can be checked before anything is installed, then starts (logging a slow start). */
export async function startRawFrontEnd(options: RawFrontEndOptions): Promise<RunningFrontEnd> {
  // "any" is libpcap's pseudo-device for all interfaces (Linux cooked capture).
  if (options.interface !== 'any' && !existsSync(`/sys/class/net/${options.interface}`)) {
    throw new StartupError(`interface ${options.interface} does not exist: pick one from \`ip link show\``);
  }
  if (!Number.isInteger(options.workers) || options.workers < 1)
    throw new StartupError(`--workers takes a positive integer, not ${options.workers}`);
  const hostProblem = listenAddressProblem(options.listen) ?? kernelListenerProblem(options.listen);
  if (hostProblem !== null) throw new StartupError(hostProblem);
  if (options.interface !== 'any') {
    const verify = options.checksumPolicy === ChecksumPolicy.VERIFY;
    const problem = offloadProblem(options.interface, verify, lroEnabled(options.interface), groMaxSizes(options.interface));
    if (problem !== null) throw new StartupError(problem);
  }

  let secret: CookieSecret;
  try {
    secret = loadCookieSecret(options.cookieSecretFile);
  } catch (error) {
    throw new StartupError((error as Error).message);
  }

  // The shard workers open their own raw sockets; trying one here first makes a missing
  // privilege one line before anything is installed or started.
  try {
    new RawSender().close();
  } catch (error) {
    throw new StartupError(rawSocketProblem(error as Error));
  }

  const log = options.log ?? ((line: string) => console.error(`stateless-tcp ${options.application.kind}: ${line}`));
  // Start-up normally takes a second or two; on a starved machine say what it is waiting for.
  let startingStep = 'probing the backend';
  let slowReports = 0;
  const slowStart = setInterval(
    () => log(`still starting after ${SLOW_START_REPORT_MS * ++slowReports} ms: ${startingStep}`),
    SLOW_START_REPORT_MS,
  );
  const teardown = new Teardown();
  try {
    return await assemble(teardown, () => startStatelessParts(options, secret, log, teardown, (step) => (startingStep = step)));
  } finally {
    clearInterval(slowStart);
  }
}

async function startStatelessParts(
  options: RawFrontEndOptions,
  secret: CookieSecret,
  log: (line: string) => void,
  teardown: Teardown,
  step: (what: string) => void,
): Promise<RunningFrontEnd> {
  const application = applicationFor(options.application);
  const problem = await application.probe(log);
  if (problem !== null) throw new StartupError(problem);

  step('installing the nftables table');
  const guard = new KernelTcpGuard(options.listen);
  guard.install();
  // Also on an exit that skips the teardown (process.exit after the capture thread died).
  const removeGuard = (): void => guard.remove();
  process.on('exit', removeGuard);
  teardown.push(() => {
    guard.remove();
    process.off('exit', removeGuard);
  });

  const rings = Array.from({ length: options.workers }, () => createRing({ slotCount: RING_SLOTS, slotDataBytes: SNAP_LENGTH }));
  // Read by V8 as each isolate is created: the capture thread's and the shard workers' below.
  v8.setFlagsFromString(`--initial-old-space-size=${WORKER_INITIAL_OLD_SPACE_MB}`);
  const liveFlows = LiveFlows.allocate(options.workers);
  const routingKey = randomRoutingKey();
  const ownAddresses = hostAddresses(options.listen);
  step('opening libpcap in the capture thread');
  const capture = await startCaptureThread(
    {
      interface: options.interface,
      lanes: captureLanes(options.listen, SNAP_LENGTH, options.captureBufferBytes),
      wholeFrames: wholeFramesLane(options.listen, SNAP_LENGTH, options.captureBufferBytes),
      rings,
      checksumPolicy: options.checksumPolicy,
      gso: options.gso,
      secrets: [secret.secret],
      liveFlows,
      routingKey,
      ownAddresses,
    },
    STOP_TIMEOUT_MS,
  ).catch((error: Error) => {
    if (/permitted|permission/i.test(error.message)) {
      throw new StartupError(`cannot capture on ${options.interface} (${error.message}): run as root, or give node CAP_NET_RAW`);
    }
    throw new StartupError(`cannot capture on ${options.interface}: ${error.message}`);
  });
  teardown.push(() => capture.stop());

  step(`starting ${options.workers} shard worker${options.workers === 1 ? '' : 's'}`);
  const shards = new ShardPool(
    rings,
    {
      linkType: capture.linkType,
      checksumPolicy: options.checksumPolicy,
      linkInterface: sendsOnLink(options.gso, capture.linkType) ? options.interface : null,
      closeAfterResponse: options.closeAfterResponse,
      limits: limitsOf(options, application.maxPipelined),
      application: options.application,
      liveFlows,
      routingKey,
      ownAddresses,
    },
    [secret.secret],
    log,
  );
  await shards.start();
  // Capture first (`stop` is the same promise the second time), so that the shards can finish
  // what is already in their rings and every packet that arrived is counted.
  teardown.push(async () => {
    await capture.stop();
    await shards.stop(STOP_TIMEOUT_MS);
  });
  capture.onUnexpectedExit((reason) => {
    // Without capture nothing reaches any shard: end the process rather than serve nothing.
    log(`capture thread died (${reason}); exiting`);
    process.exit(1);
  });

  const mainRegistry = frontEndMetrics({ capture: () => capture.counters(), shards: () => shards.ringAndRestarts() });
  const snapshots = async (): Promise<RegistrySnapshot[]> => [...shards.metricsSnapshots(), await snapshot(mainRegistry)];
  await serveMetrics(teardown, options.metrics, snapshots);

  let currentSecret = secret.secret;
  return {
    description: `at ${options.interface} with ${options.workers} shard worker${options.workers === 1 ? '' : 's'}, cookie secret ${secret.source}`,
    summary: async () => summaryLine(await snapshots()),
    async rotateSecret() {
      if (options.cookieSecretFile === undefined) throw new Error('no --cookie-secret-file to re-read');
      const rotated = loadCookieSecret(options.cookieSecretFile).secret;
      // Rotating to the secret in use would push the previous one out of the history early:
      // connections it proved would get RST.
      if (Buffer.from(rotated).equals(currentSecret)) throw new Error(`${options.cookieSecretFile} holds the secret already in use`);
      currentSecret = rotated;
      // The shards accept the new secret before the capture thread issues cookies with it, so no
      // client can hold a cookie that its shard does not know yet.
      const confirmed = await shards.rotate(rotated, STOP_TIMEOUT_MS);
      capture.rotateSecret(rotated);
      return `in ${confirmed} of ${shards.size} shard workers`;
    },
    stop: () => teardown.run(),
    terminateShardWorker: (index) => shards.terminateWorker(index),
  };
}

/**
 * The same relay over ordinary kernel TCP sockets (`--transport kernel`): no capture, no raw
 * socket, no nftables rule.
 */
export async function startKernelFrontEnd(options: FrontEndOptions): Promise<RunningFrontEnd> {
  const teardown = new Teardown();
  return assemble(teardown, async () => {
    const application = applicationFor(options.application);
    const problem = await application.probe((line) => console.error(`stateless-tcp ${options.application.kind}: ${line}`));
    if (problem !== null) throw new StartupError(problem);
    const relay = application.open<KernelConnection>();
    teardown.push(() => relay.close());
    const transport = new KernelTransport(relay, {
      messageLength: application.messageLength,
      closeAfterResponse: options.closeAfterResponse,
      // The responder's limits, so that either transport holds a client to the same rules.
      ...limitsOf(options, application.maxPipelined),
    });
    relay.attach(transport);
    teardown.push(() => transport.close());
    await transport.listen(options.listen);
    const metrics = kernelTransportMetrics(application, relay.counts, () => transport.stats, relay.upstreams);
    relay.observeLatency = metrics.observeUpstreamLatency;
    const snapshots = async (): Promise<RegistrySnapshot[]> => [await snapshot(metrics.registry)];
    await serveMetrics(teardown, options.metrics, snapshots);
    const ticker = setInterval(() => {
      const nowMs = Date.now();
      transport.tick(nowMs);
      relay.tick(nowMs);
    }, TICK_INTERVAL_MS);
    teardown.push(() => clearInterval(ticker));
    return {
      description: 'over kernel TCP sockets',
      summary: async () => summaryLine(await snapshots()),
      async rotateSecret() {
        throw new Error('the kernel transport uses no cookie secret');
      },
      stop: () => teardown.run(),
    };
  });
}

/** The options' limits, with every one left out at its default. */
function limitsOf(options: FrontEndOptions, protocolMaxPipelined: number): ConnectionLimits {
  const { maxFlows, maxFlowsPerSource, maxQueuedBytes, maxQueuedBytesPerSource, messageDeadlineMs, zeroWindowLimitMs } =
    DEFAULT_RESPONDER_CONFIG;
  const defaults = { maxFlows, maxFlowsPerSource, maxQueuedBytes, maxQueuedBytesPerSource, messageDeadlineMs, zeroWindowLimitMs };
  const given = Object.fromEntries(Object.entries(options.limits).filter(([, value]) => value !== undefined));
  return { ...defaults, maxPipelined: protocolMaxPipelined, ...given };
}
