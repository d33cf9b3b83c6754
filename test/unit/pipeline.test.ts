/**
 * TcpPipeline reading frames in place in a ring slot, as a shard worker does: real captured SYNs
 * (test/fixtures) pushed through a real ring, drained into `handleFrame(ringBytes, slotOffset, …)`,
 * and the SYN+ACKs it sends checked field by field with their checksums.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TcpPipeline, type PacketSender } from '../../src/pipeline.js';
import { DnsRelay } from '../../src/dns/relay.js';
import { DNS_PROTOCOL } from '../../src/dns/application.js';
import type { Flow } from '../../src/tcp/flow.js';
import { SynCookies } from '../../src/tcp/cookie.js';
import { DEFAULT_RESPONDER_CONFIG } from '../../src/tcp/responder.js';
import { createRing, RingConsumer, RingProducer } from '../../src/ring/ring.js';
import { decodeFrame } from '../../src/wire/frame.js';
import { ChecksumPolicy, DecodeResult, KernelChecksum, LinkType, Segment, TcpFlag } from '../../src/wire/segment.js';
import { ackNum, checkPacket, dstPort, flags, ipv4, ipv6, srcPort, tcp } from '../support/checkers.js';
import { frame, Packet } from '../support/fixtures.js';

const NOW_MS = 1_764_000_000_000;

interface SentPacket {
  family: 4 | 6;
  packet: Uint8Array;
}

/** A DNS pipeline on Ethernet that verifies checksums and keeps what it sends in `sent`. */
function dnsPipeline(sent: SentPacket[]): TcpPipeline {
  const sender: PacketSender = {
    // A copy: the pipeline reuses its packet buffer for the next send.
    send: (family, packet, length) => sent.push({ family, packet: Uint8Array.from(packet.subarray(0, length)) }),
  };
  const relay = new DnsRelay<Flow>({
    timeoutMs: 1000,
    upstream: {
      sendDatagram: () => assert.fail('no query was sent'),
      resendDatagram: () => assert.fail('no query was sent'),
      queryDone: () => assert.fail('no query was sent'),
      queryOverTcp: () => assert.fail('no query was sent'),
      close: () => {},
    },
    fillRandom: (bytes) => bytes.fill(1),
    now: () => NOW_MS,
  });
  return new TcpPipeline(
    {
      linkType: LinkType.ETHERNET,
      checksumPolicy: ChecksumPolicy.VERIFY,
      cookies: new SynCookies(new Uint8Array(16).fill(9)),
      tcp: DEFAULT_RESPONDER_CONFIG,
      sender,
    },
    DNS_PROTOCOL,
    relay,
  );
}

test('handleFrame decodes and answers frames in place at their ring slot offsets', () => {
  const sent: SentPacket[] = [];
  const pipeline = dnsPipeline(sent);
  const region = createRing({ slotCount: 4, slotDataBytes: 2048 });
  const producer = new RingProducer(region);
  const consumer = new RingConsumer(region);
  const syns = [frame('ethernet', Packet.V4_SYN), frame('ethernet', Packet.V6_SYN)];
  for (const syn of syns) assert.ok(producer.push(syn, 0, syn.length, syn.length, 0, 0));

  const offsets: number[] = [];
  const drained = consumer.drain((bytes, offset, capturedLength) => {
    offsets.push(offset);
    pipeline.handleFrame(bytes, offset, capturedLength, KernelChecksum.UNKNOWN, NOW_MS);
  }, 4);

  assert.equal(drained, 2);
  assert.ok(
    offsets.every((offset) => offset > 0),
    `slots are past the ring header: ${offsets.join(', ')}`,
  );
  assert.equal(pipeline.decodeCounts[DecodeResult.OK], 2);
  assert.equal(sent.length, 2);
  syns.forEach((syn, i) => {
    const seg = new Segment();
    assert.equal(decodeFrame(LinkType.ETHERNET, syn, 0, syn.length, ChecksumPolicy.VERIFY, seg), DecodeResult.OK);
    assert.equal(sent[i]!.family, seg.family);
    checkPacket(
      sent[i]!.packet,
      seg.family === 4 ? ipv4() : ipv6(),
      tcp(flags(TcpFlag.SYN | TcpFlag.ACK), ackNum((seg.seq + 1) >>> 0), srcPort(seg.dstPort), dstPort(seg.srcPort)),
    );
  });
});

test("the kernel's checksum state rides the ring: a TCP checksum it vouched for is not summed again, the IPv4 header's still is", () => {
  const sent: SentPacket[] = [];
  const pipeline = dnsPipeline(sent);
  const region = createRing({ slotCount: 8, slotDataBytes: 2048 });
  const producer = new RingProducer(region);
  const consumer = new RingConsumer(region);
  // The captured IPv4 SYN with its TCP checksum field changed: wrong as a checksum and not the
  // pseudo-header sum either, so only the kernel's word can make it acceptable.
  const damaged = frame('ethernet', Packet.V4_SYN);
  const tcpChecksum = 14 + 20 + 16;
  damaged[tcpChecksum] = damaged[tcpChecksum]! ^ 0x5a;
  // And one whose IPv4 header checksum is wrong as well: no kernel word covers that one.
  const badHeader = Uint8Array.from(damaged);
  badHeader[14 + 10] = badHeader[14 + 10]! ^ 0x5a;
  const states = [KernelChecksum.UNKNOWN, KernelChecksum.VALIDATED, KernelChecksum.LEFT_TO_OFFLOAD, KernelChecksum.VALIDATED];
  const frames = [damaged, damaged, damaged, badHeader];
  for (const [i, bytes] of frames.entries()) assert.ok(producer.push(bytes, 0, bytes.length, bytes.length, 0, 0, states[i]));
  const seen: number[] = [];
  consumer.drain((bytes, offset, capturedLength, _wire, _seconds, _micros, kernelChecksum) => {
    seen.push(kernelChecksum);
    pipeline.handleFrame(bytes, offset, capturedLength, kernelChecksum as KernelChecksum, NOW_MS);
  }, 8);
  assert.deepEqual(seen, states);
  assert.equal(pipeline.decodeCounts[DecodeResult.BAD_TCP_CHECKSUM], 1);
  assert.equal(pipeline.decodeCounts[DecodeResult.BAD_IP_CHECKSUM], 1);
  assert.equal(pipeline.decodeCounts[DecodeResult.OK], 2);
  assert.equal(pipeline.checksumValidated, 1);
  assert.equal(pipeline.checksumOffloaded, 1);
  assert.equal(sent.length, 2, 'both vouched-for SYNs answered');
});
