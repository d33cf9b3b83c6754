/**
 * TCP that real clients can rely on, shown in the lab: pipelined persistent load with answers of
 * one to four segments through a network that drops, duplicates and reorders in both
 * directions; forged segments that get no data back; dnsperf over persistent connections.
 *
 * The kernel here has no netem (CONFIG_NET_SCH_NETEM is off), so impairment is built from what it
 * has: in each namespace an nftables postrouting chain drops 5 % of TCP packets, duplicates 2 %
 * (`dup to`), and puts 10 % into a slow HTB class (2 Mbit/s) so that they fall behind the others:
 * reordering.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createLab, LAB_ZONE, requireTools, type Lab } from './lab.js';
import { startFrontEnd } from './front-end.js';
import type { LoadResult } from './query-load.js';

const QUERY_LOAD = fileURLToPath(new URL('./query-load.js', import.meta.url));
const FORGE = fileURLToPath(new URL('./forge.js', import.meta.url));

const LOSS_PERCENT = 5;
const DUPLICATE_PERCENT = 2;
const REORDER_PERCENT = 10;

/** Impairs TCP leaving each side's veth (so both directions); returns a reader of the counters. */
async function impair(lab: Lab): Promise<() => Promise<number[]>> {
  const sides = [
    ['client', lab.clientInterface, lab.serverV4, lab.serverV6],
    ['server', lab.serverInterface, lab.clientV4, lab.clientV6],
  ] as const;
  for (const [side, device, peer4, peer6] of sides) {
    // GSO would hand netfilter 64 KB super-packets; impair real, MSS-sized segments.
    await lab.exec(side, ['ethtool', '-K', device, 'gso', 'off', 'tso', 'off']);
    const table = (family: string, peer: string): string => `table ${family} impair {
  chain postrouting {
    type filter hook postrouting priority 0; policy accept;
    oifname "${device}" meta l4proto tcp numgen random mod 100 < ${LOSS_PERCENT} counter drop
    oifname "${device}" meta l4proto tcp numgen random mod 100 < ${DUPLICATE_PERCENT} counter dup to ${peer} device "${device}"
    oifname "${device}" meta l4proto tcp numgen random mod 100 < ${REORDER_PERCENT} counter meta priority set 1:20
  }
}
`;
    const nft = await lab.exec(side, ['nft', '-f', '-'], { input: table('ip', peer4) + table('ip6', peer6) });
    assert.equal(nft.code, 0, nft.stderr);
    for (const command of [
      ['tc', 'qdisc', 'add', 'dev', device, 'root', 'handle', '1:', 'htb', 'default', '10'],
      ['tc', 'class', 'add', 'dev', device, 'parent', '1:', 'classid', '1:10', 'htb', 'rate', '10gbit'],
      ['tc', 'class', 'add', 'dev', device, 'parent', '1:', 'classid', '1:20', 'htb', 'rate', '2mbit'],
    ]) {
      const tc = await lab.exec(side, command);
      assert.equal(tc.code, 0, tc.stderr);
    }
  }
  /** Packets dropped, duplicated and delayed so far, over both sides and families. */
  return async () => {
    const totals = [0, 0, 0];
    for (const [side] of sides) {
      for (const family of ['ip', 'ip6']) {
        const listing = await lab.exec(side, ['nft', 'list', 'table', family, 'impair']);
        [...listing.stdout.matchAll(/counter packets (\d+)/g)].forEach((m, i) => (totals[i]! += Number(m[1])));
      }
    }
    return totals;
  };
}

async function load(lab: Lab, spec: object, timeoutMs: number): Promise<LoadResult> {
  const result = await lab.exec('client', [process.execPath, QUERY_LOAD, JSON.stringify(spec)], { timeoutMs });
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout) as LoadResult;
}

