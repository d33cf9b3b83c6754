import { test } from 'node:test';
import assert from 'node:assert/strict';
import dnsPacket from 'dns-packet';
import { DnsRelay, RelayCounter, type UpstreamTransport } from '../../../src/dns/relay.js';
import { Rcode, readId } from '../../../src/dns/message.js';
import { ReplyHeader, TcpFlag } from '../../../src/wire/segment.js';
import type { SegmentSink } from '../../../src/tcp/responder.js';

/** The upstream side as the relay sees it: datagrams out, and what a TCP retry returns. */
class RecordingUpstream implements UpstreamTransport {
  readonly datagrams: Buffer[] = [];
  tcpAnswer: (query: Uint8Array) => Uint8Array | null = () => null;
  sendDatagram(query: Uint8Array): void {
    this.datagrams.push(Buffer.from(query));
  }
  queryOverTcp(query: Uint8Array): Promise<Uint8Array | null> {
    return Promise.resolve(this.tcpAnswer(query));
  }
}

interface SentSegment { seq: number; ack: number; flags: number; payload: Buffer }
class RecordingSink implements SegmentSink {
  readonly segments: SentSegment[] = [];
  send(h: ReplyHeader, payload: Uint8Array, offset: number, length: number): void {
    this.segments.push({ seq: h.seq, ack: h.ack, flags: h.flags, payload: Buffer.from(payload.subarray(offset, offset + length)) });
  }
  /** The TCP byte stream the client would reassemble. */
  stream(): Buffer {
    return Buffer.concat(this.segments.map((s) => s.payload));
  }
}

const query = (name: string, id: number, type: 'A' | 'TXT' = 'A'): Buffer =>
  dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }] });
const framed = (...messages: Buffer[]): Buffer =>
  Buffer.concat(messages.flatMap((m) => [Buffer.from([m.length >> 8, m.length & 0xff]), m]));
/** The upstream's answer to a relayed query: same ID and question, one A record. */
const answerTo = (relayed: Buffer, address = '198.18.0.100', flags = 0): Buffer => {
  const q = dnsPacket.decode(relayed);
  return dnsPacket.encode({
    type: 'response', id: q.id, flags: dnsPacket.RECURSION_DESIRED | flags, questions: q.questions,
    answers: [{ type: 'A', name: q.questions![0]!.name, ttl: 60, data: address }],
  });
};
const addressOf = (a: dnsPacket.Answer): unknown => (a as dnsPacket.StringAnswer).data;
/** Splits a framed TCP stream back into messages. */
const unframe = (stream: Buffer): dnsPacket.DecodedPacket[] => {
  const out: dnsPacket.DecodedPacket[] = [];
  for (let p = 0; p < stream.length; ) {
    const n = stream.readUInt16BE(p);
    out.push(dnsPacket.decode(stream.subarray(p + 2, p + 2 + n)));
    p += 2 + n;
  }
  return out;
};

function setup(closeAfterResponse = true) {
  const upstream = new RecordingUpstream();
  const sink = new RecordingSink();
  let counter = 0;
  const relay = new DnsRelay({ timeoutMs: 1000, closeAfterResponse }, upstream, sink, (b) => {
    for (let i = 0; i < b.length; i++) b[i] = (counter = (counter * 1103515245 + 12345) >>> 0) >>> 16;
  });
  const header = new ReplyHeader();
  header.seq = 1000;
  header.ack = 5000;
  header.flags = TcpFlag.ACK;
  return { upstream, sink, relay, header };
}

test('a query is relayed with a fresh ID and answered with the client ID, cut at the MSS, FIN on the last segment', () => {
  const { upstream, sink, relay, header } = setup();
  const request = framed(query('www.lab.test', 0x1111));
  relay.handleRequest(request, 0, request.length, header, 40, 0);
  assert.equal(upstream.datagrams.length, 1);
  const relayed = upstream.datagrams[0]!;
  assert.equal(relay.pendingQueries, 1);
  relay.handleUpstreamAnswer(answerTo(relayed));
  assert.equal(relay.pendingQueries, 0);

  const stream = sink.stream();
  const [answer] = unframe(stream);
  assert.equal(answer!.id, 0x1111);
  assert.deepEqual(answer!.answers!.map(addressOf), ['198.18.0.100']);
  // Segments: consecutive sequence numbers from the template, ≤ 40 bytes, PSH|FIN only on the last.
  let seq = 1000;
  sink.segments.forEach((s, i) => {
    const last = i === sink.segments.length - 1;
    assert.equal(s.seq, seq);
    assert.equal(s.ack, 5000);
    assert.ok(s.payload.length <= 40);
    assert.equal(s.flags, TcpFlag.ACK | (last ? TcpFlag.PSH | TcpFlag.FIN : 0));
    seq += s.payload.length;
  });
  assert.ok(sink.segments.length > 1);
});

