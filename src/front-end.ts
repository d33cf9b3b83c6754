/**
 * Assembles a running front end (DNS or HTTP) from its parts: firewall guard, the capture
 * thread, one frame ring per shard, the shard workers (each with its own raw sender, upstream
 * socket or backend pool, and pipeline). Start-up checks each privilege and resource in turn so that what is missing is
 * reported as one line naming the fix. docs/architecture.md follows one packet through them.
 */
import { randomFillSync } from 'node:crypto';
import { existsSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { ChecksumPolicy, DECODE_RESULT_NAMES, type LinkType } from './wire/segment.js';
import { OUTCOME_NAMES, Outcome, TCP_EVENT_NAMES } from './tcp/responder.js';
import { LiveFlows } from './tcp/live-flows.js';
import { DnsRelay } from './dns/relay.js';
import { wholeMessages } from './dns/message.js';
import { HttpRelay } from './http/relay.js';
import { APPLICATION_COUNTER_NAMES } from './pipeline.js';
import { wholeRequests } from './http/request.js';
import { UndiciBackend, probeHttpBackend } from './io/http-backend.js';
import { KernelTransport, type KernelConnection } from './io/kernel-transport.js';
import { captureLanes } from './io/capture.js';
import { KernelTcpGuard } from './io/firewall.js';
import { RawSender, rawSocketProblem } from './io/raw-send.js';
import { UdpTcpUpstream, probeUpstream, type UpstreamAddress } from './io/upstream.js';
import { loadCookieSecret, type CookieSecret } from './io/secret.js';
import { createRing } from './ring/ring.js';
import { ShardPool } from './shards.js';
import {
  CAPTURE_FLAG_BYTES,
  CAPTURE_STAT_COUNT,
  CAPTURE_STATS_OFFSET,
  CaptureFlag,
  CaptureStat,
  publishCaptureSecret,
  type Application,
  type CaptureReport,
  type CaptureThreadData,
} from './shard-protocol.js';
import { exposition, frontEndMetrics, kernelTransportMetrics, snapshot, type CaptureCounters } from './metrics.js';
import { startMetricsServer, type MetricsServer } from './io/metrics-server.js';
import { kernelListenerProblem, listenAddressProblem } from './io/preflight.js';
import type { Endpoint } from './endpoint.js';

/** What every raw (stateless) front end takes besides its application. */
export interface RawFrontEndOptions {
  /** Capture interface. */
  interface: string;
  listen: Endpoint[];
  checksumPolicy: ChecksumPolicy;
  closeAfterResponse: boolean;
  /** File holding the shared SYN cookie secret (re-read on SIGHUP); else environment or random. */
  cookieSecretFile?: string | undefined;
  /** Shard worker threads, each with its own ring (the raw transport only). */
  workers: number;
  /** Log line for events while running (a shard worker's death and restart). */
  log?: (line: string) => void;
  /** Serve Prometheus metrics at http://ADDR:PORT/metrics. */
  metrics?: Endpoint | undefined;
}

export interface DnsFrontEndOptions extends RawFrontEndOptions {
  upstream: UpstreamAddress;
  /** Upstream answer timeout before SERVFAIL. */
  timeoutMs: number;
}

export interface HttpFrontEndOptions extends RawFrontEndOptions {
  /** The backend web server, `http://host:port`. */
  upstream: string;
  /** How long the backend may take for its headers, and between body chunks, before 504. */
  timeoutMs: number;
}

export interface RunningFrontEnd {
  /** What the start-up line says about it, e.g. where the cookie secret came from. */
  readonly description: string;
  /**
   * Re-reads the cookie secret file and rotates to it; resolves to a line saying where it took
   * effect, rejects with a one-line Error on failure.
   */
  rotateSecret(): Promise<string>;
  /** Counters as `name=value` pairs, zeros left out (per-shard gauges kept). Final after `stop`. */
  summary(): string;
  stop(): Promise<void>;
  /** Test hook: kill shard `index`'s worker thread as a crash would. */
  terminateShardWorker?(index: number): Promise<void>;
}

/** `prefix.name=value` for every non-zero counter. */
function counterPairs(prefix: string, names: readonly string[], counts: ArrayLike<number>): string[] {
  return names.flatMap((name, i) => ((counts[i] ?? 0) > 0 ? [`${prefix}${name}=${counts[i]}`] : []));
}

/** One-line start-up failure; the CLI prints its message without a stack trace. */
export class StartupError extends Error {
  override readonly name = 'StartupError';
}

/** Snap length: the largest IPv4/IPv6 + TCP header with options plus one MSS we offer, rounded up. */
const SNAP_LENGTH = 2048;
/**
 * Slots per shard ring: 16384 frames of 2 KB (34 MB) ride out ≈ 300 ms of a worker not running
 * (descheduled on a busy machine, a GC, a restart) at 50k packets/s per shard before the ring
 * drops; 4096 measurably dropped on a busy 2-core machine (bench/capture-rate.ts).
 */
const RING_SLOTS = 16384;
/** Timer resolution for upstream timeouts (the kernel transport; shard workers have their own). */
const TICK_INTERVAL_MS = 10;
const CAPTURE_THREAD = new URL('../workers/capture.js', import.meta.url);
/** Start-up taking longer than this is reported, and again after each such interval. */
const SLOW_START_REPORT_MS = 5000;
/** How long `stop` waits for the threads to finish their work and report their counters. */
const STOP_TIMEOUT_MS = 3000;

export function startDnsFrontEnd(options: DnsFrontEndOptions): Promise<RunningFrontEnd> {
  return startCapturingFrontEnd(
    options,
    { kind: 'dns', upstream: options.upstream, timeoutMs: options.timeoutMs },
    () => probeUpstream(options.upstream, 2000),
  );
}

export function startHttpFrontEnd(options: HttpFrontEndOptions): Promise<RunningFrontEnd> {
  return startCapturingFrontEnd(
    options,
    { kind: 'http', origin: options.upstream, timeoutMs: options.timeoutMs },
    () => probeHttpBackend(options.upstream, 2000),
  );
}

/** Checks what can be checked before anything is installed, then starts (logging a slow start). */
async function startCapturingFrontEnd(options: RawFrontEndOptions, application: Application, probe: () => Promise<string | null>): Promise<RunningFrontEnd> {
  // "any" is libpcap's pseudo-device for all interfaces (Linux cooked capture).
  if (options.interface !== 'any' && !existsSync(`/sys/class/net/${options.interface}`)) {
    throw new StartupError(`interface ${options.interface} does not exist: pick one from \`ip link show\``);
  }
  if (!Number.isInteger(options.workers) || options.workers < 1) throw new StartupError(`--workers takes a positive integer, not ${options.workers}`);
  const hostProblem = listenAddressProblem(options.listen) ?? kernelListenerProblem(options.listen);
  if (hostProblem !== null) throw new StartupError(hostProblem);

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

  const log = options.log ?? ((line: string) => console.error(`stateless-tcp ${application.kind}: ${line}`));
  // Start-up normally takes a second or two; on a starved machine say what it is waiting for.
  let startingStep = 'probing the backend';
  const slowStart = setInterval(() => log(`still starting after ${SLOW_START_REPORT_MS * ++slowReports} ms: ${startingStep}`), SLOW_START_REPORT_MS);
  let slowReports = 0;
  try {
    return await startRawFrontEnd(options, application, probe, secret, log, (step) => (startingStep = step));
  } finally {
    clearInterval(slowStart);
  }
}

async function startRawFrontEnd(
  options: RawFrontEndOptions,
  application: Application,
  probe: () => Promise<string | null>,
  secret: CookieSecret,
  log: (line: string) => void,
  step: (what: string) => void,
): Promise<RunningFrontEnd> {
  const problem = await probe();
  if (problem !== null) throw new StartupError(problem);

  step('installing the nftables table');
  const guard = new KernelTcpGuard(options.listen);
  try {
    guard.install();
  } catch (error) {
    throw new StartupError((error as Error).message);
  }
  const removeGuard = (): void => guard.remove();
  process.on('exit', removeGuard);

  const rings = Array.from({ length: options.workers }, () => createRing({ slotCount: RING_SLOTS, slotDataBytes: SNAP_LENGTH }));
  const liveFlows = LiveFlows.allocate(options.workers);
  let capture: CaptureThread;
  const captureFlags = new SharedArrayBuffer(CAPTURE_FLAG_BYTES);
  step('opening libpcap in the capture thread');
  try {
    capture = await startCaptureThread({
      interface: options.interface,
      lanes: captureLanes(options.listen),
      snapLength: SNAP_LENGTH,
      rings,
      flags: captureFlags,
      checksumPolicy: options.checksumPolicy,
      secrets: [secret.secret],
      liveFlows,
    });
  } catch (error) {
    guard.remove();
    process.off('exit', removeGuard);
    const message = (error as Error).message;
    if (/permitted|permission/i.test(message)) {
      throw new StartupError(`cannot capture on ${options.interface} (${message}): run as root, or give node CAP_NET_RAW`);
    }
    throw new StartupError(`cannot capture on ${options.interface}: ${message}`);
  }

  step(`starting ${options.workers} shard worker${options.workers === 1 ? '' : 's'}`);
  const shards = new ShardPool(
    rings,
    {
      linkType: capture.linkType,
      checksumPolicy: options.checksumPolicy,
      closeAfterResponse: options.closeAfterResponse,
      application,
      liveFlows,
    },
    [secret.secret],
    log,
  );
  try {
    await shards.start();
  } catch (error) {
    await capture.stop();
    guard.remove();
    process.off('exit', removeGuard);
    throw new StartupError((error as Error).message);
  }
  capture.onUnexpectedExit((reason) => {
    // Without capture nothing reaches any shard: end the process rather than serve nothing.
    log(`capture thread died (${reason}); exiting`);
    process.exit(1);
  });

  let metrics: MetricsServer | null = null;
  if (options.metrics !== undefined) {
    const registry = frontEndMetrics({
      capture: () => captureCounters(captureFlags),
      shards: () => shards.ringAndRestarts(),
    });
    try {
      metrics = await startMetricsServer(options.metrics, async () => exposition([await snapshot(registry), ...shards.metricsSnapshots()]));
    } catch (error) {
      await capture.stop();
      await shards.stop(STOP_TIMEOUT_MS);
      guard.remove();
      process.off('exit', removeGuard);
      throw new StartupError((error as Error).message);
    }
  }

  return {
    description: `at ${options.interface} with ${options.workers} shard worker${options.workers === 1 ? '' : 's'}, cookie secret ${secret.source}`,
    summary() {
      const totals = shards.totals();
      const captured = captureCounters(captureFlags);
      // The segments the capture thread handled count with the shards' (and are listed alone too).
      totals.outcomes[Outcome.SYN_ANSWERED] = (totals.outcomes[Outcome.SYN_ANSWERED] ?? 0) + captured.synAnswered;
      totals.outcomes[Outcome.IGNORED] = (totals.outcomes[Outcome.IGNORED] ?? 0) + captured.ignored;
      return [
        ...counterPairs('decode.', DECODE_RESULT_NAMES, totals.decode),
        ...counterPairs('tcp.', OUTCOME_NAMES, totals.outcomes),
        ...counterPairs('tcp.', TCP_EVENT_NAMES, totals.tcpEvents),
        `tcp.flows=${totals.flows}`,
        `tcp.queued_bytes=${totals.queuedBytes}`,
        ...counterPairs(`${application.kind}.`, APPLICATION_COUNTER_NAMES[application.kind], totals.relay),
        `pcap.received=${captured.received}`,
        `pcap.dropped=${captured.dropped}`,
        `pcap.established_dropped=${captured.establishedDropped}`,
        `capture.syn_answered=${captured.synAnswered}`,
        `capture.ignored=${captured.ignored}`,
        `sent=${totals.sent + captured.synAnswered - captured.sendFailed}`,
        `send_failed=${totals.sendFailed + captured.sendFailed}`,
        ...shards.summaryPairs(),
      ].join(' ');
    },
    async rotateSecret() {
      if (options.cookieSecretFile === undefined) throw new Error('no --cookie-secret-file to re-read');
      const rotated = loadCookieSecret(options.cookieSecretFile).secret;
      publishCaptureSecret(captureFlags, rotated);
      const confirmed = await shards.rotate(rotated, STOP_TIMEOUT_MS);
      return `in ${confirmed} of ${shards.size} shard workers`;
    },
    async stop() {
      metrics?.close();
      // Capture first, so the shards can finish what is already in their rings.
      await capture.stop();
      await shards.stop(STOP_TIMEOUT_MS);
      guard.remove();
      process.off('exit', removeGuard);
    },
    terminateShardWorker: (index) => shards.terminateWorker(index),
  };
}

/** The capture thread's counters as it last published them (CaptureStat). */
function captureCounters(flags: SharedArrayBuffer): CaptureCounters {
  const published = new Float64Array(flags, CAPTURE_STATS_OFFSET, CAPTURE_STAT_COUNT);
  return {
    received: published[CaptureStat.RECEIVED]!,
    dropped: published[CaptureStat.DROPPED]!,
    establishedDropped: published[CaptureStat.ESTABLISHED_DROPPED]!,
    synAnswered: published[CaptureStat.SYN_ANSWERED]!,
    sendFailed: published[CaptureStat.SEND_FAILED]!,
    ignored: published[CaptureStat.IGNORED]!,
  };
}

interface CaptureThread {
  readonly linkType: LinkType;
  /** Closes the capture and ends the thread, which publishes its final counters first. */
  stop(): Promise<void>;
  /** `handler` runs if the thread ends (or has ended) other than by `stop`. */
  onUnexpectedExit(handler: (reason: string) => void): void;
}

/** Starts workers/capture.ts; resolves once libpcap is open, rejects with its one-line failure. */
async function startCaptureThread(data: CaptureThreadData): Promise<CaptureThread> {
  // A small young generation: the thread keeps almost nothing alive, so its scavenges are cheap
  // however often they run, and a SYN flood (a few short-lived numbers per SYN+ACK) does not
  // grow its heap to V8's default of tens of megabytes.
  const worker = new Worker(CAPTURE_THREAD, { workerData: data, resourceLimits: { maxYoungGenerationSizeMb: 4 } });
  let stopping = false;
  let onUnexpectedExit: ((reason: string) => void) | undefined;
  /** Why the thread ended, if it did before anyone asked to be told. */
  let unexpectedExit: string | undefined;
  let lastError = '';
  worker.on('error', (error) => (lastError = error.message));
  worker.on('exit', (code) => {
    if (stopping) return;
    unexpectedExit = lastError !== '' ? lastError : `exit code ${code}`;
    onUnexpectedExit?.(unexpectedExit);
  });
  const first = await new Promise<CaptureReport>((resolve) => {
    worker.once('message', resolve);
    worker.once('exit', () => resolve({ type: 'failed', message: lastError !== '' ? lastError : 'the capture thread exited' }));
  });
  if (first.type !== 'ready') {
    stopping = true;
    await worker.terminate();
    throw new Error(first.type === 'failed' ? first.message : 'unexpected report from the capture thread');
  }
  return {
    linkType: first.linkType,
    async stop() {
      stopping = true;
      const stopped = new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, STOP_TIMEOUT_MS);
        worker.on('message', (report: CaptureReport) => {
          if (report.type !== 'stopped') return;
          clearTimeout(timer);
          resolve();
        });
        worker.once('exit', () => {
          clearTimeout(timer);
          resolve();
        });
      });
      Atomics.store(new Int32Array(data.flags), CaptureFlag.STOP, 1);
      await stopped;
      await worker.terminate();
    },
    onUnexpectedExit(handler) {
      onUnexpectedExit = handler;
      if (unexpectedExit !== undefined) handler(unexpectedExit);
    },
  };
}

