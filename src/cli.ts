#!/usr/bin/env node
/**
 * `stateless-tcp dns --interface IF --listen ADDR:PORT [--listen …] --upstream ADDR:PORT`
 * `stateless-tcp http --interface IF --listen ADDR:PORT [--listen …] --upstream http://HOST:PORT`
 *
 * Runs in the foreground, logging one JSON line (pino) per significant event: start, secret
 * rotation, a shard worker's death and restart, stop with every counter. SIGINT/SIGTERM stop it
 * cleanly (the nftables rule is removed); any start-up problem is one line on stderr naming the
 * fix, and exit status 1. Every option can also come from `--config FILE` (config.ts).
 */
import { availableParallelism } from 'node:os';
import { Command, InvalidArgumentError } from 'commander';
import { ChecksumPolicy } from './wire/segment.js';
import { DEFAULT_RESPONDER_CONFIG } from './tcp/responder.js';
import { formatEndpoint, parseEndpoint, type Endpoint } from './endpoint.js';
import { StartupError, startKernelFrontEnd, startRawFrontEnd, type FrontEndOptions, type RunningFrontEnd } from './front-end.js';
import { applyConfigFile } from './config.js';
import { createLogger, LOG_LEVELS, type Logger } from './log.js';
import { DEFAULT_MAX_BODY_BYTES } from './http/request.js';
import { DEFAULT_PORT_LIFETIME_SECONDS, DEFAULT_QUERIES_PER_PORT, DEFAULT_UPSTREAM_PORTS, type DnsSettings } from './dns/application.js';