describe('through a network that drops, duplicates and reorders both ways', () => {
  let lab: Lab;
  before(async () => {
    requireTools('tc', 'nft', 'ethtool', 'dig');
    lab = await createLab();
  });
  after(async () => {
    await lab?.close();
  });

  test('hundreds of pipelined queries with 1- to 4-segment answers all complete, correct, with no DNS retry', async (t) => {
    const impaired = await impair(lab);
    const frontEnd = await startFrontEnd(lab);
    const names = [
      [LAB_ZONE.www.name, 'A'],
      [LAB_ZONE.mid.name, 'TXT'],
      [LAB_ZONE.big.name, 'TXT'],
      [LAB_ZONE.missing, 'A'],
    ];
    const spec = { servers: [lab.serverV4, lab.serverV6], connectionsPerServer: 2, queriesPerConnection: 100, inFlight: 8, names, timeoutMs: 60_000 };
    const started = Date.now();
    const result = await load(lab, spec, 90_000);
    t.diagnostic(`400 queries in ${Date.now() - started} ms: ${JSON.stringify(result)}`);
    assert.deepEqual(result.errors, []);
    assert.equal(result.sent, 400, 'each query sent once');
    assert.equal(result.timedOut, 0);
    assert.equal(result.answered, 400);
    assert.equal(result.truncated, 0);
    assert.deepEqual(result.answers[LAB_ZONE.www.name], { count: 100, records: [1] });
    assert.deepEqual(result.answers[LAB_ZONE.mid.name], { count: 100, records: [LAB_ZONE.mid.strings.length] });
    assert.deepEqual(result.answers[LAB_ZONE.big.name], { count: 100, records: [LAB_ZONE.big.strings.length] });
    assert.deepEqual(result.answers[LAB_ZONE.missing], { count: 100, records: [0] });
    assert.equal(result.rcodes.NXDOMAIN, 100);

    // dig over IPv6 for the 4 KB answer, under the same impairment.
    const dig = await lab.exec('client', ['dig', '+tcp', '+tries=1', '+time=20', `@${lab.serverV6}`, LAB_ZONE.big.name, 'TXT'], { timeoutMs: 30_000 });
    assert.match(dig.stdout, new RegExp(`MSG SIZE\\s+rcvd: ${LAB_ZONE.big.responseBytes}$`, 'm'));

    const [dropped, duplicated, delayed] = await impaired();
    t.diagnostic(`impairment: ${dropped} dropped, ${duplicated} duplicated, ${delayed} delayed (reordered)`);
    assert.ok(dropped! > 0 && duplicated! > 0 && delayed! > 0, 'the network really was impaired');
    const summary = await frontEnd.stop();
    t.diagnostic(summary);
    const counter = (name: string): number => Number(new RegExp(`${name}=(\\d+)`).exec(summary)?.[1] ?? 0);
    assert.ok(counter('tcp.retransmit_timeouts') + counter('tcp.fast_retransmits') > 0, 'the server recovered losses');
    assert.equal(counter('tcp.flows'), 0, 'no soft state left');
    assert.equal(counter('tcp.queued_bytes'), 0);
  });
});

