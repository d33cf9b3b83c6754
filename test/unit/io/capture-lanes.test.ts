/**
 * The capture lanes' BPF filters (io/capture.ts captureLanes), applied by libpcap itself —
 * through `tcpdump -r` — to the committed captures on all three link types: every packet to the
 * server is in exactly one lane, SYNs in the second, the rest of the handshake, the queries and
 * the FINs in the first, and none of the server's own packets in any.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { captureLanes } from '../../../src/io/capture.js';
import { CAPTURES, Packet, tcpdumpLines } from '../../support/fixtures.js';

const SERVER = [
  { address: '198.18.0.2', port: 53 },
  { address: '2001:2::2', port: 53 },
];

/** tcpdump's lines for the packets of `capture` that `filter` selects, as packets.txt has them. */
function selected(capture: string, filter: string): string[] {
  const file = fileURLToPath(new URL(`../../../../test/fixtures/${capture}.pcap`, import.meta.url));
  const output = execFileSync('tcpdump', ['-n', '-S', '-t', '-r', file, filter], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  // "[ifb0  Out ]IP6 a > b: Flags …, length 54 42392 [1au] AAAA? …" → "a > b: Flags …, length 54"
  return output.split('\n').filter(Boolean).map((line) => /IP6? (.*?, length \d+)/.exec(line)![1]!);
}

test('the capture lanes split the packets to the server by SYN and RST, on every link type', () => {
  const lines = tcpdumpLines();
  const toServer = lines.filter((line) => / > (198\.18\.0\.2|2001:2::2)\.53: /.test(line));
  const syns = toServer.filter((line) => line.includes('Flags [S]'));
  assert.deepEqual(syns, [lines[Packet.V4_SYN], lines[Packet.V6_SYN], lines[20]]);
  const [established, syn, rest] = captureLanes(SERVER).map((lane) => lane.filter);
  for (const { name } of CAPTURES) {
    assert.deepEqual(selected(name, syn), syns, name);
    assert.deepEqual(selected(name, established), toServer.filter((line) => !syns.includes(line)), name);
    assert.deepEqual(selected(name, rest), [], name);
  }
});
