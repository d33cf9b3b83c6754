/**
 * FlowTable: flows found by the 4-tuple of the segments that reach them, from the real captured
 * frames (IPv4 and IPv6) — a flow is found by every client segment of its connection and by no
 * other, even by segments whose hash is the same (the hash is symmetric, so the server's own
 * packets and a client whose port was chosen to collide share the bucket); removal from the head,
 * middle and tail of a chain; iteration that lets the flow just yielded be removed.
 * Flow: the sequence-space arithmetic (in flight, FIN in flight, unsent) across 2^32.
 *
 * The mechanics are tested with the routing hash under a key the test knows as the bucket key (its
 * collisions can be searched for, so chains can be built); the responder keys its table with
 * another secret, and one test shows that clients colliding under the routing hash do not collide
 * there.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SynCookies } from '../../../src/tcp/cookie.js';
import { Flow, FlowTable } from '../../../src/tcp/flow.js';
import { FlowHash } from '../../../src/wire/flow-hash.js';
import { decodeFrame } from '../../../src/wire/frame.js';
import { ChecksumPolicy, DecodeResult, LinkType, Segment } from '../../../src/wire/segment.js';
import { ipPacket, Packet, PACKET_COUNT } from '../../support/fixtures.js';
import { fixIpv4Checksum, fixTcpChecksum } from '../../support/packets.js';

/** The routing hash under a key this test chose: a bucket key whose collisions it can find. */
const routing = new FlowHash(Uint8Array.from({ length: 16 }, (_, i) => 0x70 + i));
const routeHashOf = (seg: Segment): number => routing.ofSegment(seg);

/** A raw IP packet decoded with its checksums verified (the Segment keeps the packet as its buffer). */
function decode(packet: Uint8Array): Segment {
  const seg = new Segment();
  assert.equal(decodeFrame(LinkType.RAW, packet, 0, packet.length, ChecksumPolicy.VERIFY, seg), DecodeResult.OK);
  return seg;
}

function segmentOf(index: number): Segment {
  return decode(ipPacket(index));
}

/** A flow for the connection of client segment `seg`, as the responder makes one (reply = reverse). */
function flowFor(seg: Segment): Flow {
  const flow = new Flow();
  flow.reply.reverseOf(seg);
  return flow;
}

/** Whether packet `index` goes from a client to the server (port 53). */
function toServer(seg: Segment): boolean {
  return seg.dstPort === 53;
}

/**
 * Captured IPv4 packet `index` with the client's port and the last byte of its address changed
 * (on whichever side of the packet the client is), checksums fixed, decoded.
 */
function withClient(index: number, port: number, addressLastByte: number): Segment {
  const packet = ipPacket(index);
  assert.equal(packet[0]! >>> 4, 4);
  const ihl = (packet[0]! & 0x0f) * 4;
  const fromClient = ((packet[ihl + 2]! << 8) | packet[ihl + 3]!) === 53;
  const addressOffset = fromClient ? 12 : 16;
  const portOffset = ihl + (fromClient ? 0 : 2);
  packet[addressOffset + 3] = addressLastByte;
  packet[portOffset] = port >> 8;
  packet[portOffset + 1] = port & 0xff;
  fixIpv4Checksum(packet, 0);
  fixTcpChecksum(packet, 0, ihl, packet.length);
  return decode(packet);
}

/**
 * Two client endpoints (port, last address byte) of 198.18.0.x whose connections to the server's
 * 198.18.0.2:53 hash alike: a birthday search over 4 × 65,535 endpoints, deterministic. The
 * addresses .3 to .6 are neither the captured client (.1) nor the server (.2).
 */
function collidingClients(): [{ port: number; last: number }, { port: number; last: number }] {
  const seg = segmentOf(Packet.V4_SYN);
  const seen = new Map<number, { port: number; last: number }>();
  const lastOffset = seg.srcAddrOffset + 3;
  const original = seg.buf[lastOffset]!;
  try {
    for (let last = 3; last <= 6; last++) {
      seg.buf[lastOffset] = last;
      for (let port = 1; port <= 65535; port++) {
        seg.srcPort = port;
        const hash = routeHashOf(seg);
        const earlier = seen.get(hash);
        if (earlier !== undefined) return [earlier, { port, last }];
        seen.set(hash, { port, last });
      }
    }
  } finally {
    seg.buf[lastOffset] = original;
  }
  assert.fail('no two of 262,140 client endpoints hash alike');
}

