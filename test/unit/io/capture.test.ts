/**
 * The capture lanes' BPF filters (io/capture.ts captureLanes), applied by libpcap itself —
 * through `tcpdump -r` — to the committed captures on all three link types: every packet to the
 * server is in exactly one lane, SYNs in the second, the rest of the handshake, the queries and
 * the FINs in the first, and none of the server's own packets in any. RSTs, which the captures
 * lack, are made from the clients' captured ACKs by changing their flags.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { captureLanes } from '../../../src/io/capture.js';
import { CAPTURES, frame, ipPacket, Packet, tcpdumpLines } from '../../support/fixtures.js';
import { frameAround, tooBig } from '../../support/icmp-frames.js';

const SERVER = [
  { address: '198.18.0.2', port: 53 },
  { address: '2001:2::2', port: 53 },
];

/** tcpdump's lines for the packets of `capture` (a fixture's name, or a file) that `filter` selects, as packets.txt has them. */
function selected(capture: string, filter: string): string[] {
  const file = capture.includes('/') ? capture : fileURLToPath(new URL(`../../../../test/fixtures/${capture}.pcap`, import.meta.url));
  const output = execFileSync('tcpdump', ['-n', '-S', '-t', '-r', file, filter], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  // "[ifb0  Out ]IP6 a > b: Flags …, length 54 42392 [1au] AAAA? …" → "a > b: Flags …, length 54"
  return output
    .split('\n')
    .filter(Boolean)
    .map((line) => /IP6? (.*?, length \d+)/.exec(line)![1]!);
}

test('the capture lanes split the packets to the server by SYN and RST, on every link type', () => {
  const lines = tcpdumpLines();
  const toServer = lines.filter((line) => / > (198\.18\.0\.2|2001:2::2)\.53: /.test(line));
  const syns = toServer.filter((line) => line.includes('Flags [S]'));
  assert.deepEqual(syns, [lines[Packet.V4_SYN], lines[Packet.V6_SYN], lines[Packet.BIG_SYN]]);
  const [established, syn, rest] = captureLanes(SERVER, 2048).map((lane) => lane.filter);
  for (const { name } of CAPTURES) {
    assert.deepEqual(selected(name, syn), syns, name);
    assert.deepEqual(
      selected(name, established),
      toServer.filter((line) => !syns.includes(line)),
      name,
    );
    assert.deepEqual(selected(name, rest), [], name);
  }
});

/** A pcap file of Ethernet frames (LINKTYPE_ETHERNET, microseconds, little-endian). */
function pcapFile(frames: Uint8Array[]): Uint8Array {
  const parts: Uint8Array[] = [];
  const header = new DataView(new ArrayBuffer(24));
  header.setUint32(0, 0xa1b2c3d4, true);
  header.setUint16(4, 2, true);
  header.setUint16(6, 4, true);
  header.setUint32(16, 65535, true);
  header.setUint32(20, 1, true);
  parts.push(new Uint8Array(header.buffer));
  for (const bytes of frames) {
    const record = new DataView(new ArrayBuffer(16));
    record.setUint32(8, bytes.length, true);
    record.setUint32(12, bytes.length, true);
    parts.push(new Uint8Array(record.buffer), bytes);
  }
  return Buffer.concat(parts);
}

test('a client RST with ACK (an aborted connection) is in the first lane, one without ACK in the last', () => {
  // The clients' handshake ACKs, IPv4 and IPv6, with the flags byte (Ethernet 14 + IP header + 13) changed.
  const withFlags = (index: number, ipHeaderLength: number, flags: number): Uint8Array => {
    const bytes = frame('ethernet', index);
    bytes[14 + ipHeaderLength + 13] = flags;
    return bytes;
  };
  const RST = 0x04;
  const RST_ACK = 0x14;
  const frames = [
    withFlags(Packet.V4_HANDSHAKE_ACK, 20, RST_ACK),
    withFlags(Packet.V4_HANDSHAKE_ACK, 20, RST),
    withFlags(Packet.V6_HANDSHAKE_ACK, 40, RST_ACK),
    withFlags(Packet.V6_HANDSHAKE_ACK, 40, RST),
  ];
  const dir = mkdtempSync(join(tmpdir(), 'stcp-lanes-'));
  try {
    const file = join(dir, 'resets.pcap');
    writeFileSync(file, pcapFile(frames));
    const [established, syn, rest] = captureLanes(SERVER, 2048).map((lane) => selected(file, lane.filter));
    assert.equal(established!.length, 2);
    assert.ok(
      established!.every((line) => line.includes('Flags [R.]')),
      established!.join('\n'),
    );
    assert.deepEqual(syn, []);
    assert.equal(rest!.length, 2);
    assert.ok(
      rest!.every((line) => line.includes('Flags [R]')),
      rest!.join('\n'),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ICMP too-big messages quoting a segment from a listen endpoint are in the last lane; others in none', () => {
  const v4 = ipPacket(Packet.V4_ANSWER);
  const v6 = ipPacket(Packet.V6_ANSWER);
  const otherPort = (packet: Uint8Array, ipHeaderLength: number): Uint8Array => {
    const copy = Uint8Array.from(packet);
    copy[ipHeaderLength + 1] = 54; // the quoted source port: 54, not 53
    return copy;
  };
  const frames = [
    frameAround(4, tooBig(4, 1280, v4, v4.length)),
    frameAround(6, tooBig(6, 1280, v6, v6.length)),
    frameAround(4, tooBig(4, 1280, otherPort(v4, 20), v4.length)),
    frameAround(6, tooBig(6, 1280, otherPort(v6, 40), v6.length)),
    // The client's own segment quoted: not from the endpoint.
    frameAround(4, tooBig(4, 1280, ipPacket(Packet.V4_QUERY), 28)),
  ];
  const dir = mkdtempSync(join(tmpdir(), 'stcp-lanes-'));
  try {
    const file = join(dir, 'too-big.pcap');
    writeFileSync(file, pcapFile(frames));
    const [established, syn, rest] = captureLanes(SERVER, 2048).map((lane) => selected(file, lane.filter));
    assert.deepEqual(established, []);
    assert.deepEqual(syn, []);
    assert.equal(rest!.length, 2, rest!.join('\n'));
    assert.match(rest![0]!, /^198\.18\.0\.254 > 198\.18\.0\.2: ICMP .*need to frag \(mtu 1280\)/);
    assert.match(rest![1]!, /^2001:2::fe > 2001:2::2: ICMP6, packet too big, mtu 1280/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
