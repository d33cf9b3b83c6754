/**
 * Idle-connection memory: a client in the lab opens N connections to a server and holds them
 * without sending anything; the server's memory before and after, divided by N, is what one idle
 * connection costs it.
 *
 * Two places hold that memory. The server process's own (RSS): stateless-tcp's objects, a Node
 * socket per connection in the kernel transport, dnsdist's per-connection buffers. And the kernel's
 * (slab): every kernel TCP socket — the client's and, for kernel-TCP servers, the server's — with
 * its file, dentry and inode. Slab is machine-wide, so the client's own sockets are in it too; the
 * raw transport's server holds no kernel socket, so its slab growth is the client's share, and
 * subtracting it from another server's growth estimates that server's kernel share.
 */
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Lab } from '../../lab/lab.js';
import { type Contender, type StartMode, SERVICE_PORT, openFilesHardLimit, waitUntilAnswering } from './contenders.js';
import { rssBytes, slabBytes } from './proc-stats.js';

const IDLE_CLIENT = fileURLToPath(new URL('../idle-client.js', import.meta.url));

/** Connections per client source address: well inside the 64,512 ports of 1024-65535. */
const CONNECTIONS_PER_SOURCE_ADDRESS = 12_000;
/** Handshakes in flight at once: enough to open 50,000 in seconds, few enough not to overflow backlogs. */
const CONNECT_CONCURRENCY = 512;

export interface IdleResult {
  contender: string;
  commandLine: string;
  status: 'ok' | 'n/a' | 'failed';
  reason?: string;
  requested: number;
  /** Connections the client held when memory was read. */
  held: number;
  failed: number;
  /** Connections the server closed while the client held them. */
  closedByServer: number;
  /** Established sockets on the server's service port (the kernel's view; 0 for the raw transport). */
  serverKernelSockets: number;
  secondsToOpen: number;
  rssBeforeBytes: number;
  rssAfterBytes: number;
  rssBytesPerConnection: number;
  slabBytesPerConnection: number;
  /** The server's last line when stopped while the connections were still held (stateless-tcp's counters). */
  serverSummary: string;
  /** Slab growth per connection less the raw transport's (the client's own sockets); 0 when the server holds no kernel socket; null without a raw run to subtract. */
  serverKernelBytesPerConnection: number | null;
}

/** 198.18.1.1, 198.18.1.2, …: client addresses beside 198.18.0.1, inside 198.18.0.0/15. */
function extraClientAddresses(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `198.18.1.${i + 1}`);
}

/**
 * Readies a fresh lab's client side for many connections: extra source addresses (and the server's
 * route back to them), the whole ephemeral port range. Connection tracking stays off: nothing in
 * these namespaces loads a conntrack rule.
 */
async function prepareClientSide(lab: Lab, addresses: readonly string[]): Promise<void> {
  const run = async (where: 'client' | 'server', argv: string[]): Promise<void> => {
    const result = await lab.exec(where, argv);
    if (result.code !== 0) throw new Error(`${argv.join(' ')}: ${result.stderr.trim()}`);
  };
  const batch = `${addresses.map((a) => `addr add ${a}/32 dev ${lab.clientInterface}`).join('\n')}\n`;
  const added = await lab.exec('client', ['ip', '-batch', '-'], { input: batch });
  if (added.code !== 0) throw new Error(`adding client addresses: ${added.stderr.trim()}`);
  await run('server', ['ip', 'route', 'add', '198.18.1.0/24', 'dev', lab.serverInterface]);
  await run('client', ['sysctl', '-q', '-w', 'net.ipv4.ip_local_port_range=1024 65535']);
}

async function countEstablishedOnServicePort(lab: Lab): Promise<number> {
  const result = await lab.exec('server', ['ss', '-Htn', 'state', 'established', `( sport = :${SERVICE_PORT} )`], { timeoutMs: 30_000 });
  return result.stdout.split('\n').filter((line) => line.trim() !== '').length;
}

/** Descriptors a process keeps for everything but the held sockets (stdio, epoll, libuv, dnsdist's pipes). */
const DESCRIPTOR_RESERVE = 1_000;