describe('FlowTable', () => {
  it('finds a flow by every client segment of its connection, IPv4 and IPv6, and by nothing else', () => {
    const table = new FlowTable(routeHashOf);
    const v4 = flowFor(segmentOf(Packet.V4_SYN));
    const v6 = flowFor(segmentOf(Packet.V6_SYN));
    assert.equal(table.find(segmentOf(Packet.V4_SYN)), null);
    table.add(v4, segmentOf(Packet.V4_SYN));
    table.add(v6, segmentOf(Packet.V6_SYN));
    assert.equal(table.size, 2);
    assert.equal(v4.hash, routeHashOf(segmentOf(Packet.V4_SYN)));
    assert.equal(v6.hash, routeHashOf(segmentOf(Packet.V6_SYN)));

    for (let index = 0; index < PACKET_COUNT; index++) {
      const seg = segmentOf(index);
      const found = table.find(seg);
      if (!toServer(seg) || index >= Packet.BIG_SYN) {
        // The server's own packets (same hash, other direction) and the third connection (other port).
        assert.equal(found, null, `packet ${index}`);
      } else {
        assert.equal(found, seg.family === 4 ? v4 : v6, `packet ${index}`);
      }
    }
  });

  it('samples every flow it holds, and a walk may remove the flow it is at (the dense list behind both)', () => {
    const table = new FlowTable(routeHashOf);
    const flows: Flow[] = [];
    for (let port = 20000; port < 20010; port++) {
      const seg = withClient(Packet.V4_QUERY, port, 1);
      const flow = flowFor(seg);
      table.add(flow, seg);
      flows.push(flow);
    }
    const sampled = new Set<Flow>();
    for (let i = 0; i < 10; i++) sampled.add(table.sample(i)!);
    assert.equal(sampled.size, 10, 'sample(0 … n−1) picks each flow once');
    let walked = 0;
    for (const flow of table) {
      walked++;
      if (flows.indexOf(flow) % 2 === 0) table.remove(flow);
    }
    assert.equal(walked, 10);
    assert.equal(table.size, 5);
    assert.deepEqual(new Set(table), new Set(flows.filter((_, i) => i % 2 === 1)));
    for (const flow of flows.filter((_, i) => i % 2 === 1)) table.remove(flow);
    assert.equal(table.sample(7), null);
  });

  it('tells apart the two directions of one connection, which share a bucket', () => {
    const table = new FlowTable(routeHashOf);
    const clientSide = segmentOf(Packet.V4_QUERY);
    const serverSide = segmentOf(Packet.V4_ANSWER);
    assert.equal(routeHashOf(clientSide), routeHashOf(serverSide), 'the hash is symmetric');
    const ours = flowFor(clientSide);
    const mirrored = flowFor(serverSide);
    table.add(ours, clientSide);
    table.add(mirrored, serverSide);
    assert.equal(ours.hash, mirrored.hash);
    assert.equal(mirrored.nextInBucket, ours, 'chained in one bucket');
    assert.equal(table.find(segmentOf(Packet.V4_CLIENT_FIN)), ours);
    assert.equal(table.find(segmentOf(Packet.V4_SERVER_FIN)), mirrored);
    assert.equal(table.find(segmentOf(Packet.V6_QUERY)), null);
  });

  it('keyed as the responder keys it (SynCookies.tableKey), connections that collide under the routing hash get buckets of their own', () => {
    const [a, b] = collidingClients();
    const segments = [withClient(Packet.V4_QUERY, a.port, a.last), withClient(Packet.V4_QUERY, b.port, b.last)];
    assert.equal(routeHashOf(segments[0]!), routeHashOf(segments[1]!), 'the clients collide under the routing hash');
    const cookies = new SynCookies(Uint8Array.from({ length: 16 }, (_, i) => 0x30 + i));
    const id = new Uint32Array(2);
    const table = new FlowTable((seg) => {
      cookies.connectionId(seg, id);
      return SynCookies.tableKey(id);
    });
    const flows = segments.map(flowFor);
    for (const [i, flow] of flows.entries()) table.add(flow, segments[i]!);
    assert.notEqual(flows[0]!.hash, flows[1]!.hash);
    assert.equal(flows[0]!.nextInBucket, null);
    assert.equal(flows[1]!.nextInBucket, null);
    assert.equal(table.find(withClient(Packet.V4_CLIENT_FIN, a.port, a.last)), flows[0]);
    assert.equal(table.find(withClient(Packet.V4_CLIENT_FIN, b.port, b.last)), flows[1]);
    for (const flow of flows) assert.ok(Number.isInteger(flow.hash) && flow.hash >= 0 && flow.hash < 2 ** 31, 'a small integer key');
  });

  it('chains connections whose hashes collide and removes from the middle, tail and head', () => {
    const [a, b] = collidingClients();
    // Four flows in one bucket: two clients that collide, each in both directions.
    const segments = [
      withClient(Packet.V4_QUERY, a.port, a.last),
      withClient(Packet.V4_ANSWER, a.port, a.last),
      withClient(Packet.V4_QUERY, b.port, b.last),
      withClient(Packet.V4_ANSWER, b.port, b.last),
    ];
    const hash = routeHashOf(segments[0]!);
    for (const seg of segments) assert.equal(routeHashOf(seg), hash);

    const table = new FlowTable(routeHashOf);
    const flows = segments.map(flowFor);
    for (const [i, flow] of flows.entries()) table.add(flow, segments[i]!);
    assert.equal(table.size, 4);
    // Each added flow becomes the head: the chain is 3 → 2 → 1 → 0.
    assert.equal(flows[3]!.nextInBucket, flows[2]);
    assert.equal(flows[2]!.nextInBucket, flows[1]);
    assert.equal(flows[1]!.nextInBucket, flows[0]);
    assert.equal(flows[0]!.nextInBucket, null);

    const expectFound = (present: number[]): void => {
      for (let i = 0; i < 4; i++) {
        const reply = present.includes(i) ? flows[i] : null;
        // A fresh decoding of the same packet: found by the tuple, not by object identity.
        const again = withClient(
          i % 2 === 0 ? Packet.V4_CLIENT_FIN : Packet.V4_SERVER_FIN,
          i < 2 ? a.port : b.port,
          i < 2 ? a.last : b.last,
        );
        assert.equal(table.find(again), reply, `flow ${i} with ${present} in the table`);
      }
      assert.equal(table.size, present.length);
      assert.deepEqual(new Set(table), new Set(present.map((i) => flows[i]!)));
    };
    expectFound([0, 1, 2, 3]);
    table.remove(flows[2]!); // middle
    assert.equal(flows[2]!.nextInBucket, null);
    expectFound([0, 1, 3]);
    table.remove(flows[0]!); // tail
    expectFound([1, 3]);
    table.remove(flows[3]!); // head
    expectFound([1]);
    table.remove(flows[1]!); // the last one: the bucket goes
    expectFound([]);
    assert.deepEqual([...table], []);
  });

  it('ignores the removal of a flow that is not in the table', () => {
    const table = new FlowTable(routeHashOf);
    const v4 = segmentOf(Packet.V4_QUERY);
    const flow = flowFor(v4);
    table.add(flow, v4);
    const mirrored = flowFor(segmentOf(Packet.V4_ANSWER));
    mirrored.hash = flow.hash; // same bucket, never added
    table.remove(mirrored);
    const stranger = flowFor(segmentOf(Packet.V6_QUERY));
    stranger.hash = routeHashOf(segmentOf(Packet.V6_QUERY)); // a bucket that does not exist
    table.remove(stranger);
    assert.equal(table.size, 1);
    assert.equal(table.find(v4), flow);
    table.remove(flow);
    table.remove(flow); // twice
    assert.equal(table.size, 0);
    assert.equal(table.find(v4), null);
  });

  it('iterates over every flow once, letting each be removed as it is yielded', () => {
    const [a, b] = collidingClients();
    const segments = [
      segmentOf(Packet.V4_QUERY),
      segmentOf(Packet.V4_ANSWER),
      segmentOf(Packet.V6_QUERY),
      segmentOf(Packet.BIG_QUERY),
      withClient(Packet.V4_QUERY, a.port, a.last),
      withClient(Packet.V4_ANSWER, a.port, a.last),
      withClient(Packet.V4_QUERY, b.port, b.last),
    ];
    for (const removeEvery of [1, 2, 3]) {
      const table = new FlowTable(routeHashOf);
      const flows = segments.map(flowFor);
      for (const [i, flow] of flows.entries()) table.add(flow, segments[i]!);
      const yielded: Flow[] = [];
      const removed: Flow[] = [];
      for (const flow of table) {
        if (yielded.length % removeEvery === 0) {
          table.remove(flow);
          removed.push(flow);
        }
        yielded.push(flow);
        assert.ok(yielded.length <= flows.length, 'iteration does not end');
      }
      assert.equal(yielded.length, flows.length, `removing every ${removeEvery}`);
      assert.deepEqual(new Set(yielded), new Set(flows));
      const left = flows.filter((flow) => !removed.includes(flow));
      assert.equal(table.size, left.length);
      assert.deepEqual(new Set(table), new Set(left));
      for (let i = 0; i < flows.length; i++) assert.equal(table.find(segments[i]!), left.includes(flows[i]!) ? flows[i] : null);
    }
  });
});