test('pipelined queries in one request are answered in query order, whatever order the upstream answers in', () => {
  const { upstream, sink, relay, header } = setup(false);
  const request = framed(query('a.lab.test', 1), query('b.lab.test', 2), query('c.lab.test', 3));
  relay.handleRequest(request, 0, request.length, header, 1220, 0);
  assert.equal(upstream.datagrams.length, 3);
  const ids = new Set(upstream.datagrams.map((d) => readId(d, 0)));
  assert.equal(ids.size, 3, 'distinct upstream IDs');
  relay.handleUpstreamAnswer(answerTo(upstream.datagrams[2]!, '198.18.0.3'));
  relay.handleUpstreamAnswer(answerTo(upstream.datagrams[0]!, '198.18.0.1'));
  assert.equal(sink.segments.length, 0, 'nothing sent before all answers are in');
  relay.handleUpstreamAnswer(answerTo(upstream.datagrams[1]!, '198.18.0.2'));
  const answers = unframe(sink.stream());
  assert.deepEqual(answers.map((a) => [a.id, addressOf(a.answers![0]!)]), [[1, '198.18.0.1'], [2, '198.18.0.2'], [3, '198.18.0.3']]);
  assert.equal(sink.segments.at(-1)!.flags & TcpFlag.FIN, 0, 'no FIN when not closing after the response');
});

test('an answer with a wrong ID or question is ignored and counted', () => {
  const { upstream, sink, relay, header } = setup();
  const request = framed(query('www.lab.test', 7));
  relay.handleRequest(request, 0, request.length, header, 1220, 0);
  const relayed = upstream.datagrams[0]!;
  const forged = answerTo(query('evil.test', readId(relayed, 0)));
  relay.handleUpstreamAnswer(forged);
  relay.handleUpstreamAnswer(Buffer.from([1, 2, 3]));
  assert.equal(sink.segments.length, 0);
  assert.equal(relay.counts[RelayCounter.UNEXPECTED_ANSWERS], 2);
  relay.handleUpstreamAnswer(answerTo(relayed));
  assert.equal(unframe(sink.stream())[0]!.id, 7);
});

test('a malformed query gets FORMERR without reaching the upstream', () => {
  const { upstream, sink, relay, header } = setup();
  const request = framed(Buffer.from([0xab, 0xcd, 0x80, 0x00, 0, 1]));
  relay.handleRequest(request, 0, request.length, header, 1220, 0);
  assert.equal(upstream.datagrams.length, 0);
  const [answer] = unframe(sink.stream());
  assert.equal(answer!.id, 0xabcd);
  assert.equal(answer!.flags! & 0xf, Rcode.FORMERR);
});

test('no upstream answer within the timeout gives SERVFAIL; a late answer is then ignored', () => {
  const { upstream, sink, relay, header } = setup();
  const request = framed(query('www.lab.test', 42));
  relay.handleRequest(request, 0, request.length, header, 1220, 10_000);
  relay.expire(10_999);
  assert.equal(sink.segments.length, 0);
  relay.expire(11_000);
  const [answer] = unframe(sink.stream());
  assert.equal(answer!.id, 42);
  assert.equal(answer!.flags! & 0xf, Rcode.SERVFAIL);
  assert.deepEqual(answer!.questions, [{ name: 'www.lab.test', type: 'A', class: 'IN' }]);
  relay.handleUpstreamAnswer(answerTo(upstream.datagrams[0]!));
  assert.equal(sink.segments.length, 1);
  assert.equal(relay.pendingQueries, 0);
});

test('a truncated UDP answer is fetched again over TCP and the client gets the whole answer', async () => {
  const { upstream, sink, relay, header } = setup();
  const request = framed(query('big.lab.test', 9, 'TXT'));
  relay.handleRequest(request, 0, request.length, header, 1220, 0);
  const relayed = upstream.datagrams[0]!;
  const full = dnsPacket.encode({
    type: 'response', id: readId(relayed, 0), questions: [{ type: 'TXT', name: 'big.lab.test' }],
    answers: Array.from({ length: 16 }, (_, i) => ({ type: 'TXT' as const, name: 'big.lab.test', ttl: 60, data: `${i}`.padEnd(250, 'x') })),
  });
  upstream.tcpAnswer = (q) => (readId(q, 0) === readId(relayed, 0) ? full : null);
  const truncated = dnsPacket.encode({ type: 'response', id: readId(relayed, 0), flags: dnsPacket.TRUNCATED_RESPONSE, questions: [{ type: 'TXT', name: 'big.lab.test' }] });
  relay.handleUpstreamAnswer(truncated);
  await new Promise((resolve) => setImmediate(resolve));
  const [answer] = unframe(sink.stream());
  assert.equal(answer!.id, 9);
  assert.equal(answer!.flag_tc, false);
  assert.equal(answer!.answers!.length, 16);
  assert.ok(sink.segments.length >= 4, `${sink.segments.length} segments for ${sink.stream().length} bytes`);
  assert.equal(relay.counts[RelayCounter.TRUNCATED_RETRIED_TCP], 1);
});
