/**
 * Issue 7: scale-out. Two instances share the cookie secret and one service address,
 * 198.18.0.53, reached over two links; the client's side routes to it with a Linux multipath
 * (ECMP) route. Any instance can answer any packet of a connection, because what proves a
 * segment — the ISN cookie, the timestamp token — is computed from the shared secret.
 *
 *   client ns ── veth 1 (198.18.0.0/24) ──┐ server ns: instance A captures on veth 1
 *             ── veth 2 (198.18.2.0/24) ──┘            instance B captures on veth 2
 *   ip route 198.18.0.53 nexthop via 198.18.0.2 nexthop via 198.18.2.2
 *
 * First with per-flow hashing (fib_multipath_hash_policy=1, the usual ECMP): connections spread
 * over both. Then with every packet of a connection alternating between the two (nftables numgen
 * + fwmark routes: ECMP at its worst, as after a route change): transactions still complete, and
 * a capture on each instance's link shows each connection's packets split between the two.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TcpFlag } from '../../src/wire/segment.js';
import { type CapturedSegment, readSegments, startPcapCapture } from '../support/tcpdump.js';
import { createLab, type Lab } from '../../lab/lab.js';
import { startCli, type RunningFrontEnd, summaryCounter as counter } from '../../lab/stateless-tcp.js';
import { requireTools } from '../../lab/tools.js';
import { LAB_ZONE } from '../../lab/zone.js';

const SERVICE = '198.18.0.53';
const QUERIES = 100;

async function run(lab: Lab, side: 'client' | 'server', command: string): Promise<void> {
  const result = await lab.exec(side, ['sh', '-c', command]);
  assert.equal(result.code, 0, `${command}: ${result.stderr}`);
}

/**
 * The client's packets per connection on each link, from captures of what reached the service
 * address over link 1 and link 2: merged in time order, a connection runs from its SYN to the
 * next new SYN from the same port (dig's random ports can repeat over a hundred connections).
 *
 * RSTs are left out: they are not the connection's own packets but the client's kernel answering,
 * after dig has gone, the instance that sent our FIN and resends it because the client's ACK of
 * it went to the other instance. They come later, among other connections' packets.
 */
function packetsPerConnection(links: readonly [CapturedSegment[], CapturedSegment[]]): Array<[number, number]> {
  const merged = links.flatMap((segments, link) => segments.map((segment) => ({ segment, link })));
  merged.sort((a, b) => a.segment.timeUs - b.segment.timeUs);
  const connections: Array<{ isn: number; packets: [number, number] }> = [];
  const byPort = new Map<number, { isn: number; packets: [number, number] }>();
  for (const { segment, link } of merged) {
    if ((segment.flags & TcpFlag.RST) !== 0) continue;
    let connection = byPort.get(segment.srcPort);
    // A SYN with another sequence number opens a new connection; the same one is a retransmission.
    if ((segment.flags & TcpFlag.SYN) !== 0 && connection?.isn !== segment.seq) {
      connection = { isn: segment.seq, packets: [0, 0] };
      connections.push(connection);
      byPort.set(segment.srcPort, connection);
    }
    // Without a SYN in the capture: a connection of the test before, still closing.
    if (connection === undefined) continue;
    connection.packets[link]!++;
  }
  return connections.map((c) => c.packets);
}

/** `QUERIES` sequential dig +tcp queries to the service address; returns how many were answered. */
async function digs(lab: Lab): Promise<number> {
  const result = await lab.exec(
    'client',
    ['sh', '-c', `for i in $(seq 1 ${QUERIES}); do dig +tcp +tries=1 +time=3 +short @${SERVICE} ${LAB_ZONE.www.name} A; done`],
    { timeoutMs: QUERIES * 4000 },
  );
  return result.stdout.split('\n').filter((line) => line === LAB_ZONE.www.a).length;
}

