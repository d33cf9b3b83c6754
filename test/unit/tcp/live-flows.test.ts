/**
 * LiveFlows, what the capture thread knows of the shards' flows: per shard, a count of flows per
 * bucket of flow hashes in shared memory. A SYN whose bucket is empty may be answered at once; a
 * flow keeps its bucket marked until every flow in it is removed; shards do not see each other's
 * counts; views of the same memory (the shard's and the capture thread's) agree; a shard hashes
 * its flows' segments as the capture thread hashes their frames, under the process's routing key.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LIVE_FLOW_BUCKETS, LiveFlows } from '../../../src/tcp/live-flows.js';
import { FlowHash } from '../../../src/wire/flow-hash.js';
import { decodeFrame } from '../../../src/wire/frame.js';
import { ChecksumPolicy, DecodeResult, LinkType, Segment } from '../../../src/wire/segment.js';
import { frame, ipPacket, Packet } from '../../support/fixtures.js';

const ROUTING_KEY = Uint8Array.from({ length: 16 }, (_, i) => 0xc0 + i);
const routing = new FlowHash(ROUTING_KEY);

function segmentOf(index: number): Segment {
  const packet = ipPacket(index);
  const seg = new Segment();
  assert.equal(decodeFrame(LinkType.RAW, packet, 0, packet.length, ChecksumPolicy.VERIFY, seg), DecodeResult.OK);
  return seg;
}

function hashOf(index: number): number {
  return routing.ofSegment(segmentOf(index));
}

describe('LiveFlows', () => {
  it('allocates one bucket array per shard', () => {
    assert.equal(LiveFlows.allocate(3).byteLength, 3 * LIVE_FLOW_BUCKETS * 4);
    const flows = new LiveFlows(LiveFlows.allocate(1), 0, routing);
    assert.equal(flows.total(), 0);
  });

  it('marks the bucket of each flow of the captured connections until it is removed', () => {
    const buffer = LiveFlows.allocate(2);
    const shard = new LiveFlows(buffer, 1, routing);
    const v4 = hashOf(Packet.V4_QUERY);
    const v6 = hashOf(Packet.V6_QUERY);
    assert.notEqual(v4 & (LIVE_FLOW_BUCKETS - 1), v6 & (LIVE_FLOW_BUCKETS - 1), 'the fixtures fall in different buckets');
    assert.equal(shard.mayHold(v4), false);
    shard.add(v4);
    assert.equal(shard.mayHold(v4), true);
    assert.equal(shard.mayHold(hashOf(Packet.V4_SYN)), true, 'every packet of the connection');
    assert.equal(shard.mayHold(hashOf(Packet.V4_ANSWER)), true, 'either direction');
    assert.equal(shard.mayHold(v6), false);
    shard.remove(v4);
    assert.equal(shard.mayHold(v4), false);
    assert.equal(shard.total(), 0);
  });

  it('counts flows sharing a bucket: it stays marked until the last goes', () => {
    const flows = new LiveFlows(LiveFlows.allocate(1), 0, routing);
    const hash = hashOf(Packet.BIG_QUERY);
    const sameBucket = (hash + 5 * LIVE_FLOW_BUCKETS) & 0x7fff_ffff; // another 31-bit hash, same low 16 bits
    flows.add(hash);
    flows.add(sameBucket);
    flows.add(hash);
    assert.equal(flows.total(), 3);
    flows.remove(hash);
    assert.equal(flows.mayHold(hash), true);
    flows.remove(sameBucket);
    assert.equal(flows.mayHold(sameBucket), true, 'a shared bucket only says "maybe"');
    flows.remove(hash);
    assert.equal(flows.mayHold(hash), false);
    assert.equal(flows.mayHold(sameBucket), false);
  });

  it('keeps shards apart and lets another view of the memory see the same counts', () => {
    const buffer = LiveFlows.allocate(4);
    const shards = [0, 1, 2, 3].map((shard) => new LiveFlows(buffer, shard, routing));
    const hash = hashOf(Packet.V6_SYN);
    shards[2]!.add(hash);
    assert.deepEqual(
      shards.map((s) => s.mayHold(hash)),
      [false, false, true, false],
    );
    const captureView = new LiveFlows(buffer, 2, routing); // what the capture thread builds from the same buffer
    assert.equal(captureView.mayHold(hash), true);
    captureView.remove(hash);
    assert.equal(shards[2]!.mayHold(hash), false);
  });

  it('maps every 31-bit hash into a bucket, the highest and 0 included', () => {
    const flows = new LiveFlows(LiveFlows.allocate(1), 0, routing);
    for (const hash of [0, 1, LIVE_FLOW_BUCKETS - 1, LIVE_FLOW_BUCKETS, 0x7fff_ffff]) {
      flows.add(hash);
      assert.equal(flows.mayHold(hash), true, String(hash));
      flows.remove(hash);
      assert.equal(flows.mayHold(hash), false, String(hash));
    }
  });

  it('hashes a shard’s segment as the capture thread hashes its frame, with the same key only', () => {
    const shard = new LiveFlows(LiveFlows.allocate(1), 0, new FlowHash(ROUTING_KEY));
    const otherKey = new LiveFlows(LiveFlows.allocate(1), 0, new FlowHash(ROUTING_KEY.map((byte) => byte ^ 1)));
    for (const index of [Packet.V4_QUERY, Packet.V6_QUERY, Packet.BIG_QUERY]) {
      const captured = frame('ethernet', index);
      const captureThreadHash = routing.ofFrame(LinkType.ETHERNET, captured, 0, captured.length);
      assert.equal(shard.routeHashOf(segmentOf(index)), captureThreadHash, `packet ${index}`);
      assert.notEqual(otherKey.routeHashOf(segmentOf(index)), captureThreadHash, `packet ${index}, another key`);
    }
  });

  it('clears a dead shard’s counts for its successor, leaving other shards alone', () => {
    const buffer = LiveFlows.allocate(2);
    const dead = new LiveFlows(buffer, 0, routing);
    const other = new LiveFlows(buffer, 1, routing);
    for (let i = 0; i < 1000; i++) dead.add(i * 7919);
    other.add(hashOf(Packet.V4_SYN));
    assert.equal(dead.total(), 1000);
    new LiveFlows(buffer, 0, routing).clear();
    assert.equal(dead.total(), 0);
    assert.equal(other.total(), 1);
  });
});
