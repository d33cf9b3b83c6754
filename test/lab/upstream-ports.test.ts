/**
 * Upstream source ports (RFC 5452 §9.2) with real unbound, dnsperf and tcpdump: a resolver in a
 * namespace of its own (another host, as far as the front end can tell) gets each worker's queries
 * from a pool of ports, each replaced after its share of queries; a resolver on the server's
 * loopback gets them from one port per worker, kept.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dnsperf } from '../../lab/dnsperf.js';
import { createLab, type Lab, type Side } from '../../lab/lab.js';
import { startFrontEnd, summaryCounter } from '../../lab/stateless-tcp.js';
import { requireTools } from '../../lab/tools.js';
import { LAB_ZONE } from '../../lab/zone.js';

/** tcpdump printing one line per UDP query to the resolver on `device`, as it sees them. */
async function watchQueries(lab: Lab, side: Side, device: string): Promise<{ process: ChildProcess; lines: () => string[] }> {
  const { address, port } = lab.upstream.v4;
  const tcpdump = lab.spawn(side, [
    'tcpdump',
    '-l',
    '-n',
    '--immediate-mode',
    '-i',
    device,
    `udp and dst host ${address} and dst port ${port}`,
  ]);
  let output = '';
  tcpdump.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  await lab.waitForLine(tcpdump, /listening on/, 5_000);
  return { process: tcpdump, lines: () => output.split('\n').filter((line) => line.includes(' > ')) };
}

/** Queries per source port, from tcpdump lines `… IP 198.18.1.2.41234 > 198.18.1.1.5300: …`. */
function queriesPerSourcePort(lines: readonly string[]): Map<number, number> {
  const perPort = new Map<number, number>();
  for (const line of lines) {
    const port = Number(/ IP \S+\.(\d+) > /.exec(line)?.[1]);
    assert.ok(Number.isInteger(port), `a query line: ${line}`);
    perPort.set(port, (perPort.get(port) ?? 0) + 1);
  }
  return perPort;
}

/** UDP sockets in the server namespace connected to the resolver. */
async function socketsToResolver(lab: Lab): Promise<number> {
  const { address, port } = lab.upstream.v4;
  const ss = await lab.exec('server', ['ss', '-Hun', 'dst', `${address}:${port}`]);
  assert.equal(ss.code, 0, ss.stderr);
  return ss.stdout.split('\n').filter((line) => line.trim() !== '').length;
}

/** dnsperf from the client namespace at a bounded rate: many batches of one or a few queries each. */
const LOAD = ['-c', '4', '-Q', '400', '-l', '3'];

describe('upstream source ports, resolver in a namespace of its own', () => {
  let lab: Lab;
  let queryFile: string;

  before(async () => {
    requireTools('dnsperf', 'tcpdump', 'ss');
    lab = await createLab({ remoteResolver: true });
    queryFile = `${lab.tempDir}/queries`;
    writeFileSync(queryFile, `${LAB_ZONE.www.name} A\n${LAB_ZONE.www.name} AAAA\n`);
  });
  after(async () => {
    await lab?.close();
  });

  test('queries leave from many source ports: eight at a time per worker, each replaced after its 25 queries', async () => {
    const frontEnd = await startFrontEnd(lab, ['--workers', '1', '--upstream-ports', '8', '--upstream-port-queries', '25']);
    const queries = await watchQueries(lab, 'resolver', lab.resolverInterface!);
    const result = await dnsperf(lab, queryFile, LOAD);
    // Every query is answered, so every replaced socket has drained and closed.
    const open = await socketsToResolver(lab);
    await lab.stop(queries.process);
    const summary = await frontEnd.stop();

    assert.equal(result.completedPercent, 100, result.output);
    assert.deepEqual(result.responseCodes, { NOERROR: result.completed });
    assert.equal(open, 8, 'eight sockets open once the load is over');
    const perPort = queriesPerSourcePort(queries.lines());
    const seen = [...perPort.values()].reduce((a, b) => a + b, 0);
    const rebinds = summaryCounter(summary, 'dns.port_rebinds');
    const postponed = summaryCounter(summary, 'dns.port_rebinds_postponed');
    assert.ok(seen >= result.completed, `the resolver saw every query (${seen} of ${result.completed})`);
    // About 1,200 queries at 25 a port: some 40 re-binds (each a new port, unless the kernel
    // happens to hand out one given up earlier).
    assert.ok(rebinds >= 16, `replaced as due: ${rebinds} re-binds for ${result.completed} queries`);
    assert.ok(perPort.size >= 8 + rebinds / 2, `${perPort.size} source ports for ${rebinds} re-binds`);
    // Each socket sends 25 queries and is replaced at its 26th; the eight last ones at most 25.
    // (Counted, not read off the ports: the kernel may hand a later socket a port an earlier one
    // gave up — with some 50 ports out of 28,232, in about one run in twenty.)
    const relayed = summaryCounter(summary, 'dns.queries');
    if (postponed === 0) {
      assert.ok(25 * rebinds <= relayed && relayed <= 25 * (rebinds + 8), `${relayed} queries from ${rebinds + 8} sockets of 25`);
    }
    assert.equal(summaryCounter(summary, 'dns.answers_wrong_port'), 0);
  });
});

describe('upstream source ports, resolver on the server loopback', () => {
  let lab: Lab;
  let queryFile: string;

  before(async () => {
    requireTools('dnsperf', 'tcpdump', 'ss');
    lab = await createLab();
    queryFile = `${lab.tempDir}/queries`;
    writeFileSync(queryFile, `${LAB_ZONE.www.name} A\n`);
  });
  after(async () => {
    await lab?.close();
  });

  test('the worker sends from one port that it keeps, whatever the port options say', async () => {
    const frontEnd = await startFrontEnd(lab, ['--workers', '1', '--upstream-ports', '8', '--upstream-port-queries', '25']);
    const queries = await watchQueries(lab, 'server', 'lo');
    const result = await dnsperf(lab, queryFile, LOAD);
    const open = await socketsToResolver(lab);
    await lab.stop(queries.process);
    const summary = await frontEnd.stop();

    assert.equal(result.completedPercent, 100, result.output);
    assert.equal(open, 1, 'one socket');
    const perPort = queriesPerSourcePort(queries.lines());
    assert.equal(perPort.size, 1, `one source port: ${[...perPort.keys()]}`);
    assert.equal(summaryCounter(summary, 'dns.port_rebinds'), 0);
  });
});
