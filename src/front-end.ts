/**
 * Assembles a running DNS front end from its parts: firewall guard, raw sender, upstream sockets,
 * pipeline, capture. Start-up checks each privilege and resource in turn so that what is missing
 * is reported as one line naming the fix.
 */
import { randomFillSync } from 'node:crypto';
import { existsSync } from 'node:fs';
import { ChecksumPolicy, DECODE_RESULT_NAMES, type LinkType } from './wire/segment.js';
import { SynCookies } from './tcp/cookie.js';
import { DEFAULT_RESPONDER_CONFIG, OUTCOME_NAMES, TCP_EVENT_NAMES, type ResponderConfig } from './tcp/responder.js';
import { DnsRelay, RELAY_COUNTER_NAMES } from './dns/relay.js';
import { KernelTransport, type KernelConnection } from './io/kernel-transport.js';
import { DnsPipeline, HttpPipeline, type TcpPipeline } from './pipeline.js';
import { HTTP_COUNTER_NAMES, HttpRelay } from './http/relay.js';
import { wholeRequests } from './http/request.js';
import { wholeMessages } from './dns/message.js';
import { UndiciBackend, probeHttpBackend } from './io/http-backend.js';
import { openCapture, captureFilter, type Capture } from './io/capture.js';
import { RawSender } from './io/raw-send.js';
import { KernelTcpGuard } from './io/firewall.js';
import { UdpTcpUpstream, probeUpstream, type UpstreamAddress } from './io/upstream.js';
import { loadCookieSecret, type CookieSecret } from './io/secret.js';
import type { Endpoint } from './endpoint.js';

export interface DnsFrontEndOptions extends RawFrontEndOptions {
  upstream: UpstreamAddress;
  /** Upstream answer timeout before SERVFAIL. */
  timeoutMs: number;
}

export interface RunningFrontEnd {
  /** What the start-up line says about it, e.g. where the cookie secret came from. */
  readonly description: string;
  /** Re-reads the cookie secret file and rotates to it; throws a one-line Error on failure. */
  rotateSecret(): void;
  /** Counters as `name=value` pairs, zeros left out. */
  summary(): string;
  stop(): void;
}

/** `prefix.name=value` for every non-zero counter. */
function counterPairs(prefix: string, names: readonly string[], counts: Float64Array): string[] {
  return names.flatMap((name, i) => (counts[i]! > 0 ? [`${prefix}${name}=${counts[i]}`] : []));
}

/** One-line start-up failure; the CLI prints its message without a stack trace. */
export class StartupError extends Error {
  override readonly name = 'StartupError';
}

/** Snap length: the largest IPv4/IPv6 + TCP header with options plus one MSS we offer, rounded up. */
const SNAP_LENGTH = 2048;
const CAPTURE_BUFFER_BYTES = 16 * 1024 * 1024;
/** Timer resolution for retransmission and upstream timeouts. */
const TICK_INTERVAL_MS = 10;

/** What a raw (stateless) front end needs besides its application. */
export interface RawFrontEndOptions {
  /** Capture interface. */
  interface: string;
  listen: Endpoint[];
  checksumPolicy: ChecksumPolicy;
  closeAfterResponse: boolean;
  /** File holding the shared SYN cookie secret (re-read on SIGHUP); else environment or random. */
  cookieSecretFile?: string | undefined;
}

/** The application side of a raw front end: its pipeline, counters and resources. */
interface RawApplication {
  pipeline: TcpPipeline;
  counters(): string[];
  close(): void;
}

/**
 * Starts capture, raw sender and firewall guard around the pipeline `build` makes. `probe` checks
 * the backend first (a one-line problem, or null).
 */
