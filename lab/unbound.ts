/**
 * The lab's resolver: unbound on the server namespace's loopback — or, for a resolver on another
 * host, in a namespace of its own (LabOptions.remoteResolver) — serving the static zone of zone.ts
 * and nothing else, run in the foreground as a child of the lab (no daemon, chroot, privilege drop
 * or syslog), with its configuration in the lab's temp dir.
 */
import type { ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LAB_ADDRESSES } from './network.js';
import { type ExecOptions, type ExecResult, exitDescription, hasExited, waitUntil } from './processes.js';
import { LAB_ZONE, zoneRecords } from './zone.js';

export interface UpstreamEndpoint {
  address: string;
  port: number;
}

export interface UpstreamEndpoints {
  readonly v4: UpstreamEndpoint;
  readonly v6: UpstreamEndpoint;
}

/** Where the lab's unbound listens (UDP and TCP) inside the server namespace. */
export const LAB_UPSTREAM: UpstreamEndpoints = {
  v4: { address: '127.0.0.1', port: 5300 },
  v6: { address: '::1', port: 5300 },
};

/** Where it listens in a namespace of its own (LabOptions.remoteResolver), reached from the server over a veth pair. */
export const REMOTE_UPSTREAM: UpstreamEndpoints = {
  v4: { address: LAB_ADDRESSES.resolverV4, port: 5300 },
  v6: { address: LAB_ADDRESSES.resolverV6, port: 5300 },
};

/** The configuration file's name in the lab's temp dir (tests check it with unbound-checkconf). */
export const UNBOUND_CONFIG_FILE = 'unbound.conf';

const UNBOUND_READY_TIMEOUT_MS = 10_000;

/** What starting unbound needs of the lab: running things in its namespace while setup may go on. */
export interface ResolverNamespace {
  spawn(argv: readonly string[]): ChildProcess;
  exec(argv: readonly string[], options?: ExecOptions): Promise<ExecResult>;
  /** Throws once the lab is closing, which ends the wait for unbound. */
  assertOpen(): void;
  /** The last lines a spawned process printed, for error messages. */
  recentOutput(child: ChildProcess): string;
}

/**
 * Writes the configuration to `directory` and starts unbound in its namespace, listening on
 * `upstream`. Unbound logs to stderr (kept for error messages). It is ready once it answers
 * www.lab.test correctly over UDP; if it exits first, this fails with its last log lines.
 */
export async function startUnbound(
  server: ResolverNamespace,
  directory: string,
  extraServerLines: readonly string[],
  upstream: UpstreamEndpoints = LAB_UPSTREAM,
): Promise<ChildProcess> {
  const configFile = join(directory, UNBOUND_CONFIG_FILE);
  await writeFile(configFile, unboundConfig(directory, extraServerLines, upstream));
  const unbound = server.spawn(['unbound', '-c', configFile]);
  const { address, port } = upstream.v4;
  await waitUntil('unbound answering www.lab.test', UNBOUND_READY_TIMEOUT_MS, async () => {
    server.assertOpen();
    if (hasExited(unbound)) {
      throw new Error(`unbound exited during lab setup (${exitDescription(unbound)}): ${server.recentOutput(unbound)}`);
    }
    const answer = await server.exec(['dig', `@${address}`, '-p', String(port), '+time=1', '+tries=1', '+short', LAB_ZONE.www.name, 'A'], {
      timeoutMs: 2_000,
    });
    return answer.code === 0 && answer.stdout.trim() === LAB_ZONE.www.a;
  });
  return unbound;
}

function unboundConfig(directory: string, extraServerLines: readonly string[], upstream: UpstreamEndpoints): string {
  const server = [
    ...Object.values(upstream).map((e) => `interface: ${e.address}@${e.port}`),
    // Off loopback, unbound refuses everyone until told otherwise: let the lab's ranges ask.
    ...(upstream === LAB_UPSTREAM ? [] : ['access-control: 198.18.0.0/15 allow', 'access-control: 2001:2::/48 allow']),
    // Run in the foreground as a child we own: no daemon, chroot, privilege drop or syslog.
    'do-daemonize: no',
    'chroot: ""',
    'username: ""',
    `directory: "${directory}"`,
    `pidfile: "${join(directory, 'unbound.pid')}"`,
    'use-syslog: no',
    'logfile: ""',
    'verbosity: 1',
    // No DNSSEC validation (no trust anchor needed); one thread keeps start-up fast.
    'module-config: "iterator"',
    'num-threads: 1',
    'so-reuseport: no',
    'do-not-query-localhost: yes',
    // The UDP limit that makes mid and big come back TC=1 (1232 is also the default).
    'max-udp-size: 1232',
    // Keep RRset order fixed so tests can compare TXT strings in order.
    'rrset-roundrobin: no',
    // Local-zone answers are synthesised per query, never taken from the message/RRset caches, and
    // "." static leaves the iterator nothing to look up: answers cannot go stale or differ by cache state.
    'local-zone: "." static',
    `local-zone: "${LAB_ZONE.apex}" static`,
    ...zoneRecords().map((rr) => `local-data: '${rr}'`),
    ...extraServerLines,
  ];
  return ['server:', ...server.map((line) => `  ${line}`), 'remote-control:', '  control-enable: no', ''].join('\n');
}