/**
 * How many connections a contender can be asked to hold: a server that keeps a kernel socket per
 * connection holds at most its open-file limit, so it gets that many (less a reserve); the raw
 * transport, with no socket per connection, gets all that were asked for.
 */
export function connectionsFor(contender: Contender, requested: number): number {
  return contender.name === 'stateless' ? requested : Math.min(requested, openFilesHardLimit() - DESCRIPTOR_RESERVE);
}

export async function measureIdleConnections(
  lab: Lab,
  contender: Contender,
  requested: number,
  mode: StartMode,
  rawSlabBytesPerConnection: number | null,
): Promise<IdleResult> {
  const connections = connectionsFor(contender, requested);
  const addresses = extraClientAddresses(Math.ceil(connections / CONNECTIONS_PER_SOURCE_ADDRESS));
  // The client holds one descriptor per connection too: as many processes as its file limit needs.
  const perClient = openFilesHardLimit() - DESCRIPTOR_RESERVE;
  const clientCount = Math.ceil(connections / perClient);
  await prepareClientSide(lab, addresses);
  const server = await contender.start(lab, mode);
  const clients: ChildProcess[] = [];
  try {
    await waitUntilAnswering(lab, server);
    // Let start-up garbage be collected and allocation settle before the baseline.
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const rssBefore = rssBytes(server.pid);
    const slabBefore = slabBytes();
    const startedAt = Date.now();
    for (let i = 0; i < clientCount; i++) {
      const spec = {
        server: lab.serverV4,
        port: SERVICE_PORT,
        sourceAddresses: addresses.filter((_, index) => index % clientCount === i),
        connections: Math.floor(connections / clientCount) + (i < connections % clientCount ? 1 : 0),
        concurrency: Math.ceil(CONNECT_CONCURRENCY / clientCount),
        openTimeoutMs: 90_000,
        maxLifetimeMs: 300_000,
      };
      if (spec.sourceAddresses.length === 0) spec.sourceAddresses = [addresses[i % addresses.length]!];
      clients.push(lab.spawn('client', [process.execPath, IDLE_CLIENT, JSON.stringify(spec)]));
    }
    const holdingLines = await Promise.all(clients.map(async (client) => (await lab.waitForLine(client, /^holding .*/, 120_000))[0]));
    const secondsToOpen = (Date.now() - startedAt) / 1000;
    // A moment for the last ACKs to reach the server and for it to finish whatever they started.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const rssAfter = rssBytes(server.pid);
    const slabAfter = slabBytes();
    const serverKernelSockets = await countEstablishedOnServicePort(lab);
    const total = (name: string): number =>
      holdingLines.reduce((sum, line) => sum + Number(new RegExp(`${name}=(\\d+)`).exec(line)?.[1] ?? NaN), 0);
    // Held when the clients finished opening, a second before memory was read.
    const held = total('established');
    if (rssBefore === null || rssAfter === null) throw new Error(`${server.commandLine} exited during the run`);
    if (!(held > 0)) throw new Error(`no connection was established: ${holdingLines.join(' | ')}`);
    const slabPerConnection = (slabAfter - slabBefore) / held;
    // Stopped while the connections are still held, so its counters cover opening and holding only.
    const serverSummary = await server.stop();
    return {
      contender: contender.name,
      commandLine: server.commandLine,
      status: 'ok',
      requested: connections,
      held,
      failed: total('failed'),
      closedByServer: total('closed'),
      serverKernelSockets,
      secondsToOpen,
      rssBeforeBytes: rssBefore,
      rssAfterBytes: rssAfter,
      rssBytesPerConnection: (rssAfter - rssBefore) / held,
      serverSummary,
      slabBytesPerConnection: slabPerConnection,
      // No kernel socket on the service port (the raw transport): nothing of the slab growth is the server's.
      serverKernelBytesPerConnection:
        serverKernelSockets === 0 ? 0 : rawSlabBytesPerConnection === null ? null : slabPerConnection - rawSlabBytesPerConnection,
    };
  } finally {
    await Promise.allSettled(clients.map((client) => lab.stop(client, 10_000)));
    await server.stop();
  }
}