describe('two instances behind an ECMP route, sharing the cookie secret', () => {
  let lab: Lab;
  let instances: RunningFrontEnd[] = [];

  before(async () => {
    requireTools('dig', 'nft', 'tcpdump');
    lab = await createLab();
    // The second link; its ends live in the lab's namespaces and go with them.
    await run(lab, 'client', `ip link add ecmp-c type veth peer name ecmp-s netns ${lab.serverNamespace}`);
    for (const [side, device, address] of [
      ['client', 'ecmp-c', '198.18.2.1'],
      ['server', 'ecmp-s', '198.18.2.2'],
    ] as const) {
      await run(
        lab,
        side,
        `ethtool -K ${device} tx off rx off >/dev/null && ip addr add ${address}/24 dev ${device} && ip link set ${device} up`,
      );
    }
    await run(lab, 'server', `ip addr add ${SERVICE}/32 dev lo`);
    await run(lab, 'client', 'sysctl -q -w net.ipv4.fib_multipath_hash_policy=1');
    await run(
      lab,
      'client',
      `ip route add ${SERVICE}/32 nexthop via ${lab.serverV4} dev ${lab.clientInterface} nexthop via 198.18.2.2 dev ecmp-c`,
    );

    const secretFile = join(lab.tempDir, 'cookie-secret');
    writeFileSync(secretFile, `${randomBytes(16).toString('hex')}\n`);
    const upstream = `${lab.upstream.v4.address}:${lab.upstream.v4.port}`;
    for (const device of [lab.serverInterface, 'ecmp-s']) {
      instances.push(
        await startCli(lab, [
          'dns',
          '--interface',
          device,
          '--listen',
          `${SERVICE}:53`,
          '--upstream',
          upstream,
          '--cookie-secret-file',
          secretFile,
          '--close-after-response',
        ]),
      );
    }
  });
  after(async () => {
    await lab?.close();
  });

  test(`per-flow ECMP: ${QUERIES} transactions all answered, spread over both instances`, async () => {
    const received = async (): Promise<number[]> => {
      const counts = [];
      for (const device of [lab.serverInterface, 'ecmp-s']) {
        const read = await lab.exec('server', ['cat', `/sys/class/net/${device}/statistics/rx_packets`]);
        counts.push(Number(read.stdout));
      }
      return counts;
    };
    const before = await received();
    assert.equal(await digs(lab), QUERIES);
    const after = await received();
    // About 5 packets per transaction reach the instance its flow hashes to.
    for (let i = 0; i < 2; i++) assert.ok(after[i]! - before[i]! > QUERIES, `link ${i + 1} carried ${after[i]! - before[i]!} packets`);
  });

  test(`every packet alternating between the instances: ${QUERIES} transactions still all answered, no cookie refused`, async (t) => {
    await run(
      lab,
      'client',
      [
        `ip route add ${SERVICE}/32 via ${lab.serverV4} dev ${lab.clientInterface} table 101`,
        `ip route add ${SERVICE}/32 via 198.18.2.2 dev ecmp-c table 102`,
        'ip rule add fwmark 1 table 101',
        'ip rule add fwmark 2 table 102',
      ].join(' && '),
    );
    // A route-type output chain: marking re-routes each packet (nft(8), "route" chains).
    const nft = await lab.exec('client', ['nft', '-f', '-'], {
      input: [
        'table ip spray {',
        '  chain output {',
        '    type route hook output priority mangle; policy accept;',
        `    ip daddr ${SERVICE} meta mark set numgen inc mod 2 offset 1`,
        '  }',
        '}',
        '',
      ].join('\n'),
    });
    assert.equal(nft.code, 0, nft.stderr);
    // What reaches each instance's link from the client, captured beside the instance itself.
    const captureFiles = [join(lab.tempDir, 'link-1.pcap'), join(lab.tempDir, 'link-2.pcap')] as const;
    const captures = [
      await startPcapCapture(lab, 'server', lab.serverInterface, captureFiles[0], `tcp and dst host ${SERVICE} and dst port 53`),
      await startPcapCapture(lab, 'server', 'ecmp-s', captureFiles[1], `tcp and dst host ${SERVICE} and dst port 53`),
    ];
    assert.equal(await digs(lab), QUERIES);
    for (const capture of captures) await capture.stop();
    const perConnection = packetsPerConnection([readSegments(captureFiles[0]), readSegments(captureFiles[1])]);
    t.diagnostic(`client packets per connection on link 1 / link 2: ${perConnection.map(([a, b]) => `${a}/${b}`).join(' ')}`);
    assert.equal(perConnection.length, QUERIES, `${perConnection.length} connections captured for ${QUERIES} digs`);
    // numgen alternates every packet to the service address (the RSTs above included, so a
    // connection's own packets need not split exactly evenly): each connection reached both.
    const onOneInstance = perConnection.filter(([a, b]) => a === 0 || b === 0);
    assert.deepEqual(onOneInstance, [], 'every connection sent packets to both instances');

    const summaries: string[] = [];
    for (const instance of instances) summaries.push(await instance.stop());
    instances = [];
    for (const summary of summaries) t.diagnostic(summary);
    for (const summary of summaries) {
      assert.ok(counter(summary, 'tcp.syn_answered') > QUERIES / 4, `each instance answered handshakes: ${summary}`);
      assert.ok(counter(summary, 'dns.answers') > QUERIES / 4, `each instance answered queries: ${summary}`);
      assert.equal(counter(summary, 'tcp.cookie_failed'), 0, `each instance recognised the other's cookies: ${summary}`);
    }
    // Across both runs, both instances answered handshakes whose next segments went to the other.
    const total = (name: string): number => summaries.reduce((sum, s) => sum + counter(s, name), 0);
    assert.equal(total('dns.answers'), 2 * QUERIES);
  });
});
