/**
 * Issue 7: a million random, truncated and mutated frames through the capture → responder path
 * (the real `TcpPipeline` with the DNS relay: decodeFrame, Responder, DnsRelay, emitReply), made by fast-check from
 * the real captured frames of every link type. The properties:
 *   - nothing throws;
 *   - a frame that does not decode gets no reply at all;
 *   - whatever is sent is a well-formed packet (both checksums verify) and carries no data: no
 *     mutated frame can complete a handshake with our keyed cookies, so nothing may be relayed
 *     or answered, and no soft state may be made.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { TcpPipeline, type PacketSender } from '../../src/pipeline.js';
import { DnsRelay } from '../../src/dns/relay.js';
import { DNS_PROTOCOL } from '../../src/dns/application.js';
import type { Flow } from '../../src/tcp/flow.js';
import { SynCookies } from '../../src/tcp/cookie.js';
import { DEFAULT_RESPONDER_CONFIG } from '../../src/tcp/responder.js';
import { Outcome } from '../../src/tcp/counters.js';
import { decodeFrame } from '../../src/wire/frame.js';
import { ChecksumPolicy, DecodeResult, KernelChecksum, LinkType, Segment } from '../../src/wire/segment.js';
import { CAPTURES, PACKET_COUNT, frame } from '../support/fixtures.js';

const RUNS = 1_000_000;
const NOW_MS = 1_764_000_000_000;

/** A pipeline whose sender checks every packet and whose upstream must never be asked anything. */
function pipelineUnderTest(linkType: LinkType, policy: ChecksumPolicy) {
  const sent = { packets: 0, data: 0 };
  const check = new Segment();
  const sender: PacketSender = {
    send(_family, packet, length) {
      sent.packets++;
      assert.equal(decodeFrame(LinkType.RAW, packet, 0, length, ChecksumPolicy.VERIFY, check), DecodeResult.OK, 'a well-formed packet');
      if (check.payloadLength > 0) sent.data++;
    },
  };
  const upstream = {
    sendDatagram: () => assert.fail('nothing may reach the upstream'),
    resendDatagram: () => assert.fail('nothing may reach the upstream'),
    queryDone: () => assert.fail('nothing may reach the upstream'),
    queryOverTcp: () => {
      throw new Error('nothing may reach the upstream');
    },
    close: () => {},
  };
  const relay = new DnsRelay<Flow>({ timeoutMs: 2000, upstream, fillRandom: (bytes) => bytes.fill(7), now: Date.now });
  const pipeline = new TcpPipeline(
    {
      linkType,
      checksumPolicy: policy,
      cookies: new SynCookies(Uint8Array.from({ length: 16 }, (_, i) => 255 - i)),
      tcp: { ...DEFAULT_RESPONDER_CONFIG, recentConnections: 1024 },
      sender,
    },
    DNS_PROTOCOL,
    relay,
  );
  return { pipeline, relay, sent };
}

/** A real frame, then one of: truncation, byte changes, a random splice, or random bytes. */
const mutatedFrame = fc
  .record({
    capture: fc.constantFrom(...CAPTURES),
    index: fc.nat({ max: PACKET_COUNT - 1 }),
    how: fc.constantFrom('truncate', 'flip', 'splice', 'random'),
    at: fc.nat(),
    changes: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
    bytes: fc.uint8Array({ maxLength: 96 }),
  })
  .map(({ capture, index, how, at, changes, bytes }) => {
    const original = frame(capture.name, index);
    let out: Uint8Array;
    if (how === 'truncate') out = original.slice(0, at % (original.length + 1));
    else if (how === 'flip') {
      out = original.slice();
      for (const [position, value] of changes) out[position % out.length] = value;
    } else if (how === 'splice') {
      const cut = at % (original.length + 1);
      out = new Uint8Array([...original.subarray(0, cut), ...bytes, ...original.subarray(cut)]);
    } else out = bytes;
    return { linkType: capture.linkType, frame: out };
  });

for (const policy of [ChecksumPolicy.VERIFY, ChecksumPolicy.IGNORE]) {
  test(`${RUNS / 2} mutated real frames, checksums ${policy === ChecksumPolicy.VERIFY ? 'verified' : 'ignored'}: no exception, no reply to garbage, no data, no state`, (t) => {
    const pipelines = new Map<LinkType, ReturnType<typeof pipelineUnderTest>>();
    for (const capture of CAPTURES) pipelines.set(capture.linkType, pipelineUnderTest(capture.linkType, policy));
    let nowMs = NOW_MS;
    fc.assert(
      fc.property(mutatedFrame, ({ linkType, frame: bytes }) => {
        const { pipeline, sent } = pipelines.get(linkType)!;
        const before = sent.packets;
        const undecodable = pipeline.decodeCounts[DecodeResult.OK]!;
        nowMs += 3;
        pipeline.handleFrame(bytes, 0, bytes.length, KernelChecksum.UNKNOWN, nowMs);
        if (pipeline.decodeCounts[DecodeResult.OK] === undecodable)
          assert.equal(sent.packets, before, 'no reply to a frame that does not decode');
        assert.equal(sent.data, 0, 'no data to anyone');
        assert.equal(pipeline.responder.flows.size, 0, 'no soft state');
      }),
      { numRuns: RUNS / 2, seed: policy === ChecksumPolicy.VERIFY ? 7 : 8 },
    );
    const total = (pick: (p: TcpPipeline) => number): number =>
      [...pipelines.values()].reduce((sum, { pipeline }) => sum + pick(pipeline), 0);
    const decoded = total((p) => p.decodeCounts[DecodeResult.OK]!);
    const synAnswered = total((p) => p.outcomeCounts[Outcome.SYN_ANSWERED]!);
    const refused = total((p) => p.outcomeCounts[Outcome.COOKIE_FAILED]!);
    t.diagnostic(`decoded ${decoded} of ${RUNS / 2}; SYN+ACK ${synAnswered}; RST for unproved data ${refused}`);
    // The mutations must reach the responder, not only the decoder.
    assert.ok(decoded > RUNS / 200 && synAnswered > 0 && refused > 0, 'at least 1 % decode');
    for (const { pipeline, relay } of pipelines.values()) {
      pipeline.tick(nowMs + 60_000);
      assert.equal(relay.pendingQueries, 0);
      assert.equal(pipeline.responder.queuedBytes, 0);
    }
  });
}