/**
 * The same relays over ordinary kernel TCP sockets (`--transport kernel`): no capture, no raw
 * socket, no nftables rule.
 */
async function startKernelFrontEnd(
  options: { listen: Endpoint[]; metrics?: Endpoint | undefined },
  transport: KernelTransport,
  kind: 'dns' | 'http',
  relay: { counts: Float64Array; observeLatency: ((seconds: number) => void) | null },
  closeApplication: () => void,
  tick: (nowMs: number) => void,
): Promise<RunningFrontEnd> {
  const names = APPLICATION_COUNTER_NAMES[kind];
  const counters = (): string[] => counterPairs(`${kind}.`, names, relay.counts);
  let metrics: MetricsServer | null = null;
  try {
    await transport.listen(options.listen);
    if (options.metrics !== undefined) {
      const { registry, observeUpstreamLatency } = kernelTransportMetrics(kind, names, relay.counts, () => transport.stats);
      relay.observeLatency = observeUpstreamLatency;
      metrics = await startMetricsServer(options.metrics, async () => exposition([await snapshot(registry)]));
    }
  } catch (error) {
    transport.close();
    closeApplication();
    throw new StartupError((error as Error).message);
  }
  const ticker = setInterval(() => tick(Date.now()), TICK_INTERVAL_MS);
  return {
    description: 'over kernel TCP sockets',
    summary() {
      const t = transport.stats;
      return [`tcp.accepted=${t.accepted}`, `tcp.open=${t.open}`, `tcp.answers_dropped=${t.answersDropped}`, ...counters()].join(' ');
    },
    async rotateSecret() {
      throw new Error('the kernel transport uses no cookie secret');
    },
    async stop() {
      clearInterval(ticker);
      metrics?.close();
      transport.close();
      closeApplication();
    },
  };
}