describe('Flow sequence-space arithmetic', () => {
  const WRAP = 2 ** 32;

  function flowWithQueue(bytes: number): Flow {
    const flow = new Flow();
    flow.sendQueue.append(new Uint8Array(bytes), 0, bytes);
    return flow;
  }

  it('counts bytes in flight across 2^32', () => {
    const flow = flowWithQueue(100);
    flow.sndUna = WRAP - 40;
    flow.sndNxt = 20; // 60 bytes sent, 40 of them before the wrap
    assert.equal(flow.inFlight, 60);
    assert.equal(flow.finInFlight, false);
    assert.equal(flow.unsent, 40);
    flow.sndNxt = flow.sndUna;
    assert.equal(flow.inFlight, 0);
    assert.equal(flow.unsent, 100);
  });

  it('counts our FIN in flight as one sequence number but no byte, across 2^32', () => {
    for (const sndUna of [WRAP - 100, WRAP - 101, WRAP - 1, 0, 12345]) {
      const flow = flowWithQueue(100);
      flow.sndUna = sndUna;
      flow.finSeq = (sndUna + 100) >>> 0;
      flow.sndNxt = (sndUna + 101) >>> 0;
      flow.finSent = true;
      assert.equal(flow.inFlight, 101, `SND.UNA ${sndUna}`);
      assert.equal(flow.finInFlight, true, `SND.UNA ${sndUna}`);
      assert.equal(flow.unsent, 0, `SND.UNA ${sndUna}`);

      // The client acknowledges the bytes but not the FIN.
      flow.sendQueue.consume(100);
      flow.sndUna = flow.finSeq;
      assert.equal(flow.inFlight, 1);
      assert.equal(flow.finInFlight, true);
      assert.equal(flow.unsent, 0);

      // … and then the FIN.
      flow.sndUna = flow.sndNxt;
      assert.equal(flow.inFlight, 0);
      assert.equal(flow.finInFlight, false, `SND.UNA ${sndUna}: FIN acknowledged`);
      assert.equal(flow.unsent, 0);
    }
  });

  it('does not count a FIN as in flight before it is sent', () => {
    const flow = flowWithQueue(10);
    flow.sndUna = WRAP - 5;
    flow.sndNxt = 5;
    flow.finSeq = 5;
    flow.finSent = false;
    assert.equal(flow.finInFlight, false);
    assert.equal(flow.unsent, 0);
  });
});
