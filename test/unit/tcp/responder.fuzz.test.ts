/**
 * The responder under a storm of odd segments: a few clients that really connected and send
 * queries split at random points, mixed with segments whose flags, sequence and acknowledgment
 * numbers, timestamps and payloads are random or replayed, with the clock moving forward in
 * random steps. Deterministic (seeded). The invariants:
 *   - nothing throws;
 *   - nothing we send carries data to a connection that never completed a handshake;
 *   - every emitted packet is well formed (checksums verify);
 *   - soft state stays within its bounds and drains to nothing once the clients go quiet, and
 *     the flows published for the capture thread (tcp/live-flows.ts) always match it;
 *   - every flow's timer is set no later than its earliest deadline, so no timer is missed
 *     although a tick looks only at the flows whose timers came due.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dnsPacket from 'dns-packet';
import { DEFAULT_RESPONDER_CONFIG, Responder } from '../../../src/tcp/responder.js';
import { TcpEvent } from '../../../src/tcp/counters.js';
import { SynCookies } from '../../../src/tcp/cookie.js';
import { LiveFlows } from '../../../src/tcp/live-flows.js';
import { FlowHash } from '../../../src/wire/flow-hash.js';
import { dnsMessageLength, plausibleQueryStart } from '../../../src/dns/message.js';
import { decodeFrame } from '../../../src/wire/frame.js';
import { emitReply, replyLength } from '../../../src/wire/emit.js';
import { ChecksumPolicy, DecodeResult, LinkType, ReplyHeader, Segment, TcpFlag } from '../../../src/wire/segment.js';
import { Prng } from '../../support/prng.js';

test('thousands of random, replayed and forged segments: no exception, no data to strangers, state drains', () => {
  const rng = new Prng(20261125);
  const random = (n: number): number => (n >= 2 ** 32 ? rng.nextU32() : rng.below(n));
  const cookies = new SynCookies(Uint8Array.from({ length: 16 }, (_, i) => 3 * i + 1));
  /** Client ports that completed a handshake, and what we sent to whom. */
  const connected = new Set<number>();
  const packets: Uint8Array[] = [];
  const config = { ...DEFAULT_RESPONDER_CONFIG, maxFlows: 64, messageLength: dnsMessageLength, plausibleStart: plausibleQueryStart };
  let nowMs = 1_764_000_000_000;
  let pushWanted = false;
  const liveFlows = new LiveFlows(LiveFlows.allocate(1), 0, new FlowHash(Uint8Array.from({ length: 16 }, (_, i) => 5 * i + 2)));
  const responder = new Responder(
    config,
    cookies,
    {
      send: (h, data, offset, length) => {
        if (length > 0) assert.ok(connected.has(h.dstPort), `data sent to port ${h.dstPort}, which never connected`);
        const out = new Uint8Array(replyLength(h, length));
        assert.equal(emitReply(h, data, offset, length, out, 0), out.length);
        packets.push(out);
      },
      // Pushed at random later steps (below), so segments and ticks also meet answers not yet sent.
      pushWanted: () => {
        pushWanted = true;
      },
    },
    {
      onMessages: (flow, buf, offset, length) => {
        for (let p = offset; p < offset + length; ) {
          messages++;
          const n = (buf[p]! << 8) | buf[p + 1]!;
          responder.expectAnswer(flow);
          const answer = Buffer.alloc(2 + 40 + random(3000), 0x61);
          answer.writeUInt16BE(answer.length - 2, 0);
          // Some answers now, some later, some never within the run (the flow keeps them owed).
          if (random(3) > 0) responder.answer(flow, answer, 0, answer.length);
          else pendingAnswers.push({ flow, answer });
          p += 2 + n;
        }
      },
    },
    liveFlows,
  );
  let messages = 0;
  const pendingAnswers: { flow: Parameters<Responder['answer']>[0]; answer: Buffer }[] = [];

  const client = new ReplyHeader();
  client.family = 4;
  client.srcAddr.set([198, 18, 0, 1]);
  client.dstAddr.set([198, 18, 0, 2]);
  client.dstPort = 53;
  const seg = new Segment();
  const packet = new Uint8Array(8192);
  const play = (): void => {
    const n = emitReply(client, payload, 0, payload.length, packet, 0);
    assert.equal(decodeFrame(LinkType.RAW, packet, 0, n, ChecksumPolicy.VERIFY, seg), DecodeResult.OK);
    responder.handleSegment(seg, nowMs);
  };
  let payload: Uint8Array = new Uint8Array(0);
  const query = dnsPacket.encode({
    type: 'query',
    id: 7,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: 'A', name: 'www.lab.test' }],
  });
  const framed = Buffer.concat([Buffer.from([0, query.length]), query]);

  // Real clients: port → their sequence state.
  const clients = new Map<number, { seq: number; ack: number; token: number }>();
  for (let step = 0; step < 20_000; step++) {
    nowMs += random(4) === 0 ? random(400) : random(3);
    const port = 40000 + random(24);
    client.srcPort = port;
    client.window = random(8) === 0 ? random(3000) : 64000;
    client.hasTimestamps = port % 3 !== 0;
    client.tsVal = step;
    const state = clients.get(port);
    const roll = random(10);
    if (state === undefined || roll === 0) {
      // A handshake (or a repeated SYN).
      client.flags = TcpFlag.SYN;
      client.seq = random(2 ** 32);
      client.ack = 0;
      client.tsEcr = 0;
      client.mss = 1460;
      payload = new Uint8Array(0);
      const before = packets.length;
      play();
      const synAck = new Segment();
      if (
        packets.length > before &&
        decodeFrame(LinkType.RAW, packets.at(-1)!, 0, packets.at(-1)!.length, ChecksumPolicy.VERIFY, synAck) === DecodeResult.OK &&
        synAck.flags === (TcpFlag.SYN | TcpFlag.ACK)
      ) {
        connected.add(port);
        clients.set(port, { seq: (client.seq + 1) >>> 0, ack: (synAck.seq + 1) >>> 0, token: synAck.tsVal });
      }
      continue;
    }
    client.mss = 0;
    if (roll <= 5) {
      // The real client: a piece of the query stream, in order, acknowledging what it has.
      const cut = 1 + random(framed.length);
      const start = random(2) === 0 ? 0 : random(cut);
      payload = framed.subarray(start, cut);
      client.flags = TcpFlag.ACK | (random(20) === 0 ? TcpFlag.FIN : 0);
      client.seq = state.seq;
      client.ack = state.ack;
      client.tsEcr = state.token;
      play();
      state.seq = (state.seq + payload.length) >>> 0;
    } else {
      // Noise on a known 4-tuple: random flags, numbers, timestamps and payload.
      payload = Uint8Array.from({ length: random(4) === 0 ? random(200) : 0 }, () => random(256));
      client.flags = random(256) & ~TcpFlag.SYN;
      client.seq = random(3) === 0 ? state.seq : random(2 ** 32);
      client.ack = random(3) === 0 ? state.ack : random(2 ** 32);
      client.tsEcr = random(3) === 0 ? state.token : random(2 ** 32);
      play();
    }
    assert.ok(responder.flows.size <= config.maxFlows);
    if (step % 100 === 0) assert.equal(liveFlows.total(), responder.flows.size, 'every flow is published, and none that is gone');
    if (random(50) === 0 && pendingAnswers.length > 0) {
      const { flow, answer } = pendingAnswers.splice(random(pendingAnswers.length), 1)[0]!;
      responder.answer(flow, answer, 0, answer.length);
    }
    if (random(10) === 0) responder.tick(nowMs);
    if (pushWanted && random(3) === 0) {
      pushWanted = false;
      responder.push(nowMs);
    }
    for (const flow of responder.flows) {
      const dueMs = responder.nextDeadline(flow);
      if (dueMs !== Number.POSITIVE_INFINITY) assert.ok(flow.timerList >= 0 && flow.timerDueMs <= dueMs, `step ${step}: timer late`);
    }
  }
  for (const { flow, answer } of pendingAnswers.splice(0)) responder.answer(flow, answer, 0, answer.length);
  responder.push(nowMs);

  // Every packet sent decodes with valid checksums.
  const check = new Segment();
  for (const p of packets) assert.equal(decodeFrame(LinkType.RAW, p, 0, p.length, ChecksumPolicy.VERIFY, check), DecodeResult.OK);

  // The clients go quiet: retransmissions give up, half messages are evicted, all state drains.
  for (let t = 0; t < 200 && responder.flows.size > 0; t++) {
    nowMs += 1000;
    responder.tick(nowMs);
  }
  assert.equal(responder.flows.size, 0, 'soft state drains');
  assert.equal(liveFlows.total(), 0);
  assert.equal(responder.queuedBytes, 0);
  assert.ok(packets.length > 10_000, `${packets.length} packets sent`);
  assert.ok(messages > 200, `${messages} queries reached the application`);
  assert.ok(responder.events[TcpEvent.FLOWS_CREATED]! > 100, 'flows came and went');
});