async function startRawFrontEnd(
  options: RawFrontEndOptions,
  probe: () => Promise<string | null>,
  build: (linkType: LinkType, cookies: SynCookies, sender: RawSender, tcp: Omit<ResponderConfig, 'framer' | 'plausibleStart'>) => Promise<RawApplication>,
): Promise<RunningFrontEnd> {
  // "any" is libpcap's pseudo-device for all interfaces (Linux cooked capture).
  if (options.interface !== 'any' && !existsSync(`/sys/class/net/${options.interface}`)) {
    throw new StartupError(`interface ${options.interface} does not exist: pick one from \`ip link show\``);
  }

  let secret: CookieSecret;
  try {
    secret = loadCookieSecret(options.cookieSecretFile);
  } catch (error) {
    throw new StartupError((error as Error).message);
  }

  let sender: RawSender;
  try {
    sender = new RawSender();
  } catch (error) {
    throw new StartupError(
      `cannot open a raw socket (${(error as Error).message}): run as root, or give node CAP_NET_RAW and CAP_NET_ADMIN`,
    );
  }

  const problem = await probe();
  if (problem !== null) {
    sender.close();
    throw new StartupError(problem);
  }

  const guard = new KernelTcpGuard(options.listen);
  try {
    guard.install();
  } catch (error) {
    sender.close();
    throw new StartupError((error as Error).message);
  }
  const removeGuard = (): void => guard.remove();
  process.on('exit', removeGuard);

  const cookies = new SynCookies(secret.secret);
  let app: RawApplication | undefined;
  let capture: Capture;
  try {
    // Packets are delivered from the event loop, so `app` is set before the first one.
    capture = openCapture(
      {
        interface: options.interface,
        filter: captureFilter(options.listen),
        snapLength: SNAP_LENGTH,
        bufferBytes: CAPTURE_BUFFER_BYTES,
      },
      (frame, capturedLength) => app!.pipeline.handleFrame(frame, capturedLength, Date.now()),
    );
    app = await build(capture.linkType, cookies, sender, { ...DEFAULT_RESPONDER_CONFIG, closeAfterResponse: options.closeAfterResponse });
  } catch (error) {
    app?.close();
    sender.close();
    guard.remove();
    process.off('exit', removeGuard);
    const message = (error as Error).message;
    if (/permitted|permission/i.test(message)) {
      throw new StartupError(`cannot capture on ${options.interface} (${message}): run as root, or give node CAP_NET_RAW`);
    }
    throw new StartupError(`cannot capture on ${options.interface}: ${message}`);
  }

  const running = app;
  const ticker = setInterval(() => running.pipeline.tick(Date.now()), TICK_INTERVAL_MS);
  return {
    description: `at ${options.interface}, cookie secret ${secret.source}`,
    summary() {
      const pcap = capture.stats();
      const { pipeline } = running;
      return [
        ...counterPairs('decode.', DECODE_RESULT_NAMES, pipeline.decodeCounts),
        ...counterPairs('tcp.', OUTCOME_NAMES, pipeline.outcomeCounts),
        ...counterPairs('tcp.', TCP_EVENT_NAMES, pipeline.responder.events),
        `tcp.flows=${pipeline.responder.flows.size}`,
        `tcp.queued_bytes=${pipeline.responder.queuedBytes}`,
        ...running.counters(),
        `pcap.received=${pcap.received}`,
        `pcap.dropped=${pcap.dropped}`,
        `sent=${sender.stats.sent}`,
        `send_failed=${sender.stats.failed}`,
      ].join(' ');
    },
    rotateSecret() {
      if (options.cookieSecretFile === undefined) throw new Error('no --cookie-secret-file to re-read');
      cookies.rotate(loadCookieSecret(options.cookieSecretFile).secret);
    },
    stop() {
      clearInterval(ticker);
      capture.close();
      running.close();
      sender.close();
      guard.remove();
      process.off('exit', removeGuard);
    },
  };
}

