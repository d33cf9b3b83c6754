#!/usr/bin/env node
/**
 * `stateless-tcp dns --interface IF --listen ADDR:PORT [--listen …] --upstream ADDR:PORT`
 * `stateless-tcp http --interface IF --listen ADDR:PORT [--listen …] --upstream http://HOST:PORT [--upstream …]`
 *
 * Runs in the foreground, logging one JSON line (pino) per significant event: start, secret
 * rotation, a shard worker's death and restart, stop with every counter. SIGINT/SIGTERM stop it
 * cleanly (the nftables rule is removed); any start-up problem is one line on stderr naming the
 * fix, and exit status 1. Every option can also come from `--config FILE` (config.ts).
 */
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { Command, InvalidArgumentError, Option } from 'commander';
import { ChecksumPolicy } from './wire/segment.js';
import { DEFAULT_RESPONDER_CONFIG } from './tcp/responder.js';
import { formatEndpoint, parseEndpoint, type Endpoint } from './endpoint.js';
import { StartupError, startKernelFrontEnd, startRawFrontEnd, type FrontEndOptions, type RunningFrontEnd } from './front-end.js';
import { applyConfigFile } from './config.js';
import { DEFAULT_CAPTURE_BUFFER_BYTES } from './io/capture.js';
import { createLogger, LOG_LEVELS, type Logger } from './log.js';
import { DEFAULT_MAX_BODY_BYTES } from './http/request.js';
import { parseOrigin } from './http/backend.js';
import { DEFAULT_HTTP_HEALTH_CHECK, type HttpSettings } from './http/application.js';
import { DEFAULT_PORT_LIFETIME_SECONDS, DEFAULT_QUERIES_PER_PORT, DEFAULT_UPSTREAM_PORTS, type DnsSettings } from './dns/application.js';
import { DEFAULT_HEALTH_CHECK } from './dns/upstream-pool.js';
import { DEFAULT_HEALTH_THRESHOLDS, UPSTREAM_POLICIES, type UpstreamPolicy } from './upstream-selection.js';

/** dns-packet's table of record type names (its typings leave the module out). */
const recordTypes = createRequire(import.meta.url)('dns-packet/types.js') as { toType(name: string): number };

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

/** An upstream as `--upstream` gives it: its address (dns `ADDR:PORT`, http a URL), and `,weight=N` after it. */
interface UpstreamArgument<A> {
  address: A;
  /** Undefined when not given (1). */
  weight: number | undefined;
}

/** The largest weight: the weighted policy's counters stay exact far beyond any pool's queries. */
const MAX_WEIGHT = 65535;

/** For `--upstream`, which repeats: each value adds one upstream, its address read by `parseAddress`. */
function upstreamArgument<A>(parseAddress: (value: string) => A) {
  return (value: string, previous: UpstreamArgument<A>[] = []): UpstreamArgument<A>[] => [...previous, oneUpstream(value, parseAddress)];
}

function oneUpstream<A>(value: string, parseAddress: (value: string) => A): UpstreamArgument<A> {
  const [address, ...parameters] = value.split(',');
  let weight: number | undefined;
  for (const parameter of parameters) {
    const m = /^weight=(.*)$/.exec(parameter);
    if (m === null)
      throw new InvalidArgumentError(`"${parameter}" in "${value}" is not weight=N, the one thing an upstream takes after its address`);
    weight = Number(m[1]);
    if (!Number.isInteger(weight) || weight < 1 || weight > MAX_WEIGHT) {
      throw new InvalidArgumentError(`the weight in "${value}" is not a whole number from 1 to ${MAX_WEIGHT}`);
    }
  }
  return { address: parseAddress(address!), weight };
}

/** An origin-form request target (RFC 9112 §3.2.1) for the health probe: an absolute path, with an optional query. */
function healthCheckPath(value: string): string {
  if (!/^\/[\x21-\x7e]*$/.test(value)) throw new InvalidArgumentError(`"${value}" is not a path starting with / (no spaces)`);
  return value;
}