describe('segments without a handshake', () => {
  let lab: Lab;
  before(async () => {
    requireTools('tcpdump', 'dig');
    lab = await createLab();
  });
  after(async () => {
    await lab?.close();
  });

  test('a forged data segment gets RST and no data, with or without timestamps, IPv4 and IPv6; the server keeps serving', async () => {
    const frontEnd = await startFrontEnd(lab);
    const tcpdump = lab.spawn('client', ['tcpdump', '-i', lab.clientInterface, '-n', '-l', '--immediate-mode', 'tcp and src port 53']);
    let replies = '';
    tcpdump.stdout?.on('data', (chunk: Buffer) => (replies += chunk.toString()));
    await lab.waitForLine(tcpdump, /listening on/, 5000);
    for (const [client, server] of [[lab.clientV4, lab.serverV4], [lab.clientV6, lab.serverV6]] as const) {
      const forged = await lab.exec('client', [process.execPath, FORGE, client, server]);
      assert.equal(forged.stdout.trim(), '2', forged.stderr);
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
    await lab.stop(tcpdump);
    const lines = replies.trim().split('\n').filter((l) => l.length > 0);
    assert.equal(lines.length, 4, `one reply per forged segment:\n${replies}`);
    for (const line of lines) assert.match(line, /Flags \[R\], seq \d+, win 0, length 0$/, line);

    const dig = await lab.exec('client', ['dig', '+tcp', '+short', `@${lab.serverV4}`, LAB_ZONE.www.name]);
    assert.equal(dig.stdout.trim(), LAB_ZONE.www.a);
    const summary = await frontEnd.stop();
    assert.match(summary, /tcp\.cookie_failed=4/);
    assert.match(summary, /dns\.queries=1 /, 'only the real query reached the relay');
  });
});

describe('dnsperf over persistent connections', () => {
  let lab: Lab;
  before(async () => {
    requireTools('dnsperf');
    lab = await createLab();
  });
  after(async () => {
    await lab?.close();
  });

  test('every query completes', async (t) => {
    const frontEnd = await startFrontEnd(lab);
    const queries = `${lab.tempDir}/queries`;
    writeFileSync(queries, `${LAB_ZONE.www.name} A\n${LAB_ZONE.missing} A\n${LAB_ZONE.mid.name} TXT\n`.repeat(50));
    const run = await lab.exec('client', ['dnsperf', '-m', 'tcp', '-s', lab.serverV4, '-d', queries, '-c', '20', '-q', '100', '-l', '5'], { timeoutMs: 30_000 });
    const stat = (label: string): string => new RegExp(`${label}:\\s+([\\d.]+)`).exec(run.stdout)?.[1] ?? 'missing';
    t.diagnostic(`dnsperf -c 20 -q 100: ${stat('Queries per second')} qps, ${stat('Queries completed')} completed, ${stat('Queries lost')} lost`);
    assert.equal(stat('Queries lost'), '0', run.stdout);
    assert.ok(Number(stat('Queries completed')) > 1000, run.stdout);
    assert.match(await frontEnd.stop(), /tcp\.flows=0 /);
  });
});

describe('IPv6 over a 1280-byte MTU', () => {
  let lab: Lab;
  before(async () => {
    requireTools('tcpdump', 'dig');
    lab = await createLab({ mtu: 1280 });
  });
  after(async () => {
    await lab?.close();
  });

  test('a 4 KB answer arrives whole, in packets of at most 1280 bytes, with no IPv6 fragments', async () => {
    const frontEnd = await startFrontEnd(lab);
    // -e prints the link-layer length of every frame; the IPv6 packet is 14 bytes shorter.
    const tcpdump = lab.spawn('server', ['tcpdump', '-i', lab.serverInterface, '-n', '-l', '-e', '--immediate-mode', 'ip6']);
    let trace = '';
    tcpdump.stdout?.on('data', (chunk: Buffer) => (trace += chunk.toString()));
    await lab.waitForLine(tcpdump, /listening on/, 5000);
    const dig = await lab.exec('client', ['dig', '+tcp', '+tries=1', `@${lab.serverV6}`, LAB_ZONE.big.name, 'TXT']);
    assert.match(dig.stdout, new RegExp(`MSG SIZE\\s+rcvd: ${LAB_ZONE.big.responseBytes}$`, 'm'));
    await new Promise((resolve) => setTimeout(resolve, 300));
    await lab.stop(tcpdump);
    await frontEnd.stop();
    const frames = [...trace.matchAll(/length (\d+): (.*)$/gm)];
    assert.ok(frames.length >= 6, trace);
    assert.doesNotMatch(trace, /frag/i, 'no IPv6 fragment headers');
    const largest = Math.max(...frames.map((m) => Number(m[1]) - 14));
    assert.ok(largest <= 1280, `largest IPv6 packet ${largest} bytes`);
    assert.equal(largest, 1280, 'full-sized segments: 40 + 32 + 1208 bytes');
  });
});
