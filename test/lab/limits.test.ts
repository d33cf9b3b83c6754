/**
 * Issue 13: no client can take what the others need. With one shard worker (`--workers 1`), so
 * that the abusive client and the others share a shard, a client that pipelines queries as fast
 * as its kernel lets it and never reads an answer (a 2 KB receive buffer) is held to its
 * per-connection limits: the server stops taking its queries once it owes `--max-pipelined`
 * answers or its send queue is full, and its window closes. Meanwhile other clients get their
 * answers, and the server's memory hardly moves. The same holds for HTTP: a client pipelining
 * requests to a backend that takes 30 s per answer, never reading. And clients that trickle a
 * query a byte a second are cut off at the message deadline, on either transport.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { encodeQuery, framed } from '../../lab/answers.js';
import { createLab, type Lab } from '../../lab/lab.js';
import { startNginx } from '../../lab/nginx.js';
import {
  METRICS_ENDPOINT,
  metricTotal,
  scrapeMetrics,
  startFrontEnd,
  startHttpFrontEnd,
  type RunningFrontEnd,
} from '../../lab/stateless-tcp.js';
import { requireTools } from '../../lab/tools.js';
import { LAB_ZONE } from '../../lab/zone.js';

/** Resident memory of the front end's node process (kB); `ip netns exec` execs it, so the PID is the same. */
const rssKb = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);

/**
 * The abusive client: one connection with a 2 KB receive buffer that writes `message` (hex)
 * over and over for `seconds` (as fast as its kernel takes it) and never reads; prints how many
 * it wrote, then holds the connection open until killed.
 */
const PIPELINER = `
import socket, sys, time
host, port, message, seconds = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
s.connect((host, port))
s.setblocking(False)
burst = message * 512
sent = 0
deadline = time.time() + seconds
while time.time() < deadline:
    try:
        sent += s.send(burst)
    except BlockingIOError:
        time.sleep(0.01)
print('wrote', sent // len(message), 'messages', flush=True)
time.sleep(120)
`;

describe('one client pipelining without reading', () => {
  let lab: Lab;
  let frontEnd: RunningFrontEnd;
  before(async () => {
    requireTools('dig', 'python3');
    lab = await createLab();
    frontEnd = await startFrontEnd(lab, ['--workers', '1', '--metrics', METRICS_ENDPOINT]);
  });
  after(async () => {
    await lab?.close();
  });

  test('is held to its limits: its window closes, others are answered, memory stays flat', async (t) => {
    const pid = frontEnd.process.pid!;
    const warm = await lab.exec('client', ['dig', '+tcp', '+short', `@${lab.serverV4}`, LAB_ZONE.www.name, 'A']);
    assert.equal(warm.stdout.trim(), LAB_ZONE.www.a);
    const rssBefore = rssKb(pid);

    const query = framed(encodeQuery(0x4242, { name: LAB_ZONE.www.name, type: 'A' })).toString('hex');
    const abuser = lab.spawn('client', ['python3', '-c', PIPELINER, lab.serverV4, '53', query, '3']);
    t.after(() => abuser.kill('SIGKILL'));
    const [, wrote] = await lab.waitForLine(abuser, /wrote (\d+) messages/, 15_000);
    t.diagnostic(`the abusive client wrote ${wrote} queries into its socket`);

    // Another client (another address: IPv6) while the abusive connection is held open.
    for (const [server, type, expected] of [
      [lab.serverV6, 'AAAA', LAB_ZONE.www.aaaa],
      [lab.serverV4, 'A', LAB_ZONE.www.a],
    ] as const) {
      const dig = await lab.exec('client', ['dig', '+tcp', '+short', '+tries=1', '+time=2', `@${server}`, LAB_ZONE.www.name, type]);
      assert.equal(dig.stdout.trim(), expected, `dig ${type} while the abusive client holds its connection: ${dig.stdout}${dig.stderr}`);
    }

    // Shards report their metrics every second: wait for a report from after the burst.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const metrics = await scrapeMetrics(lab);
    const queued = metricTotal(metrics, 'stateless_tcp_queued_bytes');
    const queries = metricTotal(metrics, 'stateless_tcp_dns_total{shard="0",counter="queries"}');
    const held = metricTotal(metrics, 'stateless_tcp_events_total{shard="0",event="pipeline_full"}');
    const rssGrowthKb = rssKb(pid) - rssBefore;
    t.diagnostic(`server: ${queries} queries taken, ${queued} bytes queued, pipeline_full ${held}, RSS +${rssGrowthKb} kB`);
    assert.ok(held >= 1, `the abusive connection was held back: ${metrics}`);
    assert.ok(queries < Number(wrote), `the server took ${queries} of the ${wrote} queries written`);
    // At most its send buffer (128 KiB) of answers, the answers to the queries it was handed
    // last (100 owed, under 100 bytes each here), and its receive window (64 KiB) of queries.
    assert.ok(queued <= 128 * 1024 + 100 * 100 + 65_535, `${queued} bytes queued`);
    assert.ok(rssGrowthKb < 16 * 1024, `server RSS grew by ${rssGrowthKb} kB`);
  });
});

