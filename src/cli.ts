#!/usr/bin/env node
/**
 * `stateless-tcp dns --interface IF --listen ADDR:PORT [--listen …] --upstream ADDR:PORT`
 *
 * Runs in the foreground; one line at start says what it listens on, SIGINT/SIGTERM stop it
 * cleanly (the nftables rule is removed), and any start-up problem is one line naming the fix.
 */
import { Command, InvalidArgumentError } from 'commander';
import { ChecksumPolicy, DECODE_RESULT_NAMES } from './wire/segment.js';
import { OUTCOME_NAMES, TCP_EVENT_NAMES } from './tcp/responder.js';
import { RELAY_COUNTER_NAMES } from './dns/relay.js';
import { formatEndpoint, parseEndpoint, type Endpoint } from './endpoint.js';
import { StartupError, startDnsFrontEnd, type RunningFrontEnd } from './front-end.js';

function endpointArgument(value: string, previous: Endpoint[] = []): Endpoint[] {
  try {
    return [...previous, parseEndpoint(value)];
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

function positiveInteger(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`"${value}" is not a positive integer`);
  return n;
}

interface DnsCommandOptions {
  interface: string;
  listen: Endpoint[];
  upstream: Endpoint[];
  timeout: number;
  checksums: 'verify' | 'ignore';
  closeAfterResponse: boolean;
  cookieSecretFile?: string;
}

/** Counters as `name=value` pairs, zeros left out. */
function summary(running: RunningFrontEnd): string {
  const parts: string[] = [];
  const add = (names: readonly string[], counts: Float64Array, prefix: string): void => {
    names.forEach((name, i) => {
      if (counts[i]! > 0) parts.push(`${prefix}${name}=${counts[i]}`);
    });
  };
  add(DECODE_RESULT_NAMES, running.pipeline.decodeCounts, 'decode.');
  add(OUTCOME_NAMES, running.pipeline.outcomeCounts, 'tcp.');
  add(TCP_EVENT_NAMES, running.pipeline.responder.events, 'tcp.');
  parts.push(`tcp.flows=${running.pipeline.responder.flows.size}`, `tcp.queued_bytes=${running.pipeline.responder.queuedBytes}`);
  add(RELAY_COUNTER_NAMES, running.pipeline.relay.counts, 'dns.');
  const capture = running.capture.stats();
  parts.push(`pcap.received=${capture.received}`, `pcap.dropped=${capture.dropped}`);
  parts.push(`sent=${running.sender.stats.sent}`, `send_failed=${running.sender.stats.failed}`);
  return parts.join(' ');
}

async function runDns(options: DnsCommandOptions): Promise<void> {
  if (options.upstream.length !== 1) throw new StartupError('give exactly one --upstream ADDR:PORT');
  const upstream = options.upstream[0]!;
  const running = await startDnsFrontEnd({
    interface: options.interface,
    listen: options.listen,
    upstream: { host: upstream.address, port: upstream.port },
    timeoutMs: options.timeout,
    checksumPolicy: options.checksums === 'ignore' ? ChecksumPolicy.IGNORE : ChecksumPolicy.VERIFY,
    closeAfterResponse: options.closeAfterResponse,
    cookieSecretFile: options.cookieSecretFile,
  });
  console.log(
    `stateless-tcp dns: listening on ${options.listen.map(formatEndpoint).join(', ')} at ${options.interface}` +
      `, upstream ${formatEndpoint(upstream)}, cookie secret ${running.secretSource} (pid ${process.pid})`,
  );
  process.on('SIGHUP', () => {
    try {
      running.rotateSecret();
      console.log('stateless-tcp dns: cookie secret rotated; the previous one is still accepted');
    } catch (error) {
      console.error(`stateless-tcp dns: cookie secret not rotated: ${(error as Error).message}`);
    }
  });
  const stop = (signal: string): void => {
    running.stop();
    console.log(`stateless-tcp dns: stopped on ${signal}: ${summary(running)}`);
    process.exit(0);
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
}

const program = new Command('stateless-tcp')
  .description('A TCP front end that keeps no per-connection state: answers from raw packets, relays to a backend.');

program
  .command('dns')
  .description('DNS over TCP front end relaying each query over UDP to a resolver')
  .requiredOption('-i, --interface <name>', 'interface to capture on (the one the listen addresses are on)')
  .requiredOption('-l, --listen <addr:port>', 'address and port to answer on; repeat for more (IPv6: [2001:2::2]:53)', endpointArgument)
  .requiredOption('-u, --upstream <addr:port>', 'UDP resolver to relay queries to', endpointArgument)
  .option('--timeout <ms>', 'answer SERVFAIL when the upstream has not answered within this time', positiveInteger, 2000)
  .option(
    '--close-after-response',
    "close each connection once its answers are sent (the talk's transaction mode); default: keep it open until the client closes",
    false,
  )
  .option(
    '--cookie-secret-file <file>',
    'SYN cookie secret shared by instances: 32 hex digits; re-read on SIGHUP to rotate it ' +
      '(default: $STATELESS_TCP_COOKIE_SECRET, else random)',
  )
  .option(
    '--checksums <verify|ignore>',
    'verify checksums of captured packets; "ignore" when clients on the same host send with checksum offload',
    'verify',
  )
  .action(async (options: DnsCommandOptions) => {
    if (options.checksums !== 'verify' && options.checksums !== 'ignore') {
      throw new StartupError(`--checksums takes verify or ignore, not "${options.checksums as string}"`);
    }
    await runDns(options);
  });

program.parseAsync().catch((error: unknown) => {
  const message = error instanceof Error ? error.message : String(error);
  console.error(`stateless-tcp: ${message}`);
  process.exit(1);
});