type KernelOptions<T> = Omit<T, 'interface' | 'checksumPolicy' | 'cookieSecretFile' | 'workers' | 'log'>;

export async function startKernelDnsFrontEnd(options: KernelOptions<DnsFrontEndOptions>): Promise<RunningFrontEnd> {
  const problem = await probeUpstream(options.upstream, 2000);
  if (problem !== null) throw new StartupError(problem);
  let relay: DnsRelay<KernelConnection> | undefined;
  const upstream = new UdpTcpUpstream(options.upstream, (bytes, offset, length) => relay?.handleUpstreamAnswer(bytes, offset, length, Date.now()));
  relay = new DnsRelay<KernelConnection>({ timeoutMs: options.timeoutMs }, upstream, (bytes) => randomFillSync(bytes));
  const dns = relay;
  const transport = new KernelTransport(dns, wholeMessages, options.closeAfterResponse);
  dns.attach(transport);
  return startKernelFrontEnd(options, transport, 'dns', dns, () => upstream.close(), (nowMs) => dns.expire(nowMs));
}

export async function startKernelHttpFrontEnd(options: KernelOptions<HttpFrontEndOptions>): Promise<RunningFrontEnd> {
  const problem = await probeHttpBackend(options.upstream, 2000);
  if (problem !== null) throw new StartupError(problem);
  const backend = new UndiciBackend(options.upstream, options.timeoutMs);
  const relay = new HttpRelay<KernelConnection>(backend);
  const transport = new KernelTransport(relay, wholeRequests, options.closeAfterResponse);
  relay.attach(transport);
  return startKernelFrontEnd(options, transport, 'http', relay, () => void backend.close(), () => {});
}