describe('one HTTP client pipelining to a slow backend without reading', () => {
  let lab: Lab;
  let frontEnd: RunningFrontEnd;
  before(async () => {
    requireTools('nginx', 'curl', 'python3');
    lab = await createLab({ unbound: false });
    const nginx = await startNginx(lab);
    frontEnd = await startHttpFrontEnd(lab, nginx.origin, ['--workers', '1', '--metrics', METRICS_ENDPOINT, '--timeout', '20000']);
  });
  after(async () => {
    await lab?.close();
  });

  test('is held to --max-pipelined requests: others get 200 meanwhile, memory stays flat', async (t) => {
    const pid = frontEnd.process.pid!;
    const curl = (url: string) => lab.exec('client', ['curl', '-sS', '--max-time', '5', '-o', '/dev/null', '-w', '%{http_code}', url]);
    assert.equal((await curl(`http://${lab.serverV4}/echo-headers`)).stdout, '200');
    const rssBefore = rssKb(pid);

    // /slow answers after 30 s: every request the front end takes stays owed.
    const request = Buffer.from('GET /slow HTTP/1.1\r\nHost: lab\r\n\r\n').toString('hex');
    const abuser = lab.spawn('client', ['python3', '-c', PIPELINER, lab.serverV4, '80', request, '3']);
    t.after(() => abuser.kill('SIGKILL'));
    const [, wrote] = await lab.waitForLine(abuser, /wrote (\d+) messages/, 15_000);
    t.diagnostic(`the abusive client wrote ${wrote} requests into its socket`);

    for (const url of [`http://[${lab.serverV6}]/echo-headers`, `http://${lab.serverV4}/echo-headers`]) {
      const started = Date.now();
      const run = await curl(url);
      assert.equal(run.stdout, '200', `curl ${url} while the abusive client holds its connection: ${run.stderr}`);
      t.diagnostic(`curl ${url}: ${Date.now() - started} ms`);
    }

    await new Promise((resolve) => setTimeout(resolve, 2500));
    const metrics = await scrapeMetrics(lab);
    const requests = metricTotal(metrics, 'stateless_tcp_http_total{shard="0",counter="requests"}');
    const held = metricTotal(metrics, 'stateless_tcp_events_total{shard="0",event="pipeline_full"}');
    const queued = metricTotal(metrics, 'stateless_tcp_queued_bytes');
    const rssGrowthKb = rssKb(pid) - rssBefore;
    t.diagnostic(`server: ${requests} requests taken, ${queued} bytes queued, pipeline_full ${held}, RSS +${rssGrowthKb} kB`);
    assert.ok(held >= 1, `the abusive connection was held back: ${metrics}`);
    // The two curls, the warm-up, and at most --max-pipelined (16) of the abusive connection's.
    assert.ok(requests <= 3 + 16, `the server took ${requests} of the ${wrote} requests written`);
    assert.ok(queued <= 65_535 + 16 * 1024, `${queued} bytes queued`);
    assert.ok(rssGrowthKb < 16 * 1024, `server RSS grew by ${rssGrowthKb} kB`);
  });
});

/**
 * The trickling attacker: `count` connections, each sending the next byte of a framed query for
 * `name` once a second for `seconds`, and looking for a reset every 100 ms. Prints one line per
 * second, then `done live=… reset=… closed=… first=… last=…` (seconds from a connection's first
 * byte to its reset, the earliest and the latest), and holds on until killed.
 */
