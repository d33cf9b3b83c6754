/**
 * Assembles a running DNS front end from its parts: firewall guard, raw sender, upstream sockets,
 * pipeline, capture. Start-up checks each privilege and resource in turn so that what is missing
 * is reported as one line naming the fix.
 */
import { randomFillSync } from 'node:crypto';
import { existsSync } from 'node:fs';
import { ChecksumPolicy, DECODE_RESULT_NAMES } from './wire/segment.js';
import { SynCookies } from './tcp/cookie.js';
import { DEFAULT_RESPONDER_CONFIG, OUTCOME_NAMES, TCP_EVENT_NAMES } from './tcp/responder.js';
import { DnsRelay, RELAY_COUNTER_NAMES } from './dns/relay.js';
import { KernelTransport, type KernelConnection } from './io/kernel-transport.js';
import { DnsPipeline } from './pipeline.js';
import { openCapture, captureFilter, type Capture } from './io/capture.js';
import { RawSender } from './io/raw-send.js';
import { KernelTcpGuard } from './io/firewall.js';
import { UdpTcpUpstream, probeUpstream, type UpstreamAddress } from './io/upstream.js';
import { loadCookieSecret, type CookieSecret } from './io/secret.js';
import type { Endpoint } from './endpoint.js';

export interface DnsFrontEndOptions {
  /** Capture interface (the raw transport only). */
  interface: string;
  listen: Endpoint[];
  upstream: UpstreamAddress;
  /** Upstream answer timeout before SERVFAIL. */
  timeoutMs: number;
  checksumPolicy: ChecksumPolicy;
  closeAfterResponse: boolean;
  /** File holding the shared SYN cookie secret (re-read on SIGHUP); else environment or random. */
  cookieSecretFile?: string | undefined;
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

export async function startDnsFrontEnd(options: DnsFrontEndOptions): Promise<RunningFrontEnd> {
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

  const problem = await probeUpstream(options.upstream, 2000);
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
  let pipeline: DnsPipeline | undefined;
  const upstream = new UdpTcpUpstream(options.upstream, (answer) => pipeline?.relay.handleUpstreamAnswer(answer, Date.now()));
  let capture: Capture;
  try {
    await upstream.open();
    // Packets are delivered from the event loop, so `pipeline` is set before the first one.
    capture = openCapture(
      {
        interface: options.interface,
        filter: captureFilter(options.listen),
        snapLength: SNAP_LENGTH,
        bufferBytes: CAPTURE_BUFFER_BYTES,
      },
      (frame, capturedLength) => pipeline!.handleFrame(frame, capturedLength, Date.now()),
    );
    pipeline = new DnsPipeline(
      capture.linkType,
      options.checksumPolicy,
      cookies,
      { ...DEFAULT_RESPONDER_CONFIG, closeAfterResponse: options.closeAfterResponse },
      sender,
      { timeoutMs: options.timeoutMs },
      upstream,
      (bytes) => randomFillSync(bytes),
    );
  } catch (error) {
    upstream.close();
    sender.close();
    guard.remove();
    process.off('exit', removeGuard);
    const message = (error as Error).message;
    if (/permitted|permission/i.test(message)) {
      throw new StartupError(`cannot capture on ${options.interface} (${message}): run as root, or give node CAP_NET_RAW`);
    }
    throw new StartupError(`cannot capture on ${options.interface}: ${message}`);
  }

  const ticker = setInterval(() => pipeline!.tick(Date.now()), TICK_INTERVAL_MS);
  const running = pipeline;
  return {
    description: `at ${options.interface}, cookie secret ${secret.source}`,
    summary() {
      const pcap = capture.stats();
      return [
        ...counterPairs('decode.', DECODE_RESULT_NAMES, running.decodeCounts),
        ...counterPairs('tcp.', OUTCOME_NAMES, running.outcomeCounts),
        ...counterPairs('tcp.', TCP_EVENT_NAMES, running.responder.events),
        `tcp.flows=${running.responder.flows.size}`,
        `tcp.queued_bytes=${running.responder.queuedBytes}`,
        ...counterPairs('dns.', RELAY_COUNTER_NAMES, running.relay.counts),
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
      upstream.close();
      sender.close();
      guard.remove();
      process.off('exit', removeGuard);
    },
  };
}

/**
 * The same relay over ordinary kernel TCP sockets (`--transport kernel`): no capture, no raw
 * socket, no nftables rule.
 */
export async function startKernelDnsFrontEnd(options: Omit<DnsFrontEndOptions, 'interface' | 'checksumPolicy' | 'cookieSecretFile'>): Promise<RunningFrontEnd> {
  const problem = await probeUpstream(options.upstream, 2000);
  if (problem !== null) throw new StartupError(problem);
  let relay: DnsRelay<KernelConnection> | undefined;
  const upstream = new UdpTcpUpstream(options.upstream, (answer) => relay?.handleUpstreamAnswer(answer, Date.now()));
  await upstream.open();
  relay = new DnsRelay<KernelConnection>({ timeoutMs: options.timeoutMs }, upstream, (bytes) => randomFillSync(bytes));
  const dns = relay;
  const transport = new KernelTransport((connection, buf, offset, length, nowMs) => dns.onMessages(connection, buf, offset, length, nowMs), options.closeAfterResponse);
  relay.attach(transport);
  try {
    await transport.listen(options.listen);
  } catch (error) {
    transport.close();
    upstream.close();
    throw new StartupError((error as Error).message);
  }
  const ticker = setInterval(() => dns.expire(Date.now()), TICK_INTERVAL_MS);
  return {
    description: 'over kernel TCP sockets',
    summary() {
      const t = transport.stats;
      return [
        `tcp.accepted=${t.accepted}`,
        `tcp.open=${t.open}`,
        `tcp.answers_dropped=${t.answersDropped}`,
        ...counterPairs('dns.', RELAY_COUNTER_NAMES, dns.counts),
      ].join(' ');
    },
    rotateSecret() {
      throw new Error('the kernel transport uses no cookie secret');
    },
    stop() {
      clearInterval(ticker);
      transport.close();
      upstream.close();
    },
  };
}