function oneOrigin(value: string): string {
  try {
    return parseOrigin(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

/** A domain name for the health probe's question (RFC 1035 §2.3.4: labels of 1-63 octets, 255 in all). */
function domainName(value: string): string {
  const labels = value === '.' ? [] : value.replace(/\.$/, '').split('.');
  const octets = labels.reduce((sum, label) => sum + 1 + label.length, 1);
  if (labels.some((label) => label.length === 0 || label.length > 63) || octets > 255 || !/^[\x21-\x7e]+$/.test(value)) {
    throw new InvalidArgumentError(`"${value}" is not a domain name (labels of 1-63 characters separated by dots; "." is the root)`);
  }
  return value;
}

/** A record type by name (SOA, A, …) or as RFC 3597 writes any type (TYPE65); its number. */
function recordType(value: string): number {
  const generic = /^TYPE(\d+)$/i.exec(value);
  const type = generic !== null ? Number(generic[1]) : recordTypes.toType(value);
  if (!(type >= 1 && type <= 65535)) throw new InvalidArgumentError(`"${value}" is not a record type (SOA, A, NS, … or TYPE1-TYPE65535)`);
  return type;
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

/** The options of a pool of upstreams, the same for both commands (withPoolOptions). */
interface PoolCommandOptions<A> {
  upstream?: UpstreamArgument<A>[];
  upstreamPolicy: UpstreamPolicy;
  healthCheckInterval: number;
  healthCheckTimeout: number;
  healthCheckDownAfter: number;
  healthCheckUpAfter: number;
}

interface DnsCommandOptions extends RawCommandOptions, PoolCommandOptions<Endpoint>, Pick<DnsSettings, DnsPassThrough> {
  healthCheckName: string;
  healthCheckType: number;
  timeout: number;
  closeAfterResponse: boolean;
  upstreamPorts: number;
  upstreamPortQueries: number;
  upstreamPortSeconds: number;
  ecs: boolean;
  ecsIpv4Prefix: number;
  ecsIpv6Prefix: number;
  ecsOverride: boolean;
}

/** The options that only a pool uses (with one upstream there is no choice to make and no health to check). */
const POOL_OPTIONS = [
  '--upstream-policy',
  '--health-check-interval',
  '--health-check-timeout',
  '--health-check-down-after',
  '--health-check-up-after',
];
const ECS_OPTIONS = ['--ecs-ipv4-prefix', '--ecs-ipv6-prefix', '--ecs-override'];

/** The first of `names` given on the command line or in --config, rather than left to its default. */
function givenOf(command: Command, names: readonly string[]): string | undefined {
  return names.find((name) => {
    const source = command.getOptionValueSource(command.options.find((o) => o.long === name)!.attributeName());
    return source === 'cli' || source === 'config';
  });
}

/**
 * The upstreams (at least one), once the pool options are checked against each other: the
 * pool-only ones (`poolOnly`, with POOL_OPTIONS) need two upstreams or more, weights the
 * weighted policy, and a probe must be over before the next is due.
 */
function checkPool<A>(
  options: PoolCommandOptions<A>,
  command: Command,
  format: (address: A) => string,
  missing: string,
  poolOnly: readonly string[] = [],
): UpstreamArgument<A>[] {
  if (options.upstream === undefined || options.upstream.length === 0) throw new StartupError(missing);
  if (!UPSTREAM_POLICIES.includes(options.upstreamPolicy)) {
    throw new StartupError(`--upstream-policy takes ${UPSTREAM_POLICIES.join(' or ')}, not "${options.upstreamPolicy as string}"`);
  }
  const weighted = options.upstream.find((u) => u.weight !== undefined);
  if (options.upstream.length === 1) {
    const given = givenOf(command, [...POOL_OPTIONS, ...poolOnly]) ?? (weighted === undefined ? undefined : 'weight=');
    if (given !== undefined)
      throw new StartupError(`${given} applies to a pool of upstreams: give --upstream twice or more, or leave it out`);
  } else if (weighted !== undefined && options.upstreamPolicy !== 'weighted') {
    throw new StartupError(
      `weight=${weighted.weight} on --upstream ${format(weighted.address)} needs --upstream-policy weighted (least-outstanding ignores weights, as dnsdist's does)`,
    );
  }
  if (options.healthCheckTimeout >= options.healthCheckInterval) {
    throw new StartupError(
      `--health-check-timeout ${options.healthCheckTimeout} must be shorter than --health-check-interval ${options.healthCheckInterval}: a probe must be over before the next is due`,
    );
  }
  return options.upstream;
}

/** The pool as the start line names it: each upstream, with its weight under the weighted policy. */
function poolDescription<A>(upstreams: readonly UpstreamArgument<A>[], policy: UpstreamPolicy, format: (address: A) => string): string {
  return upstreams.map((u) => `${format(u.address)}${policy === 'weighted' ? ` (weight ${u.weight ?? 1})` : ''}`).join(', ');
}

async function runDns(options: DnsCommandOptions, command: Command): Promise<void> {
  const pool = checkPool(options, command, formatEndpoint, 'give --upstream ADDR:PORT, repeated for a pool (or "upstream" in --config)');
  const upstreams = pool.map((u) => u.address);
  const upstream = upstreams[0]!;
  if (options.cacheSize > 0 && options.upstreamProxyProtocol) {
    // The resolver sees each client in order to answer each client its own way (views, ACLs): a
    // cache would serve one client's answer to all.
    throw new StartupError("--cache-size would serve one client's answer to others: with --upstream-proxy-protocol, leave it 0");
  }
  if (options.rateLimitAction !== 'refuse' && options.rateLimitAction !== 'drop') {
    throw new StartupError(`--rate-limit-action takes refuse or drop, not "${options.rateLimitAction as string}"`);
  }
  if (!options.ecs) {
    const ecsOnly = givenOf(command, ECS_OPTIONS);
    if (ecsOnly !== undefined) throw new StartupError(`${ecsOnly} has no effect without --ecs: add --ecs, or leave it out`);
  } else if (options.upstreamProxyProtocol) {
    throw new StartupError('--ecs and --upstream-proxy-protocol both tell the resolver who the client is: pick one');
  }
  const settings: DnsSettings = {
    kind: 'dns',
    upstream,
    upstreams,
    weights: pool.map((u) => u.weight ?? 1),
    policy: options.upstreamPolicy,
    healthCheck: {
      name: options.healthCheckName,
      type: options.healthCheckType,
      intervalMs: options.healthCheckInterval,
      timeoutMs: options.healthCheckTimeout,
      downAfter: options.healthCheckDownAfter,
      upAfter: options.healthCheckUpAfter,
    },
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
    clientSubnet: options.ecs
      ? { ipv4PrefixLength: options.ecsIpv4Prefix, ipv6PrefixLength: options.ecsIpv6Prefix, override: options.ecsOverride }
      : null,
  };
  const running = await start(options, settings, options.closeAfterResponse);
  serve(options.log, options.listen, running, `upstream ${poolDescription(pool, options.upstreamPolicy, formatEndpoint)}`);
}

interface HttpCommandOptions extends RawCommandOptions, PoolCommandOptions<string> {
  healthCheckPath: string;
  timeout: number;
  maxBodySize: number;
}

/** An origin as the start line and errors name it: as parseOrigin made it. */
const originText = (origin: string): string => origin;

async function runHttp(options: HttpCommandOptions, command: Command): Promise<void> {
  const pool = checkPool(
    options,
    command,
    originText,
    'give --upstream http://HOST:PORT, repeated for a pool (or "upstream" in --config)',
    ['--health-check-path'],
  );
  const settings: HttpSettings = {
    kind: 'http',
    origins: pool.map((u) => u.address),
    weights: pool.map((u) => u.weight ?? 1),
    policy: options.upstreamPolicy,
    healthCheck: {
      path: options.healthCheckPath,
      intervalMs: options.healthCheckInterval,
      timeoutMs: options.healthCheckTimeout,
      downAfter: options.healthCheckDownAfter,
      upAfter: options.healthCheckUpAfter,
    },
    timeoutMs: options.timeout,
    maxBodyBytes: options.maxBodySize,
  };
  // HTTP closes as each request says (Connection: close), never after every response.
  const running = await start(options, settings, false);
  serve(
    options.log,
    options.listen,
    running,
    `${pool.length > 1 ? 'backends' : 'backend'} ${poolDescription(pool, options.upstreamPolicy, originText)}`,
  );
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
  gso: 'on' | 'off';
  captureBuffer: number;
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
    gso: options.gso === 'on',
    captureBufferBytes: options.captureBuffer * 1024 * 1024,
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
      '--capture-buffer <MiB>',
      "the capture's kernel buffer for open connections' packets, resident from the start (2 KiB a packet); " +
        'the SYN lane gets an eighth, coalesced frames half, the rest a thirty-second',
      positiveInteger,
      DEFAULT_CAPTURE_BUFFER_BYTES / (1024 * 1024),
    )
    .option(
      '--gso <on|off>',
      'on: send on the capture interface, the segments of one burst as one frame the kernel or NIC cuts (GSO), ' +
        'to the MAC address the client came from (Ethernet interfaces; others use the raw socket); off: a raw IP socket for every segment',
      'on',
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
  if (options.gso !== 'on' && options.gso !== 'off') {
    throw new StartupError(`--gso takes on or off, not "${options.gso as string}"`);
  }
}

const program = new Command('stateless-tcp').description(
  'A TCP front end that keeps no per-connection state: answers from raw packets, relays to a backend.',
);

/**
 * The options of a pool, in the same words for both commands but for what a query or request is
 * (`what`) and what counts as a failure of one (`failure`).
 */
function withPoolOptions(command: Command, what: string, failure: string): Command {
  return command
    .option(
      '--upstream-policy <least-outstanding|weighted>',
      `a pool's choice of upstream: the healthy one with the fewest ${what} outstanding (dnsdist's leastOutstanding; ` +
        'weights ignored), or each healthy one in proportion to its weight (smooth weighted round robin)',
      'least-outstanding',
    )
    .option(
      '--health-check-interval <ms>',
      'how often each upstream of a pool is probed (dnsdist checkInterval)',
      positiveInteger,
      DEFAULT_HEALTH_THRESHOLDS.intervalMs,
    )
    .option(
      '--health-check-timeout <ms>',
      'how long a probe may wait for its answer; shorter than the interval (dnsdist checkTimeout)',
      positiveInteger,
      DEFAULT_HEALTH_THRESHOLDS.timeoutMs,
    )
    .option(
      '--health-check-down-after <n>',
      `failures in a row that mark an upstream down: probes, and ${failure} (dnsdist maxCheckFailures)`,
      positiveInteger,
      DEFAULT_HEALTH_THRESHOLDS.downAfter,
    )
    .option(
      '--health-check-up-after <n>',
      'passed probes in a row that mark a down upstream up again (dnsdist rise)',
      positiveInteger,
      DEFAULT_HEALTH_THRESHOLDS.upAfter,
    );
}

withPoolOptions(
  withRawOptions(program.command('dns').description('DNS over TCP front end relaying each query over UDP to a resolver')).option(
    '-u, --upstream <addr:port[,weight=N]>',
    'UDP resolver to relay queries to; repeat for a pool: health-checked (--health-check-*), each query to a healthy one ' +
      '(--upstream-policy), retried on another after half --timeout; weight=N for --upstream-policy weighted (default 1)',
    upstreamArgument(oneEndpoint),
  ),
  'queries',
  'queries it left unanswered within their time',
)
  .option(
    '--health-check-name <name>',
    "the name a pool's health probe (and the start-up probe) asks for (dnsdist checkName)",
    domainName,
    DEFAULT_HEALTH_CHECK.name,
  )
  .addOption(
    new Option('--health-check-type <type>', 'the record type it asks for: SOA, A, … or TYPEnnn (dnsdist checkType)')
      .argParser(recordType)
      .default(DEFAULT_HEALTH_CHECK.type, 'SOA'),
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
  .option(
    '--ecs',
    "add an EDNS Client Subnet option (RFC 7871) with the client's network to each query to the upstream, " +
      "so that the resolver's answers and logs can follow the client; a client's own option is kept",
    false,
  )
  .option('--ecs-ipv4-prefix <bits>', "how much of an IPv4 client's address --ecs gives (dnsdist ECSSourcePrefixV4)", prefixLength(32), 24)
  .option('--ecs-ipv6-prefix <bits>', "how much of an IPv6 client's address --ecs gives (dnsdist ECSSourcePrefixV6)", prefixLength(128), 56)
  .option(
    '--ecs-override',
    "replace a client's own client subnet option with its real network, never longer than the client's prefix " +
      '(dnsdist ECSOverride); the answer gives the client its own option back',
    false,
  )
  .action(async (options: DnsCommandOptions, command: Command) => {
    checkRawOptions(options, command);
    await runDns(options, command);
  });

withPoolOptions(
  withRawOptions(
    program.command('http').description('HTTP/1.x front end relaying each request to a backend web server (keep-alive pool)'),
  ).option(
    '-u, --upstream <url[,weight=N]>',
    'backend web server, http://HOST:PORT; repeat for a pool: health-checked (--health-check-*), each request to a healthy one ' +
      '(--upstream-policy), an idempotent request without a body retried once on another when its backend refused or reset ' +
      'the connection; weight=N for --upstream-policy weighted (default 1)',
    upstreamArgument(oneOrigin),
  ),
  'requests',
  'requests it refused, reset or did not answer within --timeout',
)
  .option(
    '--health-check-path <path>',
    "the path a pool's health probe (and the start-up probe) asks for with GET; any status below 500 passes",
    healthCheckPath,
    DEFAULT_HTTP_HEALTH_CHECK.path,
  )
  .option('--timeout <ms>', 'answer 504 when the backend has sent no headers (or no body data) for this long', positiveInteger, 10_000)
  .option(
    '--max-body-size <bytes>',
    "largest request body relayed, as nginx's client_max_body_size (k, m, g suffixes); bigger ones get 413; 0: no limit",
    byteSize,
    DEFAULT_MAX_BODY_BYTES,
  )
  .action(async (options: HttpCommandOptions, command: Command) => {
    checkRawOptions(options, command);
    await runHttp(options, command);
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