const TRICKLER = `
import socket, struct, sys, time
host, port, name, count, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
qname = b''.join(bytes([len(label)]) + label.encode() for label in name.rstrip('.').split('.')) + b'\\0'
query = struct.pack('!HHHHHH', 0x4242, 0x0100, 1, 0, 0, 0) + qname + struct.pack('!HH', 1, 1)
framed = struct.pack('!H', len(query)) + query
live = {}
for i in range(count):
    s = socket.create_connection((host, port), timeout=5)
    s.setblocking(False)
    live[s] = None
print('connected', len(live), flush=True)
after = []
closed = 0
start = time.time()
for step in range(seconds * 10):
    if step % 10 == 0:
        for s in list(live):
            try:
                s.send(framed[step // 10:step // 10 + 1])
                if live[s] is None:
                    live[s] = time.time()
            except OSError:
                after.append(time.time() - live[s])
                del live[s]
    for s in list(live):
        try:
            if s.recv(4096) == b'':
                closed += 1
                del live[s]
        except BlockingIOError:
            pass
        except OSError:
            after.append(time.time() - live[s])
            del live[s]
    if step % 10 == 9:
        print('second', step // 10 + 1, 'live', len(live), 'reset', len(after), flush=True)
    time.sleep(max(0, start + (step + 1) / 10 - time.time()))
print('done live=%d reset=%d closed=%d first=%.2f last=%.2f' % (len(live), len(after), closed, min(after, default=-1), max(after, default=-1)), flush=True)
time.sleep(120)
`;

describe('clients trickling queries a byte a second', () => {
  const DEADLINE_MS = 2000;
  const CONNECTIONS = 200;
  let lab: Lab;
  before(async () => {
    requireTools('dig', 'python3', 'curl');
    lab = await createLab();
  });
  after(async () => {
    await lab?.close();
  });

  for (const transport of ['raw', 'kernel'] as const) {
    test(`are cut off at --message-deadline while others are answered (--transport ${transport})`, async (t) => {
      const frontEnd = await startFrontEnd(lab, [
        '--transport',
        transport,
        '--workers',
        '1',
        '--message-deadline',
        String(DEADLINE_MS),
        '--metrics',
        METRICS_ENDPOINT,
      ]);
      t.after(() => frontEnd.stop());
      const pid = frontEnd.process.pid!;
      const warm = await lab.exec('client', ['dig', '+tcp', '+short', `@${lab.serverV4}`, LAB_ZONE.www.name, 'A']);
      assert.equal(warm.stdout.trim(), LAB_ZONE.www.a);
      const rssBefore = rssKb(pid);

      const attacker = lab.spawn('client', ['python3', '-c', TRICKLER, lab.serverV4, '53', LAB_ZONE.www.name, String(CONNECTIONS), '6']);
      t.after(() => attacker.kill('SIGKILL'));
      await lab.waitForLine(attacker, /^connected 200/m, 15_000);
      // While the attacker's connections are all held (before the deadline), from the other
      // address (IPv6) and from its own.
      await lab.waitForLine(attacker, /^second 1 live 200/m, 5_000);
      for (const [server, type] of [
        [lab.serverV6, 'AAAA'],
        [lab.serverV4, 'A'],
      ] as const) {
        const dig = await lab.exec('client', ['dig', '+tcp', '+tries=1', '+time=2', `@${server}`, LAB_ZONE.www.name, type]);
        assert.match(dig.stdout, /status: NOERROR/, `dig ${type} while ${CONNECTIONS} connections trickle: ${dig.stdout}${dig.stderr}`);
      }
      const [done, live, reset, , first, last] = await lab.waitForLine(
        attacker,
        /done live=(\d+) reset=(\d+) closed=(\d+) first=([\d.-]+) last=([\d.-]+)/,
        15_000,
      );
      t.diagnostic(`attacker: ${done}`);
      assert.equal(Number(live), 0, 'no trickling connection outlived the deadline');
      assert.equal(Number(reset), CONNECTIONS, 'each was reset');
      // Reset at the deadline: not before it, and within a tick, the 100 ms the attacker looks
      // every, and what a loaded 2-core machine adds.
      assert.ok(
        Number(first) >= DEADLINE_MS / 1000 - 0.05 && Number(last) < DEADLINE_MS / 1000 + 1.5,
        `reset ${first}-${last} s after the first byte`,
      );

      // Shards report their metrics every second: wait for a report from after the resets.
      await new Promise((resolve) => setTimeout(resolve, 2500));
      const metrics = await scrapeMetrics(lab);
      const missed = metricTotal(metrics, 'stateless_tcp_events_total\\{shard="[^"]*",event="deadlines_missed"\\}');
      const held = metricTotal(metrics, transport === 'raw' ? 'stateless_tcp_flows' : 'stateless_tcp_connections_open');
      const rssGrowthKb = rssKb(pid) - rssBefore;
      t.diagnostic(
        `server: deadlines_missed ${missed}, ${held} ${transport === 'raw' ? 'flows' : 'connections'} held after, RSS +${rssGrowthKb} kB`,
      );
      assert.equal(missed, CONNECTIONS);
      assert.equal(held, 0);
      assert.ok(rssGrowthKb < 16 * 1024, `server RSS grew by ${rssGrowthKb} kB`);
    });
  }
});
