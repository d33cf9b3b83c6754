/**
 * Opens many TCP connections and holds them idle, for the idle-connection memory scenario. Runs in
 * the lab's client namespace:
 *
 *   node dist/bench/idle-client.js SPEC_JSON
 *
 * SPEC: { server, port, sourceAddresses: string[], connections, concurrency, openTimeoutMs, maxLifetimeMs }
 *
 * Connections are spread round-robin over the source addresses (one address has only ~64k
 * ephemeral ports toward one server port), at most `concurrency` handshakes at a time. Nothing is
 * ever sent. Prints `progress …` lines while opening, then one line
 *   holding established=N failed=M closed=K errors={"ECONNREFUSED":3}
 * and holds until SIGTERM (or maxLifetimeMs), then prints `done closed_by_server=K` and exits.
 * One socket is one file descriptor: `connections` must stay below the process's RLIMIT_NOFILE.
 */
import net from 'node:net';

interface Spec {
  server: string;
  port: number;
  sourceAddresses: string[];
  connections: number;
  concurrency: number;
  openTimeoutMs: number;
  maxLifetimeMs: number;
}

if (process.argv[2] === undefined) {
  console.error('usage: idle-client.js SPEC_JSON');
  process.exit(2);
}
const spec = JSON.parse(process.argv[2]) as Spec;

const sockets: net.Socket[] = [];
let started = 0;
let connecting = 0;
let established = 0;
let failed = 0;
let closedByServer = 0;
let holding = false;
const errors: Record<string, number> = {};
const openDeadline = Date.now() + spec.openTimeoutMs;

function openOne(): void {
  const localAddress = spec.sourceAddresses[started % spec.sourceAddresses.length]!;
  started++;
  connecting++;
  const socket = net.connect({ host: spec.server, port: spec.port, localAddress });
  let open = false;
  socket.on('connect', () => {
    open = true;
    connecting--;
    established++;
    sockets.push(socket);
    pump();
  });
  socket.on('error', (error: NodeJS.ErrnoException) => {
    const code = error.code ?? error.message;
    errors[code] = (errors[code] ?? 0) + 1;
  });
  socket.on('close', () => {
    if (open) {
      // The server (or its idle timeout) closed a connection we hold.
      established--;
      closedByServer++;
    } else {
      connecting--;
      failed++;
      pump();
    }
  });
  // A server that ends its side gets ours ended too (no half-open sockets piling up).
  socket.on('end', () => socket.end());
}

function pump(): void {
  while (connecting < spec.concurrency && started < spec.connections && Date.now() < openDeadline) openOne();
  if (!holding && connecting === 0 && (started === spec.connections || Date.now() >= openDeadline)) startHolding();
}

function report(what: string): void {
  console.log(`${what} established=${established} failed=${failed} closed=${closedByServer} errors=${JSON.stringify(errors)}`);
}

function startHolding(): void {
  holding = true;
  clearInterval(progress);
  report('holding');
}

function finish(): void {
  console.log(`done closed_by_server=${closedByServer}`);
  for (const socket of sockets) socket.destroy();
  process.exit(0);
}

const progress = setInterval(() => {
  report('progress');
  // Handshakes that never complete (a SYN lost for good) must not keep us opening forever.
  if (Date.now() >= openDeadline && !holding) startHolding();
}, 1000);
setTimeout(finish, spec.maxLifetimeMs).unref();
process.on('SIGTERM', finish);
process.on('SIGINT', finish);
// Keeps the process alive while holding even if every socket is closed.
setInterval(() => {}, 60_000);
pump();