export function startDnsFrontEnd(options: DnsFrontEndOptions): Promise<RunningFrontEnd> {
  return startRawFrontEnd(
    options,
    () => probeUpstream(options.upstream, 2000),
    async (linkType, cookies, sender, tcp) => {
      let pipeline: DnsPipeline | undefined;
      const upstream = new UdpTcpUpstream(options.upstream, (answer) => pipeline?.relay.handleUpstreamAnswer(answer, Date.now()));
      await upstream.open();
      pipeline = new DnsPipeline(linkType, options.checksumPolicy, cookies, tcp, sender, { timeoutMs: options.timeoutMs }, upstream, (bytes) => randomFillSync(bytes));
      const dns = pipeline;
      return { pipeline: dns, counters: () => counterPairs('dns.', RELAY_COUNTER_NAMES, dns.relay.counts), close: () => upstream.close() };
    },
  );
}

export interface HttpFrontEndOptions extends RawFrontEndOptions {
  /** The backend web server, `http://host:port`. */
  upstream: string;
  /** How long the backend may take for its headers, and between body chunks, before 504. */
  timeoutMs: number;
}

export function startHttpFrontEnd(options: HttpFrontEndOptions): Promise<RunningFrontEnd> {
  return startRawFrontEnd(
    options,
    () => probeHttpBackend(options.upstream, 2000),
    async (linkType, cookies, sender, tcp) => {
      const backend = new UndiciBackend(options.upstream, options.timeoutMs);
      const pipeline = new HttpPipeline(linkType, options.checksumPolicy, cookies, tcp, sender, backend);
      return { pipeline, counters: () => counterPairs('http.', HTTP_COUNTER_NAMES, pipeline.relay.counts), close: () => void backend.close() };
    },
  );
}

/**
 * The same relays over ordinary kernel TCP sockets (`--transport kernel`): no capture, no raw
 * socket, no nftables rule.
 */
async function startKernelFrontEnd(
  listen: Endpoint[],
  transport: KernelTransport,
  counters: () => string[],
  closeApplication: () => void,
  tick: (nowMs: number) => void,
): Promise<RunningFrontEnd> {
  try {
    await transport.listen(listen);
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
    rotateSecret() {
      throw new Error('the kernel transport uses no cookie secret');
    },
    stop() {
      clearInterval(ticker);
      transport.close();
      closeApplication();
    },
  };
}

export async function startKernelDnsFrontEnd(options: Omit<DnsFrontEndOptions, 'interface' | 'checksumPolicy' | 'cookieSecretFile'>): Promise<RunningFrontEnd> {
  const problem = await probeUpstream(options.upstream, 2000);
  if (problem !== null) throw new StartupError(problem);
  let relay: DnsRelay<KernelConnection> | undefined;
  const upstream = new UdpTcpUpstream(options.upstream, (answer) => relay?.handleUpstreamAnswer(answer, Date.now()));
  await upstream.open();
  relay = new DnsRelay<KernelConnection>({ timeoutMs: options.timeoutMs }, upstream, (bytes) => randomFillSync(bytes));
  const dns = relay;
  const transport = new KernelTransport(dns, wholeMessages, options.closeAfterResponse);
  dns.attach(transport);
  return startKernelFrontEnd(
    options.listen,
    transport,
    () => counterPairs('dns.', RELAY_COUNTER_NAMES, dns.counts),
    () => upstream.close(),
    (nowMs) => dns.expire(nowMs),
  );
}

export async function startKernelHttpFrontEnd(options: Omit<HttpFrontEndOptions, 'interface' | 'checksumPolicy' | 'cookieSecretFile'>): Promise<RunningFrontEnd> {
  const problem = await probeHttpBackend(options.upstream, 2000);
  if (problem !== null) throw new StartupError(problem);
  const backend = new UndiciBackend(options.upstream, options.timeoutMs);
  const relay = new HttpRelay<KernelConnection>(backend);
  const transport = new KernelTransport(relay, wholeRequests, options.closeAfterResponse);
  relay.attach(transport);
  return startKernelFrontEnd(
    options.listen,
    transport,
    () => counterPairs('http.', HTTP_COUNTER_NAMES, relay.counts),
    () => void backend.close(),
    () => {},
  );
}