function oneEndpoint(value: string): Endpoint {
  try {
    return parseEndpoint(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

/** For options that repeat (`--listen`): each value adds one endpoint. */
function endpointArgument(value: string, previous: Endpoint[] = []): Endpoint[] {
  return [...previous, oneEndpoint(value)];
}

function positiveInteger(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`"${value}" is not a positive integer`);
  return n;
}

/** A size in bytes as nginx writes one: a whole number, with k, m or g for KiB, MiB, GiB. */
function byteSize(value: string): number {
  const match = /^(\d+)([kmg]?)$/i.exec(value.trim());
  const n = match === null ? Number.NaN : Number(match[1]) * 1024 ** ' kmg'.indexOf((match[2] || ' ').toLowerCase());
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError(`"${value}" is not a size in bytes (e.g. 1048576, 512k, 10m)`);
  return n;
}

function nonNegativeInteger(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`"${value}" is not a whole number`);
  return n;
}

function prefixLength(max: number): (value: string) => number {
  return (value) => {
    const n = nonNegativeInteger(value);
    if (n > max) throw new InvalidArgumentError(`"${value}" is longer than ${max} bits`);
    return n;
  };
}

/** Each socket's buffers take 64 KiB, and each worker holds up to twice this many open (draining ones). */
const MAX_UPSTREAM_PORTS = 64;

function upstreamPortCount(value: string): number {
  const n = positiveInteger(value);
  if (n > MAX_UPSTREAM_PORTS) throw new InvalidArgumentError(`"${value}" is more than ${MAX_UPSTREAM_PORTS}`);
  return n;
}

/** The options named as DnsSettings names them (commander turns --cache-size into cacheSize). */
type DnsPassThrough =
  | 'cacheSize'
  | 'maxQpsPerClient'
  | 'rateLimitIpv4Prefix'
  | 'rateLimitIpv6Prefix'
  | 'rateLimitAction'
  | 'upstreamProxyProtocol';

interface DnsCommandOptions extends RawCommandOptions, Pick<DnsSettings, DnsPassThrough> {
  upstream?: Endpoint[];
  timeout: number;
  closeAfterResponse: boolean;
  upstreamPorts: number;
  upstreamPortQueries: number;
  upstreamPortSeconds: number;
}

async function runDns(options: DnsCommandOptions): Promise<void> {
  if (options.upstream === undefined || options.upstream.length === 0)
    throw new StartupError('give --upstream ADDR:PORT, repeated for a pool (or "upstream" in --config)');
  const upstreams = options.upstream;
  const upstream = upstreams[0]!;
  if (options.cacheSize > 0 && options.upstreamProxyProtocol) {
    // The resolver sees each client in order to answer each client its own way (views, ACLs): a
    // cache would serve one client's answer to all.
    throw new StartupError("--cache-size would serve one client's answer to others: with --upstream-proxy-protocol, leave it 0");
  }
  if (options.rateLimitAction !== 'refuse' && options.rateLimitAction !== 'drop') {
    throw new StartupError(`--rate-limit-action takes refuse or drop, not "${options.rateLimitAction as string}"`);
  }
  const settings: DnsSettings = {
    kind: 'dns',
    upstream,
    upstreams,
    timeoutMs: options.timeout,
    upstreamPorts: options.upstreamPorts,
    queriesPerPort: options.upstreamPortQueries,
    portLifetimeMs: options.upstreamPortSeconds * 1000,
    cacheSize: options.cacheSize,
    maxQpsPerClient: options.maxQpsPerClient,
    rateLimitIpv4Prefix: options.rateLimitIpv4Prefix,
    rateLimitIpv6Prefix: options.rateLimitIpv6Prefix,
    rateLimitAction: options.rateLimitAction,
    upstreamProxyProtocol: options.upstreamProxyProtocol,
  };
  const running = await start(options, settings, options.closeAfterResponse);
  serve(options.log, options.listen, running, `upstream ${upstreams.map(formatEndpoint).join(', ')}`);
}

interface HttpCommandOptions extends RawCommandOptions {
  upstream?: string;
  timeout: number;
  maxBodySize: number;
}

async function runHttp(options: HttpCommandOptions): Promise<void> {
  if (options.upstream === undefined) throw new StartupError('give --upstream http://HOST:PORT (or "upstream" in --config)');
  const settings = { kind: 'http', origin: options.upstream, timeoutMs: options.timeout, maxBodyBytes: options.maxBodySize } as const;
  // HTTP closes as each request says (Connection: close), never after every response.
  const running = await start(options, settings, false);
  serve(options.log, options.listen, running, `backend ${options.upstream}`);
}

/** Starts the front end on the chosen transport. */
function start(
  options: RawCommandOptions,
  application: FrontEndOptions['application'],
  closeAfterResponse: boolean,
): Promise<RunningFrontEnd> {
  const common: FrontEndOptions = {
    application,
    listen: options.listen,
    closeAfterResponse,
    limits: {
      maxPipelined: options.maxPipelined,
      maxFlows: options.maxFlows,
      maxFlowsPerSource: options.maxFlowsPerSource,
      maxQueuedBytes: options.maxQueuedBytes,
      maxQueuedBytesPerSource: options.maxQueuedBytesPerSource,
      messageDeadlineMs: options.messageDeadline,
      zeroWindowLimitMs: options.zeroWindowLimit,
    },
    metrics: options.metrics,
  };
  return options.transport === 'kernel' ? startKernelFrontEnd(common) : startRawFrontEnd({ ...common, ...rawOptions(options) });
}

/** The options every raw front end shares. */
interface RawCommandOptions {
  transport: 'raw' | 'kernel';
  interface?: string;
  listen: Endpoint[];
  checksums: 'verify' | 'ignore';
  cookieSecretFile?: string;
  workers: number;
  maxPipelined?: number;
  maxFlows: number;
  maxFlowsPerSource: number;
  maxQueuedBytes: number;
  maxQueuedBytesPerSource: number;
  messageDeadline: number;
  zeroWindowLimit: number;
  metrics?: Endpoint;
  logLevel: string;
  /** Made from --log-level before the command runs. */
  log: Logger;
}

function rawOptions(options: RawCommandOptions) {
  if (options.interface === undefined)
    throw new StartupError('the raw transport needs --interface IF (the interface the listen addresses are on)');
  return {
    interface: options.interface,
    checksumPolicy: options.checksums === 'ignore' ? ChecksumPolicy.IGNORE : ChecksumPolicy.VERIFY,
    cookieSecretFile: options.cookieSecretFile,
    workers: options.workers,
    log: (line: string) => options.log.warn(line),
  };
}

/**
 * Test hook, on only when this variable is 1: SIGUSR2 kills shard 0's worker thread as a crash
 * would, so lab tests can prove a shard survives it. Off, SIGUSR2 keeps its default (exit).
 */
const TEST_HOOKS_VARIABLE = 'STATELESS_TCP_TEST_HOOKS';

/** Runs a started front end in the foreground: start line, SIGHUP rotation, summary on stop. */
function serve(log: Logger, listen: Endpoint[], running: RunningFrontEnd, backend: string): void {
  process.on('SIGHUP', () => {
    running.rotateSecret().then(
      (where) => log.info(`cookie secret rotated ${where}; the previous one is still accepted`),
      (error: Error) => log.error(`cookie secret not rotated: ${error.message}`),
    );
  });
  if (process.env[TEST_HOOKS_VARIABLE] === '1' && running.terminateShardWorker !== undefined) {
    process.on('SIGUSR2', () => {
      log.info("test hook: terminating shard 0's worker thread");
      running.terminateShardWorker!(0).catch((error: Error) => log.error(`test hook: ${error.message}`));
    });
  }
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    void running
      .stop()
      .then(() => running.summary())
      .then(
        (summary) => log.info(`stopped on ${signal}: ${summary}`),
        (error: Error) => log.error(`stopped on ${signal}: ${error.message}`),
      )
      .finally(() => process.exit(0));
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
  // Only now: whoever waits for this line may signal at once, and a signal that came before its
  // handler would end the process (SIGHUP's default action) instead of rotating the secret.
  log.info(`listening on ${listen.map(formatEndpoint).join(', ')} ${running.description}, ${backend}`);
}

/** Options both commands take, in the same words. */
function withRawOptions(command: Command): Command {
  return command
    .option('--config <file>', 'read options from this YAML or JSON file (names as here, without the dashes); the command line wins')
    .option('-i, --interface <name>', 'interface to capture on, the one the listen addresses are on (raw transport)')
    .option('-l, --listen <addr:port>', 'address and port to answer on; repeat for more (IPv6: [2001:2::2]:53)', endpointArgument)
    .option(
      '--transport <raw|kernel>',
      'raw: stateless, from captured packets (needs root); kernel: ordinary TCP sockets, the fallback and baseline',
      'raw',
    )
    .option(
      '--cookie-secret-file <file>',
      'SYN cookie secret shared by instances: 32 hex digits; re-read on SIGHUP to rotate it ' +
        '(default: $STATELESS_TCP_COOKIE_SECRET, else random)',
    )
    .option(
      '--workers <n>',
      'shard worker threads (raw transport), each with its own ring, raw socket and upstream socket; default: one per core',
      positiveInteger,
      availableParallelism(),
    )
    .option(
      '--checksums <verify|ignore>',
      'verify checksums of captured packets (a checksum left to offload is accepted); "ignore" accepts every checksum',
      'verify',
    )
    .option(
      '--max-pipelined <n>',
      'most answers one connection may owe; its further queries or requests stay unread until answers go out ' +
        '(default: 100 for dns, 16 for http)',
      positiveInteger,
    )
    .option(
      '--message-deadline <ms>',
      'a query or request must arrive whole within this time of its first byte, however it is trickled; ' +
        'past it the connection is reset',
      positiveInteger,
      DEFAULT_RESPONDER_CONFIG.messageDeadlineMs,
    )
    .option(
      '--zero-window-limit <ms>',
      'a client may keep its window closed on answers waiting for it this long (probed meanwhile); then the connection is reset',
      positiveInteger,
      DEFAULT_RESPONDER_CONFIG.zeroWindowLimitMs,
    )
    .option(
      '--max-flows <n>',
      'most connections with something in flight per shard worker; when full, a heavier source gives way to a newcomer',
      positiveInteger,
      DEFAULT_RESPONDER_CONFIG.maxFlows,
    )
    .option(
      '--max-flows-per-source <n>',
      'most of those from one IPv4 address or IPv6 /64, per shard worker',
      positiveInteger,
      DEFAULT_RESPONDER_CONFIG.maxFlowsPerSource,
    )
    .option(
      '--max-queued-bytes <bytes>',
      'most bytes queued (requests and answers) per shard worker',
      positiveInteger,
      DEFAULT_RESPONDER_CONFIG.maxQueuedBytes,
    )
    .option(
      '--max-queued-bytes-per-source <bytes>',
      'most of those for one IPv4 address or IPv6 /64, per shard worker',
      positiveInteger,
      DEFAULT_RESPONDER_CONFIG.maxQueuedBytesPerSource,
    )
    .option('--metrics <addr:port>', 'serve Prometheus metrics at http://ADDR:PORT/metrics', oneEndpoint)
    .option('--log-level <level>', `how much to log: ${LOG_LEVELS.join(', ')}`, 'info');
}

/** After --config is read: what no default supplies, and the choices commander does not check. */
function checkRawOptions(options: RawCommandOptions, command: Command): void {
  if (options.listen === undefined) throw new StartupError('give --listen ADDR:PORT (or "listen" in --config)');
  if (!(LOG_LEVELS as readonly string[]).includes(options.logLevel)) {
    throw new StartupError(`--log-level takes one of ${LOG_LEVELS.join(', ')}, not "${options.logLevel}"`);
  }
  options.log = createLogger(command.name(), options.logLevel);
  if (options.transport !== 'raw' && options.transport !== 'kernel') {
    throw new StartupError(`--transport takes raw or kernel, not "${options.transport as string}"`);
  }
  if (options.checksums !== 'verify' && options.checksums !== 'ignore') {
    throw new StartupError(`--checksums takes verify or ignore, not "${options.checksums as string}"`);
  }
}

const program = new Command('stateless-tcp').description(
  'A TCP front end that keeps no per-connection state: answers from raw packets, relays to a backend.',
);

withRawOptions(program.command('dns').description('DNS over TCP front end relaying each query over UDP to a resolver'))
  .option(
    '-u, --upstream <addr:port>',
    'UDP resolver to relay queries to; repeat for a pool: health-checked (. SOA each second, down after 3 failures), ' +
      'each query to the healthy one with the fewest outstanding, retried on another after half --timeout',
    endpointArgument,
  )
  .option('--timeout <ms>', 'answer SERVFAIL when the upstream has not answered within this time', positiveInteger, 2000)
  .option(
    '--close-after-response',
    "close each connection once its answers are sent (the talk's transaction mode); default: keep it open until the client closes",
    false,
  )
  .option(
    '--upstream-ports <n>',
    'UDP sockets, each on its own random source port, that each shard worker spreads its queries over ' +
      `(RFC 5452; at most ${MAX_UPSTREAM_PORTS}; an upstream on loopback gets one)`,
    upstreamPortCount,
    DEFAULT_UPSTREAM_PORTS,
  )
  .option(
    '--upstream-port-queries <n>',
    'replace an upstream socket by one on a new random port after it has sent this many queries',
    positiveInteger,
    DEFAULT_QUERIES_PER_PORT,
  )
  .option(
    '--upstream-port-seconds <n>',
    'replace an upstream socket by one on a new random port after this many seconds at most',
    positiveInteger,
    DEFAULT_PORT_LIFETIME_SECONDS,
  )
  .option(
    '--cache-size <n>',
    "answers kept in each shard worker's packet cache and served again until their TTL runs out (0: no cache)",
    nonNegativeInteger,
    0,
  )
  .option(
    '--max-qps-per-client <n>',
    "queries a second each client network may send, per shard worker (a burst of one second's worth); 0: no limit",
    nonNegativeInteger,
    0,
  )
  .option('--rate-limit-ipv4-prefix <bits>', 'the client network of --max-qps-per-client for IPv4', prefixLength(32), 24)
  .option('--rate-limit-ipv6-prefix <bits>', 'the client network of --max-qps-per-client for IPv6', prefixLength(128), 56)
  .option('--rate-limit-action <refuse|drop>', 'what a query over the limit gets: REFUSED, or no answer', 'refuse')
  .option(
    '--upstream-proxy-protocol',
    'start each query to the upstream (UDP datagram, TCP connection) with a PROXY protocol v2 header naming the client, ' +
      "so the resolver's access control and logs see the client (unbound: proxy-protocol-port)",
    false,
  )
  .action(async (options: DnsCommandOptions, command: Command) => {
    checkRawOptions(options, command);
    await runDns(options);
  });

withRawOptions(program.command('http').description('HTTP/1.x front end relaying each request to a backend web server (keep-alive pool)'))
  .option('-u, --upstream <url>', 'backend web server, http://HOST:PORT')
  .option('--timeout <ms>', 'answer 504 when the backend has sent no headers (or no body data) for this long', positiveInteger, 10_000)
  .option(
    '--max-body-size <bytes>',
    "largest request body relayed, as nginx's client_max_body_size (k, m, g suffixes); bigger ones get 413; 0: no limit",
    byteSize,
    DEFAULT_MAX_BODY_BYTES,
  )
  .action(async (options: HttpCommandOptions, command: Command) => {
    checkRawOptions(options, command);
    await runHttp(options);
  });

// --config: fill in every option the command line left to its default.
program.hook('preAction', (_program, command) => {
  const file = command.getOptionValue('config') as string | undefined;
  if (file !== undefined) applyConfigFile(command, file);
});

program.parseAsync().catch((error: unknown) => {
  const message = error instanceof Error ? error.message : String(error);
  console.error(`stateless-tcp: ${message}`);
  process.exit(1);
});
