/**
 * The responder, driven segment by segment. Each test starts from the real captured `dig +tcp`
 * SYN (test/fixtures), then plays the client with segments on that same flow (addresses, ports,
 * ISN, timestamps) and checks every packet the responder emits, checksums included.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dnsPacket from 'dns-packet';
import { readFileSync } from 'node:fs';
import { DEFAULT_RESPONDER_CONFIG, Responder, type ResponderConfig } from '../../../src/tcp/responder.js';
import { Outcome, TcpEvent } from '../../../src/tcp/counters.js';
import { SynCookies } from '../../../src/tcp/cookie.js';
import type { Flow } from '../../../src/tcp/flow.js';
import { dnsMessageLength, plausibleQueryStart } from '../../../src/dns/message.js';
import { decodeFrame } from '../../../src/wire/frame.js';
import { emitReply, replyLength } from '../../../src/wire/emit.js';
import { formatAddress } from '../../../src/wire/format.js';
import { ChecksumPolicy, DecodeResult, LinkType, ReplyHeader, Segment, TcpFlag } from '../../../src/wire/segment.js';
import {
  ackNum,
  checkPacket,
  dst,
  flags,
  ipv4,
  ipv6,
  mss,
  payload,
  payloadLength,
  seqNum,
  src,
  tcp,
  timestamps,
  window,
  windowScale,
} from '../../support/checkers.js';
import { ipPacket, Packet } from '../../support/fixtures.js';
import { PathMtuTable, type PathMtuSource } from '../../../src/tcp/path-mtu.js';
import { quotedSegment } from '../../../src/wire/quoted.js';
import type { StreamApplication } from '../../../src/tcp/transport.js';
import { parseRequest, plausibleRequestStart, wholeRequestLength, type HttpRequest } from '../../../src/http/request.js';

const NOW_MS = 1_764_000_000_000;
const SECRET = Uint8Array.from({ length: 16 }, (_, i) => i * 7);

function decode(packet: Uint8Array): Segment {
  const seg = new Segment();
  assert.equal(decodeFrame(LinkType.RAW, packet, 0, packet.length, ChecksumPolicy.VERIFY, seg), DecodeResult.OK);
  return seg;
}

/** A DNS query framed for TCP, as dig sends it. */
function framedQuery(name: string, id: number): Buffer {
  const q = dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] });
  return Buffer.concat([Buffer.from([q.length >> 8, q.length & 0xff]), q]);
}

interface Options {
  config?: Partial<ResponderConfig>;
  /** Answer each message at once with `answerBytes(message)`; otherwise answers are left to the test. */
  answerAtOnce?: boolean;
  synIndex?: number;
  /** Drop the timestamps option from the client's SYN (a client that does not use them). */
  noTimestamps?: boolean;
  /** The window scale shift the client's SYN offers (RFC 7323 §2.2); none by default. */
  windowScale?: number;
  /** The MTU toward each client (default: none, the client's MSS alone). */
  pathMtus?: PathMtuSource;
  /** Leave `Responder.push` to the test (`pushes` counts the calls for one), as the event loop does; by default answers are pushed at once. */
  deferPush?: boolean;
  /** Another application than the DNS one (it reaches the responder through `responder`), with its framing in `config`. */
  app?: StreamApplication<Flow>;
}

/**
 * One connection under test: the client side of the captured dig flow, and everything the
 * responder sent back (decoded with checksums verified).
 */
class Harness {
  readonly sent: Uint8Array[] = [];
  readonly messages: { flow: Flow; bytes: Buffer }[] = [];
  /** Flows the responder said have room again (`onDrain`). */
  readonly drains: Flow[] = [];
  readonly responder: Responder;
  readonly cookies = new SynCookies(SECRET);
  nowMs = NOW_MS;
  /** How often the responder asked for a push (with `deferPush`). */
  pushesWanted = 0;
  /** The client's view: next sequence number to send, and what it acknowledges. */
  clientSeq = 0;
  clientAck = 0;
  clientTsVal = 1000;
  /** Our timestamp token, as the client last saw it. */
  token = 0;
  readonly family: 4 | 6;
  private readonly header = new ReplyHeader();
  private readonly useTimestamps: boolean;
  private readonly windowScale: number;

  constructor(options: Options = {}) {
    this.responder = new Responder(
      { ...DEFAULT_RESPONDER_CONFIG, messageLength: dnsMessageLength, plausibleStart: plausibleQueryStart, ...options.config },
      this.cookies,
      {
        send: (h, p, o, n) => this.capture(h, p, o, n),
        pushWanted: () => (options.deferPush ? this.pushesWanted++ : this.responder.push(this.nowMs)),
      },
      options.app ?? {
        onDrain: (flow) => void this.drains.push(flow),
        onMessages: (flow, buf, offset, length) => {
          for (let p = offset; p < offset + length; ) {
            const n = (buf[p]! << 8) | buf[p + 1]!;
            this.messages.push({ flow, bytes: Buffer.from(buf.subarray(p, p + 2 + n)) });
            this.responder.expectAnswer(flow);
            if (options.answerAtOnce) {
              const answer = this.answerFor(Buffer.from(buf.subarray(p + 2, p + 2 + n)));
              this.responder.answer(flow, answer, 0, answer.length);
            }
            p += 2 + n;
          }
        },
      },
      null,
      undefined,
      options.pathMtus ?? null,
    );
    const synPacket = ipPacket(options.synIndex ?? Packet.V4_SYN);
    const syn = decode(synPacket);
    this.family = syn.family;
    this.useTimestamps = !options.noTimestamps;
    this.windowScale = options.windowScale ?? -1;
    // The client side of the captured flow, as a template for the segments we play.
    const h = this.header;
    h.family = syn.family;
    h.srcAddr.set(syn.buf.subarray(syn.srcAddrOffset, syn.srcAddrOffset + syn.addrLength));
    h.dstAddr.set(syn.buf.subarray(syn.dstAddrOffset, syn.dstAddrOffset + syn.addrLength));
    h.srcPort = syn.srcPort;
    h.dstPort = syn.dstPort;
    h.window = 64000;
    this.clientSeq = syn.seq;
  }

  /** A framed answer to a framed or bare query: the same ID, one A record. */
  answerFor(query: Buffer, size = 0): Buffer {
    const q = dnsPacket.decode(query);
    const a = dnsPacket.encode({
      type: 'response',
      id: q.id,
      questions: q.questions,
      answers: [{ type: 'TXT', name: q.questions![0]!.name, ttl: 60, data: 'x'.repeat(Math.max(1, size)) }],
    });
    return Buffer.concat([Buffer.from([a.length >> 8, a.length & 0xff]), a]);
  }

  private capture(h: ReplyHeader, data: Uint8Array | null, offset: number, length: number): void {
    const out = new Uint8Array(replyLength(h, length));
    assert.equal(emitReply(h, data, offset, length, out, 0), out.length);
    this.sent.push(out);
  }

  /** Packets sent since the last call. */
  take(): Uint8Array[] {
    return this.sent.splice(0);
  }

  /** Plays one client segment; returns the responder's outcome. */
  segment(fields: { flags: number; data?: Uint8Array; seq?: number; ack?: number; window?: number; tsEcr?: number }): Outcome {
    const h = this.header;
    h.seq = fields.seq ?? this.clientSeq;
    h.ack = fields.ack ?? this.clientAck;
    h.flags = fields.flags;
    h.window = fields.window ?? 64000;
    h.mss = fields.flags & TcpFlag.SYN ? 1460 : 0;
    h.windowScale = this.windowScale;
    h.hasTimestamps = this.useTimestamps;
    h.tsVal = this.clientTsVal++;
    h.tsEcr = fields.tsEcr ?? this.token;
    const data = fields.data ?? null;
    const packet = new Uint8Array(replyLength(h, data?.length ?? 0));
    emitReply(h, data, 0, data?.length ?? 0, packet, 0);
    return this.responder.handleSegment(decode(packet), this.nowMs);
  }

  /** SYN → SYN+ACK → ACK; returns our ISN. */
  handshake(): number {
    assert.equal(this.segment({ flags: TcpFlag.SYN, ack: 0, tsEcr: 0 }), Outcome.SYN_ANSWERED);
    const [synAck] = this.take();
    const seg = checkPacket(
      synAck!,
      this.ip(),
      tcp(flags(TcpFlag.SYN | TcpFlag.ACK), ackNum((this.clientSeq + 1) >>> 0), mss(1220), window(65535)),
    );
    this.clientSeq = (this.clientSeq + 1) >>> 0;
    this.clientAck = (seg.seq + 1) >>> 0;
    this.token = seg.tsVal;
    assert.equal(seg.hasTimestamps, this.useTimestamps);
    assert.equal(this.segment({ flags: TcpFlag.ACK }), Outcome.IGNORED, 'the handshake ACK needs nothing');
    assert.equal(this.take().length, 0);
    return seg.seq;
  }

  /** Sends `data` in order and advances the client's sequence number. */
  send(data: Uint8Array, extraFlags = 0): Outcome {
    const outcome = this.segment({ flags: TcpFlag.ACK | TcpFlag.PSH | extraFlags, data });
    this.clientSeq = (this.clientSeq + data.length + (extraFlags & TcpFlag.FIN ? 1 : 0)) >>> 0;
    return outcome;
  }

  /** Starts another connection from the same client address: its source port moves by `portStep`, its ISN on. */
  reconnect(portStep = 1): void {
    this.header.srcPort = (this.header.srcPort + portStep) & 0xffff;
    this.clientSeq = (this.clientSeq + 1_000_000) >>> 0;
    this.clientAck = 0;
  }

  /** Moves the client to another address (another source): the last byte of its address changes. */
  moveAddress(lastByte: number): void {
    const n = this.family === 4 ? 4 : 16;
    this.header.srcAddr[n - 1] = lastByte;
    this.reconnect();
  }

  /** The client port of the connection played now. */
  get clientPort(): number {
    return this.header.srcPort;
  }

  /** Acknowledges everything of ours it has seen so far (`upTo`). */
  ackTo(upTo: number, window = 64000): Outcome {
    this.clientAck = upTo >>> 0;
    return this.segment({ flags: TcpFlag.ACK, window });
  }

  /** What our replies' IP header must say: from the server to the client's present address. */
  ip() {
    const server = formatAddress(this.header.dstAddr, 0, this.family);
    const client = formatAddress(this.header.srcAddr, 0, this.family);
    return this.family === 4 ? ipv4(src(server), dst(client)) : ipv6(src(server), dst(client));
  }
}

test('SYN → SYN+ACK: cookie ISN, MSS 1220, window 65535, timestamps echoing the client (IPv4 and IPv6)', () => {
  for (const synIndex of [Packet.V4_SYN, Packet.V6_SYN]) {
    const h = new Harness({ synIndex });
    const syn = decode(ipPacket(synIndex));
    assert.equal(h.responder.handleSegment(syn, h.nowMs), Outcome.SYN_ANSWERED);
    const [synAck] = h.take();
    const seg = checkPacket(
      synAck!,
      h.ip(),
      tcp(flags(TcpFlag.SYN | TcpFlag.ACK), ackNum((syn.seq + 1) >>> 0), mss(1220), window(65535), payloadLength(0)),
    );
    assert.equal(seg.tsEcr, syn.tsVal);
    assert.ok(h.cookies.checkToken(syn, seg.tsVal, NOW_MS / 1000) >= 0, 'TSval is our token');
    assert.equal(h.responder.flows.size, 0, 'a SYN creates no state');
  }
});

test('a query is acknowledged, answered at the right sequence number, and the idle connection then holds no state', () => {
  const h = new Harness({ answerAtOnce: true });
  const isn = h.handshake();
  const query = framedQuery('www.lab.test', 0x1234);
  assert.equal(h.send(query), Outcome.DATA);
  assert.equal(h.messages.length, 1);
  const [answerSegment] = h.take();
  const answer = h.answerFor(query.subarray(2));
  checkPacket(
    answerSegment!,
    h.ip(),
    tcp(
      flags(TcpFlag.ACK | TcpFlag.PSH),
      seqNum((isn + 1) >>> 0),
      ackNum(h.clientSeq),
      payload(answer),
      timestamps({ val: h.token, ecr: h.clientTsVal - 1 }),
    ),
  );
  assert.equal(h.responder.flows.size, 1, 'state while the answer is unacknowledged');
  assert.equal(h.ackTo(isn + 1 + answer.length), Outcome.ACK);
  assert.equal(h.responder.flows.size, 0, 'no state once everything is acknowledged');
  assert.equal(h.responder.queuedBytes, 0);

  // A second query on the now stateless connection is recognised by its timestamp token.
  const second = framedQuery('www.lab.test', 0x5678);
  assert.equal(h.send(second), Outcome.DATA);
  const [again] = h.take();
  checkPacket(again!, h.ip(), tcp(seqNum((isn + 1 + answer.length) >>> 0), payload(h.answerFor(second.subarray(2)))));
});

test('several queries in one segment, and one query split over three segments (length prefix alone first)', () => {
  const h = new Harness();
  h.handshake();
  const a = framedQuery('a.lab.test', 1);
  const b = framedQuery('b.lab.test', 2);
  h.send(Buffer.concat([a, b]));
  assert.deepEqual(
    h.messages.map((m) => m.bytes),
    [a, b],
  );
  h.take();
  const c = framedQuery('c.lab.test', 3);
  assert.equal(h.send(c.subarray(0, 2)), Outcome.DATA);
  const [ack1] = h.take();
  checkPacket(ack1!, h.ip(), tcp(flags(TcpFlag.ACK), ackNum(h.clientSeq), payloadLength(0)));
  h.send(c.subarray(2, 10));
  h.send(c.subarray(10));
  assert.deepEqual(
    h.messages.map((m) => m.bytes),
    [a, b, c],
  );
});

test('out of order: the gap gets a duplicate ACK, nothing is delivered until it is filled', () => {
  const h = new Harness();
  h.handshake();
  const q = framedQuery('www.lab.test', 9);
  h.send(q.subarray(0, 5)); // creates the flow
  h.take();
  const start = h.clientSeq;
  assert.equal(h.segment({ flags: TcpFlag.ACK, data: q.subarray(15), seq: start + 10 }), Outcome.OUT_OF_ORDER);
  const [dupAck] = h.take();
  checkPacket(dupAck!, h.ip(), tcp(flags(TcpFlag.ACK), ackNum(start)));
  assert.equal(h.messages.length, 0);
  h.send(q.subarray(5, 15));
  h.send(q.subarray(15)); // the retransmission of the segment that came early
  assert.deepEqual(
    h.messages.map((m) => m.bytes),
    [q],
  );
  // A duplicate of data already received is acknowledged again and not delivered twice.
  assert.equal(h.segment({ flags: TcpFlag.ACK, data: q.subarray(15), seq: start + 10 }), Outcome.DUPLICATE);
  assert.equal(h.messages.length, 1);
});

test('a lost answer is retransmitted on timeout with exponential back-off, then the flow is aborted', () => {
  const h = new Harness({ answerAtOnce: true, config: { maxRetransmits: 3 } });
  const isn = h.handshake();
  h.send(framedQuery('www.lab.test', 1));
  const [first] = h.take();
  h.nowMs += 199;
  h.responder.tick(h.nowMs);
  assert.equal(h.take().length, 0, 'not before the RTO');
  for (const rto of [200, 400, 800]) {
    h.nowMs += rto;
    h.responder.tick(h.nowMs);
    const [again] = h.take();
    assert.deepEqual(again!.subarray(40), first!.subarray(40), `same segment again after ${rto} ms`);
  }
  h.nowMs += 1600;
  h.responder.tick(h.nowMs);
  const [reset] = h.take();
  checkPacket(reset!, h.ip(), tcp(flags(TcpFlag.RST), seqNum((isn + 1 + first!.length - 52) >>> 0)));
  assert.equal(h.responder.flows.size, 0);
  assert.equal(h.responder.events[TcpEvent.FLOWS_ABORTED], 1);
});

test("the client's window is honoured and the rest is sent as it acknowledges; three duplicate ACKs retransmit", () => {
  const h = new Harness();
  const isn = h.handshake();
  const q = framedQuery('big.lab.test', 5);
  h.send(q);
  h.take();
  const flow = h.messages[0]!.flow;
  // Shrink the window to 2000 bytes, then answer 5000 bytes.
  h.ackTo(isn + 1, 2000);
  const answer = h.answerFor(q.subarray(2), 4900);
  h.responder.answer(flow, answer, 0, answer.length);
  const firstFlight = h.take().map((p) => decode(p));
  const sentBytes = firstFlight.reduce((n, s) => n + s.payloadLength, 0);
  assert.ok(sentBytes <= 2000, `${sentBytes} bytes sent into a 2000-byte window`);
  assert.ok(
    firstFlight.every((s) => s.payloadLength <= 1460 - 12),
    'segments fit the MSS less the timestamps option',
  );
  // Three duplicate ACKs: the first segment again.
  for (let i = 0; i < 3; i++) h.ackTo(isn + 1, 2000);
  const [retransmitted] = h.take();
  checkPacket(retransmitted!, h.ip(), tcp(seqNum((isn + 1) >>> 0), payloadLength(firstFlight[0]!.payloadLength)));
  // Acknowledge everything sent, with a big window: the rest arrives, the last with PSH.
  h.ackTo(isn + 1 + sentBytes, 64000);
  const rest = h.take().map((p) => decode(p));
  const all = Buffer.concat(
    [...firstFlight, ...rest].map((s) => Buffer.from(s.buf.subarray(s.payloadOffset, s.payloadOffset + s.payloadLength))),
  );
  assert.deepEqual(all, answer);
  assert.equal(rest.at(-1)!.flags & TcpFlag.PSH, TcpFlag.PSH);
});

test('window scaling (RFC 7323): agreed to for a shift the token carries, every later window read with it; not for any other', () => {
  for (const [shift, agreed] of [
    [10, true], // Linux since 6.16, with tcp_rmem up to 32 MiB (the lab's clients)
    [7, true],
    [12, false],
  ] as const) {
    const h = new Harness({ windowScale: shift });
    assert.equal(h.segment({ flags: TcpFlag.SYN, ack: 0, tsEcr: 0 }), Outcome.SYN_ANSWERED);
    // Our shift is 0: our window stays below 64 KiB. No option at all: neither side scales.
    const synAck = checkPacket(h.take()[0]!, h.ip(), tcp(flags(TcpFlag.SYN | TcpFlag.ACK), windowScale(agreed ? 0 : -1)));
    h.clientSeq = (h.clientSeq + 1) >>> 0;
    h.clientAck = (synAck.seq + 1) >>> 0;
    h.token = synAck.tsVal;
    h.segment({ flags: TcpFlag.ACK });
    const q = framedQuery('big.lab.test', 5);
    h.send(q);
    h.take();
    // A window field of 2048 >> shift: 2,048 bytes if scaled, a few bytes if read unscaled.
    const field = 2048 >> shift;
    h.ackTo(synAck.seq + 1, field);
    const answer = h.answerFor(q.subarray(2), 4900);
    h.responder.answer(h.messages[0]!.flow, answer, 0, answer.length);
    const sent = h.take().reduce((n, p) => n + decode(p).payloadLength, 0);
    if (agreed) assert.ok(sent > 1000 && sent <= 2048, `shift ${shift}: ${sent} bytes into a window of ${field} << ${shift}`);
    else assert.ok(sent <= field, `shift ${shift}: ${sent} bytes into an unscaled window of ${field}`);
    if (!agreed) continue;
    // A window of 128,000 bytes, more than an unscaled window can say, takes the rest.
    h.ackTo(synAck.seq + 1 + sent, 128_000 >> shift);
    const rest = h.take().reduce((n, p) => n + decode(p).payloadLength, 0);
    assert.equal(sent + rest, answer.length, `shift ${shift}: the whole answer`);
  }
});

test('an ACK overtaken by a later one does not set the window (RFC 9293 §3.10.7.4, SND.WL1 and SND.WL2)', () => {
  const h = new Harness();
  const isn = h.handshake();
  const q = framedQuery('big.lab.test', 5);
  h.send(q);
  h.take();
  h.ackTo(isn + 1, 3000);
  const answer = h.answerFor(q.subarray(2), 9000);
  h.responder.answer(h.messages[0]!.flow, answer, 0, answer.length);
  const first = h.take().reduce((n, p) => n + decode(p).payloadLength, 0);
  assert.ok(first <= 3000, `${first} bytes into a 3000-byte window`);
  // The client takes 1000 bytes and closes its window to 2000 more: nothing new may go.
  h.ackTo(isn + 1 + 1000, 2000);
  assert.equal(h.take().length, 0);
  // Its earlier ACK, with the wide window of then, arrives late: the window stays as the newest said.
  h.ackTo(isn + 1, 64000);
  assert.equal(h.take().length, 0, 'an old window read from the new SND.UNA would overrun the client');
  // A new ACK opens it again.
  h.ackTo(isn + 1 + first, 64000);
  assert.ok(h.take().length > 0);
});

test('answers given together for one connection leave together: one segment at the push', () => {
  const h = new Harness({ deferPush: true });
  const isn = h.handshake();
  const queries = [framedQuery('www.lab.test', 1), framedQuery('www.lab.test', 2), framedQuery('www.lab.test', 3)];
  assert.equal(h.send(Buffer.concat(queries)), Outcome.DATA);
  assert.equal(h.messages.length, 3);
  const answers = queries.map((q) => h.answerFor(q.subarray(2)));
  for (const [i, answer] of answers.entries()) h.responder.answer(h.messages[i]!.flow, answer, 0, answer.length);
  assert.equal(h.take().length, 0, 'nothing is sent before the push');
  assert.equal(h.pushesWanted, 1, 'one push asked for, however many answers');
  h.responder.tick(h.nowMs + 1000);
  const [delayedAck, ...more] = h.take();
  checkPacket(delayedAck!, h.ip(), tcp(flags(TcpFlag.ACK), ackNum(h.clientSeq), payloadLength(0)));
  assert.equal(more.length, 0, 'the timers send the held ACK but leave the answers to their push (no window probe)');
  h.responder.push(h.nowMs);
  const sent = h.take();
  assert.equal(sent.length, 1);
  checkPacket(
    sent[0]!,
    h.ip(),
    tcp(flags(TcpFlag.ACK | TcpFlag.PSH), seqNum((isn + 1) >>> 0), ackNum(h.clientSeq), payload(Buffer.concat(answers))),
  );
  assert.equal(h.ackTo(isn + 1 + Buffer.concat(answers).length), Outcome.ACK);
  assert.equal(h.responder.flows.size, 0);
});

test('a flow released while its push is pending is released once', () => {
  // An empty last answer (the HTTP relay gives one for each request it drops when it closes)
  // leaves nothing to send: the client's next ACK releases the flow before the push comes.
  const h = new Harness({ deferPush: true });
  const isn = h.handshake();
  h.send(framedQuery('www.lab.test', 1));
  h.responder.answer(h.messages[0]!.flow, new Uint8Array(0), 0, 0);
  h.ackTo(isn + 1);
  assert.equal(h.responder.flows.size, 0);
  h.responder.push(h.nowMs);
  assert.equal(h.responder.events[TcpEvent.FLOWS_RELEASED], 1);
  assert.equal(h.responder.events[TcpEvent.FLOWS_CREATED], 1);
});

test('a forged data segment (no handshake) gets RST and no data; the application never sees it', () => {
  const h = new Harness({ answerAtOnce: true });
  h.handshake();
  h.clientAck = (h.clientAck + 12345) >>> 0;
  assert.equal(h.segment({ flags: TcpFlag.ACK, data: framedQuery('www.lab.test', 1), tsEcr: 0xdeadbeef }), Outcome.COOKIE_FAILED);
  const [reset] = h.take();
  checkPacket(reset!, h.ip(), tcp(flags(TcpFlag.RST), seqNum(h.clientAck), payloadLength(0)));
  assert.equal(h.messages.length, 0);
  assert.equal(h.responder.flows.size, 0);
});

test('challenge ACKs are limited per flow to 2 in 500 ms (RFC 5961 §7); the rest of the forged segments get nothing', () => {
  const h = new Harness();
  h.handshake();
  h.send(framedQuery('www.lab.test', 1));
  h.take();
  const outcomes = [100, 200, 300, 400, 500].map((ahead) => h.segment({ flags: TcpFlag.RST, seq: h.clientSeq + ahead }));
  assert.deepEqual(outcomes, [Outcome.CHALLENGE_ACK, Outcome.CHALLENGE_ACK, Outcome.IGNORED, Outcome.IGNORED, Outcome.IGNORED]);
  assert.equal(h.take().length, 2);
  assert.equal(h.responder.events[TcpEvent.CHALLENGE_ACKS_LIMITED], 3);
  h.nowMs += 500;
  assert.equal(h.segment({ flags: TcpFlag.SYN, ack: 0 }), Outcome.CHALLENGE_ACK, 'a new interval');
  assert.equal(h.take().length, 1);
});

test('RST: exactly at RCV.NXT drops the flow and its pending answers; elsewhere in the window gets a challenge ACK', () => {
  const h = new Harness();
  h.handshake();
  h.send(framedQuery('www.lab.test', 1));
  h.take();
  const flow = h.messages[0]!.flow;
  assert.equal(h.segment({ flags: TcpFlag.RST, seq: h.clientSeq + 100 }), Outcome.CHALLENGE_ACK);
  checkPacket(h.take()[0]!, h.ip(), tcp(flags(TcpFlag.ACK), ackNum(h.clientSeq)));
  assert.equal(h.segment({ flags: TcpFlag.RST }), Outcome.RESET);
  assert.equal(h.responder.flows.size, 0);
  const answer = h.answerFor(h.messages[0]!.bytes.subarray(2));
  h.responder.answer(flow, answer, 0, answer.length);
  assert.equal(h.take().length, 0, 'nothing is sent on a reset connection (RFC 7766 §6.2.4)');
  assert.equal(h.responder.events[TcpEvent.ANSWERS_DROPPED], 1);
});

test('--close-after-response: FIN rides on the last answer segment; a request after it gets RST', () => {
  const h = new Harness({ answerAtOnce: true, config: { closeAfterResponse: true } });
  h.handshake();
  h.send(framedQuery('www.lab.test', 1));
  const [answer] = h.take();
  checkPacket(answer!, h.ip(), tcp(flags(TcpFlag.ACK | TcpFlag.PSH | TcpFlag.FIN)));
  assert.equal(h.send(framedQuery('www.lab.test', 2)), Outcome.DATA_AFTER_FIN);
  checkPacket(h.take()[0]!, h.ip(), tcp(flags(TcpFlag.RST)));
});

test('client FIN: answered queries first, then our FIN; a FIN on a stateless connection gets FIN+ACK', () => {
  const h = new Harness();
  const isn = h.handshake();
  const q = framedQuery('www.lab.test', 1);
  h.send(q, TcpFlag.FIN); // query and FIN together (a half-closing client)
  const [ack] = h.take();
  checkPacket(ack!, h.ip(), tcp(flags(TcpFlag.ACK), ackNum(h.clientSeq)));
  const answer = h.answerFor(q.subarray(2));
  h.responder.answer(h.messages[0]!.flow, answer, 0, answer.length);
  checkPacket(h.take()[0]!, h.ip(), tcp(flags(TcpFlag.ACK | TcpFlag.PSH | TcpFlag.FIN), payload(answer)));
  h.ackTo(isn + 1 + answer.length + 1);
  assert.equal(h.responder.flows.size, 0);

  // Another connection that closes while idle, with no state at all.
  const idle = new Harness();
  idle.handshake();
  assert.equal(idle.send(new Uint8Array(0), TcpFlag.FIN), Outcome.FIN);
  checkPacket(idle.take()[0]!, idle.ip(), tcp(flags(TcpFlag.ACK | TcpFlag.FIN), ackNum(idle.clientSeq)));
  assert.equal(idle.responder.flows.size, 0);
});

test('a client without timestamps: the first request is proved by the ISN cookie, and the connection closes after it', () => {
  const h = new Harness({ answerAtOnce: true, noTimestamps: true });
  h.handshake();
  assert.equal(h.send(framedQuery('www.lab.test', 1)), Outcome.DATA);
  const [answer] = h.take();
  checkPacket(answer!, h.ip(), tcp(flags(TcpFlag.ACK | TcpFlag.PSH | TcpFlag.FIN), timestamps(null)));
});

test('a flow-less segment after a lost one gets a duplicate ACK at the remembered RCV.NXT; the resent bytes are then answered', () => {
  const h = new Harness({ answerAtOnce: true });
  h.handshake();
  h.send(framedQuery('www.lab.test', 1));
  h.ackTo(h.clientAck + decode(h.take()[0]!).payloadLength);
  assert.equal(h.responder.flows.size, 0);
  // The next query goes out in two segments; the first is lost.
  const lostSeq = h.clientSeq;
  const next = framedQuery('www.lab.test', 0x8000);
  h.clientSeq += 4;
  assert.equal(h.send(next.subarray(4)), Outcome.OUT_OF_ORDER);
  checkPacket(h.take()[0]!, h.ip(), tcp(flags(TcpFlag.ACK), seqNum(h.clientAck), ackNum(lostSeq), payloadLength(0)));
  assert.equal(h.messages.length, 1, 'nothing delivered');
  assert.equal(h.responder.flows.size, 0, 'and no state made');
  // The client resends from where the server said.
  h.clientSeq = lostSeq;
  assert.equal(h.send(next), Outcome.DATA);
  checkPacket(h.take()[0]!, h.ip(), tcp(seqNum(h.clientAck), ackNum(h.clientSeq), payload(h.answerFor(next.subarray(2)))));
});

test("a lost query followed by the next one: the next is not taken for the stream's next bytes, so its ACK cannot cover the lost one", () => {
  const h = new Harness({ answerAtOnce: true });
  h.handshake();
  h.send(framedQuery('www.lab.test', 1));
  h.ackTo(h.clientAck + decode(h.take()[0]!).payloadLength);
  const lost = framedQuery('lost.lab.test', 2);
  const lostSeq = h.clientSeq;
  h.clientSeq += lost.length;
  const third = framedQuery('www.lab.test', 3);
  assert.equal(h.send(third), Outcome.OUT_OF_ORDER);
  checkPacket(h.take()[0]!, h.ip(), tcp(flags(TcpFlag.ACK), ackNum(lostSeq), payloadLength(0)));
  // The client's TCP resends both (RFC 5681 §3.2: fast retransmit, or its timer): both answered.
  h.clientSeq = lostSeq;
  assert.equal(h.send(Buffer.concat([lost, third])), Outcome.DATA);
  assert.deepEqual(
    h.messages.slice(1).map((m) => m.bytes.readUInt16BE(2)),
    [2, 3],
  );
});

test('without the remembered numbers, a flow-less segment that starts mid-message is still not read as a new query', () => {
  const h = new Harness({ answerAtOnce: true, config: { recentConnections: 0 } });
  h.handshake();
  h.send(framedQuery('www.lab.test', 1));
  h.ackTo(h.clientAck + decode(h.take()[0]!).payloadLength);
  const next = framedQuery('www.lab.test', 0x8000);
  h.clientSeq += 4;
  assert.equal(h.send(next.subarray(4)), Outcome.MISALIGNED);
  assert.equal(h.take().length, 0);
  assert.equal(h.messages.length, 1);
});

test('a connection back within a retransmission timeout keeps its congestion window; one idle longer starts again from the initial window (RFC 5681 §4.1)', () => {
  const h = new Harness();
  const isn = h.handshake();
  let acked = isn + 1;
  /** One 30,000-byte answer: the segments sent before any ACK, then ACKs one by one to the end. */
  const exchange = (id: number): number => {
    h.send(framedQuery('big.lab.test', id));
    const answer = h.answerFor(h.messages.at(-1)!.bytes.subarray(2), 30_000);
    h.responder.answer(h.messages.at(-1)!.flow, answer, 0, answer.length);
    let burst = h.take().map(decode);
    const first = burst.length;
    for (let rounds = 0; burst.length > 0 && rounds < 100; rounds++) {
      for (const seg of burst) {
        acked += seg.payloadLength;
        h.ackTo(acked);
      }
      burst = h.take().map(decode);
    }
    assert.equal(h.responder.flows.size, 0, 'all acknowledged: the flow is released');
    return first;
  };
  const initial = exchange(1);
  assert.ok(initial <= 10, `the first answer starts with the initial window: ${initial} segments`);
  h.nowMs += 50;
  assert.ok(exchange(2) > initial, 'back after 50 ms: the window slow start reached');
  h.nowMs += 250;
  assert.equal(exchange(3), initial, 'back after 250 ms, more than the 200 ms RTO: the initial window again');
});

test('a request sent before the client had our last answer, arriving after the flow was released, is answered after that answer', () => {
  const h = new Harness({ answerAtOnce: true });
  const isn = h.handshake();
  const q1 = framedQuery('www.lab.test', 1);
  const q2 = framedQuery('mid.lab.test', 2);
  h.send(q1);
  const a1 = decode(h.take()[0]!).payloadLength;
  // Q2 leaves the client acknowledging only our SYN; the network holds it back while the client
  // receives A1 and acknowledges it, which releases the flow.
  const q2Seq = h.clientSeq;
  h.clientSeq += q2.length;
  h.ackTo(isn + 1 + a1);
  assert.equal(h.responder.flows.size, 0);
  assert.equal(h.segment({ flags: TcpFlag.ACK | TcpFlag.PSH, data: q2, seq: q2Seq, ack: isn + 1 }), Outcome.DATA);
  checkPacket(h.take()[0]!, h.ip(), tcp(seqNum((isn + 1 + a1) >>> 0), ackNum(h.clientSeq), payload(h.answerFor(q2.subarray(2)))));
  assert.equal(h.responder.events[TcpEvent.OLD_ACKS_RAISED], 1);
});

test('the numbers remembered for an earlier connection on the same 4-tuple are ignored by a new one', () => {
  const h = new Harness({ answerAtOnce: true });
  h.handshake();
  h.send(framedQuery('www.lab.test', 1));
  h.ackTo(h.clientAck + decode(h.take()[0]!).payloadLength);
  h.send(new Uint8Array(0), TcpFlag.FIN);
  h.take();
  // The client reuses the port with a new ISN.
  h.clientSeq = (h.clientSeq + 0x40000000) >>> 0;
  const isn = h.handshake();
  assert.equal(h.send(framedQuery('www.lab.test', 2)), Outcome.DATA);
  checkPacket(h.take()[0]!, h.ip(), tcp(seqNum((isn + 1) >>> 0), ackNum(h.clientSeq)));
});

test("transaction mode: a request after our FIN was acknowledged gets RST; the client's FIN gets a bare ACK", () => {
  const h = new Harness({ answerAtOnce: true, config: { closeAfterResponse: true } });
  const isn = h.handshake();
  h.send(framedQuery('www.lab.test', 1));
  const answer = decode(h.take()[0]!);
  assert.ok(answer.flags & TcpFlag.FIN);
  const finAcked = isn + 1 + answer.payloadLength + 1;
  h.ackTo(finAcked);
  assert.equal(h.responder.flows.size, 0);
  const fin = h.clientSeq;
  assert.equal(h.send(framedQuery('www.lab.test', 2)), Outcome.DATA_AFTER_FIN);
  checkPacket(h.take()[0]!, h.ip(), tcp(flags(TcpFlag.RST), seqNum(finAcked >>> 0)));
  assert.equal(h.messages.length, 1);
  // Another connection, closed by the client after our FIN.
  const t = new Harness({ answerAtOnce: true, config: { closeAfterResponse: true } });
  const tIsn = t.handshake();
  t.send(framedQuery('www.lab.test', 1));
  const tAnswer = decode(t.take()[0]!);
  t.ackTo(tIsn + 1 + tAnswer.payloadLength + 1);
  assert.equal(t.send(new Uint8Array(0), TcpFlag.FIN), Outcome.FIN);
  checkPacket(t.take()[0]!, t.ip(), tcp(flags(TcpFlag.ACK), seqNum((tIsn + 2 + tAnswer.payloadLength) >>> 0), ackNum(t.clientSeq)));
  assert.ok(fin > 0);
});

test('soft-state bounds: past maxFlows new data is neither acknowledged nor delivered', () => {
  const h = new Harness({ config: { maxFlows: 0 } });
  h.handshake();
  assert.equal(h.send(framedQuery('www.lab.test', 1)), Outcome.SOFT_STATE_FULL);
  assert.equal(h.take().length, 0);
  assert.equal(h.messages.length, 0);
});

test('a flow proved by its token alone starts with two segments of window; the first request after the handshake with the full initial window', () => {
  const h = new Harness({ config: { recentConnections: 0 } });
  const isn = h.handshake();
  const firstQuery = framedQuery('www.lab.test', 1);
  h.send(firstQuery);
  const bigFor = (i: number): Buffer => h.answerFor(h.messages[i]!.bytes.subarray(2), 5000);
  const first = bigFor(0);
  h.responder.answer(h.messages[0]!.flow, first, 0, first.length);
  const initial = h.take().map(decode);
  assert.ok(initial.length >= 4, `after the handshake: ${initial.length} segments at once`);
  let acked = isn + 1 + first.length;
  h.ackTo(acked);
  assert.equal(h.responder.flows.size, 0, 'idle: no flow, and no table entry (recentConnections 0)');

  // The next request proves itself by its token only.
  h.send(framedQuery('www.lab.test', 2));
  const second = bigFor(1);
  h.responder.answer(h.messages[1]!.flow, second, 0, second.length);
  const burst = h.take().map(decode);
  assert.equal(burst.length, 2, 'two segments until the client acknowledges');
  acked += burst[0]!.payloadLength + burst[1]!.payloadLength;
  h.ackTo(acked);
  assert.ok(h.take().length >= 2, 'the ACK opens the window');
});

test("a full shard sheds a heavy source's flows for a newcomer's first query, never the newcomer's; a source as light as the rest is refused", () => {
  const h = new Harness({ config: { maxFlows: 8 } });
  // One source holds seven flows (answers owed), another one.
  for (let connection = 0; connection < 8; connection++) {
    if (connection === 7) h.moveAddress(77);
    else if (connection > 0) h.reconnect();
    h.handshake();
    assert.equal(h.send(framedQuery('www.lab.test', connection)), Outcome.DATA, `connection ${connection}`);
  }
  h.take();
  const heavy = h.messages[0]!.flow.source!;
  const light = h.messages[7]!.flow.source!;
  assert.equal(heavy.flows, 7);
  // Newcomers from five other addresses: each first query is taken, a flow of the heavy source goes with RST.
  for (let newcomer = 0; newcomer < 5; newcomer++) {
    h.moveAddress(100 + newcomer);
    h.handshake();
    assert.equal(h.send(framedQuery('www.lab.test', 100 + newcomer)), Outcome.DATA, `newcomer ${newcomer}`);
    const sent = h.take().map(decode);
    assert.ok(
      sent.some((seg) => (seg.flags & TcpFlag.RST) !== 0),
      `newcomer ${newcomer}: a flow was reset`,
    );
    assert.equal(h.responder.flows.size, 8);
  }
  assert.equal(h.responder.events[TcpEvent.FLOWS_SHED], 5);
  assert.equal(heavy.flows, 2, 'the five went from the heavy source');
  assert.equal(light.flows, 1, 'the light source kept its flow');
  // Now every source holds one or two flows: a second flow of a one-flow source finds none heavier
  // than it would be, and is refused, unacknowledged.
  h.moveAddress(100);
  h.handshake();
  h.take();
  assert.equal(h.segment({ flags: TcpFlag.ACK | TcpFlag.PSH, data: framedQuery('www.lab.test', 200) }), Outcome.SOFT_STATE_FULL);
  assert.equal(h.take().length, 0);
  assert.equal(h.responder.events[TcpEvent.FLOWS_SHED], 5);
});

test('one source holds at most maxFlowsPerSource flows; more of its data waits, unacknowledged, until one is released', () => {
  const h = new Harness({ config: { maxFlowsPerSource: 2 } });
  for (let connection = 0; connection < 2; connection++) {
    if (connection > 0) h.reconnect();
    h.handshake();
    assert.equal(h.send(framedQuery('www.lab.test', connection)), Outcome.DATA, `connection ${connection}`);
  }
  assert.equal(h.responder.flows.size, 2, 'both owe an answer');
  h.reconnect();
  h.handshake();
  h.take();
  const third = framedQuery('www.lab.test', 3);
  assert.equal(h.segment({ flags: TcpFlag.ACK | TcpFlag.PSH, data: third }), Outcome.SOFT_STATE_FULL);
  assert.equal(h.take().length, 0, 'not acknowledged: the client will send it again');
  assert.equal(h.responder.events[TcpEvent.SOURCE_FULL], 1);
  h.responder.reset(h.messages[0]!.flow, h.nowMs); // the first connection ends
  h.take();
  assert.equal(h.send(third), Outcome.DATA, 'the retransmission is taken');
  assert.equal(h.messages.length, 3);
});

test('one source holds at most maxQueuedBytesPerSource: past it, its new data waits unacknowledged, on any of its connections', () => {
  const h = new Harness({ config: { maxQueuedBytesPerSource: 10 } });
  h.handshake();
  const query = framedQuery('www.lab.test', 1);
  assert.equal(h.send(query.subarray(0, 5)), Outcome.DATA);
  assert.equal(h.send(query.subarray(5, 11)), Outcome.DATA, '5 bytes held: still below the bound');
  assert.equal(h.responder.queuedBytes, 11);
  h.take();
  assert.equal(h.segment({ flags: TcpFlag.ACK | TcpFlag.PSH, data: query.subarray(11) }), Outcome.SOFT_STATE_FULL);
  assert.equal(h.take().length, 0, 'not acknowledged');
  h.reconnect();
  h.handshake();
  assert.equal(
    h.segment({ flags: TcpFlag.ACK | TcpFlag.PSH, data: framedQuery('www.lab.test', 2) }),
    Outcome.SOFT_STATE_FULL,
    'nor a new connection of the same source',
  );
  assert.equal(h.responder.events[TcpEvent.SOURCE_FULL], 2);
});

test('a message must be whole within messageDeadlineMs of its first byte, however it is trickled', () => {
  const h = new Harness({ config: { messageDeadlineMs: 1000 } });
  h.handshake();
  const query = framedQuery('www.lab.test', 1);
  h.send(query.subarray(0, 5));
  h.take();
  assert.equal(h.responder.flows.size, 1);
  // A byte every 400 ms keeps the flow busy, not alive.
  for (let at = 6; at <= 7; at++) {
    h.nowMs += 400;
    h.send(query.subarray(at - 1, at));
    h.responder.tick(h.nowMs);
    assert.equal(h.responder.flows.size, 1, `${at} bytes in`);
  }
  h.take();
  h.nowMs += 200;
  h.responder.tick(h.nowMs);
  checkPacket(h.take()[0]!, h.ip(), tcp(flags(TcpFlag.RST)));
  assert.equal(h.responder.flows.size, 0);
  assert.equal(h.responder.queuedBytes, 0);
  assert.equal(h.responder.events[TcpEvent.DEADLINES_MISSED], 1);
});

test('a client that keeps its window closed on its answers is probed, then dropped after zeroWindowLimitMs', () => {
  const h = new Harness({ config: { zeroWindowLimitMs: 5000 } });
  const isn = h.handshake();
  h.send(framedQuery('www.lab.test', 1));
  const flow = h.messages[0]!.flow;
  const big = h.answerFor(h.messages[0]!.bytes.subarray(2), 3000);
  h.responder.answer(flow, big, 0, big.length);
  const first = decode(h.take()[0]!);
  // The client takes the first segment and closes its window.
  h.ackTo(isn + 1 + first.payloadLength, 0);
  h.take();
  let probes = 0;
  for (let step = 0; step < 100 && h.responder.flows.size > 0; step++) {
    h.nowMs += 100;
    h.responder.tick(h.nowMs);
    for (const packet of h.take().map(decode)) {
      if (packet.flags & TcpFlag.RST) continue;
      probes++;
      h.ackTo(isn + 1 + first.payloadLength, 0); // acknowledged, window still 0
    }
  }
  assert.ok(probes >= 2, `${probes} window probes`);
  assert.equal(h.responder.flows.size, 0, 'dropped after the limit');
  assert.equal(h.responder.events[TcpEvent.DEADLINES_MISSED], 1);
  // The limit counts from the first probe, one RTO (200 ms, doubled once by the answer's own timer) after the window closed.
  const elapsed = h.nowMs - NOW_MS;
  assert.ok(elapsed >= 5000 && elapsed <= 5000 + 1000, `dropped ${elapsed} ms after the window closed`);
});

/** The answer to the last message the application got, given at once. */
function answerLast(h: Harness): void {
  const { flow, bytes } = h.messages.at(-1)!;
  const answer = h.answerFor(bytes.subarray(2));
  h.responder.answer(flow, answer, 0, answer.length);
}

/** What a client does after its handshake, and then nothing more: each leaves its flow one kind of timer to run. */
const TIMER_SCENARIOS: Record<string, (h: Harness) => void> = {
  // An answer owed and never given: the ACK held back for it goes alone after delayedAckMs.
  'delayed ACK': (h) => void h.send(framedQuery('www.lab.test', 1)),
  // An answer never acknowledged: retransmitted with back-off, then the flow is aborted.
  retransmission: (h) => {
    h.send(framedQuery('www.lab.test', 1));
    answerLast(h);
  },
  // The client's window closed from its query on: probed, then dropped after zeroWindowLimitMs.
  'window probe': (h) => {
    const query = framedQuery('www.lab.test', 1);
    h.segment({ flags: TcpFlag.ACK | TcpFlag.PSH, data: query, window: 0 });
    h.clientSeq += query.length;
    answerLast(h);
  },
  // Part of a query and never the rest: dropped messageDeadlineMs after its first byte.
  'message deadline': (h) => void h.send(framedQuery('www.lab.test', 1).subarray(0, 5)),
};
const TIMER_CONFIG: Partial<ResponderConfig> = {
  messageDeadlineMs: 1000,
  zeroWindowLimitMs: 2000,
  maxRetransmits: 4,
  maxFlowsPerSource: 1000,
};
/** Long enough for every scenario's flow to be gone (the retransmissions' back-off ends at 6.2 s). */
const TIMER_SCENARIO_MS = 7000;

/**
 * Runs the scenarios on connections that start `startsMs` apart (scenario i % 4 on the i-th),
 * ticking every millisecond; returns each connection's packets after its handshake as
 * "ms since its start: flags, sequence number from its ISN, payload length".
 */
function timerTraces(connections: number, startsMs: number): { scenario: string; trace: string[] }[] {
  const h = new Harness({ config: TIMER_CONFIG });
  const names = Object.keys(TIMER_SCENARIOS);
  const byPort = new Map<number, { scenario: string; startMs: number; isn: number; trace: string[] }>();
  const record = (): void => {
    for (const seg of h.take().map(decode)) {
      const c = byPort.get(seg.dstPort)!;
      c.trace.push(`${h.nowMs - c.startMs}: ${seg.flags} ${(seg.seq - c.isn) >>> 0} ${seg.payloadLength}`);
    }
  };
  const endMs = NOW_MS + (connections - 1) * startsMs + TIMER_SCENARIO_MS;
  for (let i = 0; h.nowMs <= endMs; h.nowMs++) {
    for (; i < connections && NOW_MS + i * startsMs === h.nowMs; i++) {
      if (i > 0) h.reconnect();
      const isn = h.handshake();
      const scenario = names[i % names.length]!;
      byPort.set(h.clientPort, { scenario, startMs: h.nowMs, isn, trace: [] });
      TIMER_SCENARIOS[scenario]!(h);
      record();
    }
    h.responder.tick(h.nowMs);
    record();
  }
  const traces = [...byPort.values()];
  const owed = traces.filter((c) => c.scenario === 'delayed ACK').length;
  assert.equal(h.responder.flows.size, owed, 'every flow is gone but those still owed an answer');
  return traces;
}

test('each timer fires at its time: delayed ACK, retransmission with back-off, window probes, message deadline', () => {
  const solo = new Map(timerTraces(4, TIMER_SCENARIO_MS).map(({ scenario, trace }) => [scenario, trace]));
  const [ACK, PSH_ACK, RST] = [TcpFlag.ACK, TcpFlag.ACK | TcpFlag.PSH, TcpFlag.RST];
  assert.deepEqual(solo.get('delayed ACK'), [`20: ${ACK} 1 0`]);
  const answer = Number(solo.get('retransmission')![0]!.split(' ').at(-1));
  assert.deepEqual(
    solo.get('retransmission'),
    [0, 200, 600, 1400, 3000].map((ms) => `${ms}: ${PSH_ACK} 1 ${answer}`).concat(`6200: ${RST} ${1 + answer} 0`),
  );
  // The first probe at the first tick (nothing was sent before: the RTO counts from time 0); at
  // its RTO (400 ms) the flow goes back and finds the window still closed, so it sends nothing;
  // the next probe one RTO (800 ms) later; RST zeroWindowLimitMs after the first probe.
  assert.deepEqual(solo.get('window probe'), [`0: ${ACK} 1 1`, `1200: ${ACK} 1 1`, `2000: ${RST} 2 0`]);
  assert.deepEqual(solo.get('message deadline'), [`0: ${ACK} 1 0`, `1000: ${RST} 1 0`]);

  // 200 connections started 7 ms apart, their timers in every slot of the wheel and sharing
  // slots with each other: each connection's packets come at the same times as when alone.
  for (const { scenario, trace } of timerTraces(200, 7)) assert.deepEqual(trace, solo.get(scenario), scenario);
});

test('a tick looks at the flows whose timers are due, however many flows are held', () => {
  const visits = (held: number): number => {
    const h = new Harness({ config: { maxFlows: held + 10, maxFlowsPerSource: held + 10 } });
    // `held` clients send the start of a query over one second, then nothing: their deadlines
    // (messageDeadlineMs, 10 s) are far off.
    for (let i = 0; i < held; i++) {
      h.nowMs = NOW_MS + Math.floor((i * 1000) / held);
      if (i > 0) h.reconnect();
      h.handshake();
      h.send(framedQuery('www.lab.test', i).subarray(0, 5));
      h.take(); // its ACK
    }
    // Five more send whole queries whose answers do not come: their held ACKs come due 20 ms later.
    h.nowMs = NOW_MS + 2000;
    for (let i = 0; i < 5; i++) {
      h.reconnect();
      h.handshake();
      h.send(framedQuery('www.lab.test', i));
    }
    assert.equal(h.take().length, 0, 'their ACKs wait for the answers');
    const before = h.responder.events[TcpEvent.TIMER_VISITS]!;
    for (let at = h.nowMs; at < h.nowMs + 1000; at += 10) h.responder.tick(at);
    assert.equal(h.take().length, 5, 'the five held ACKs');
    assert.equal(h.responder.flows.size, held + 5);
    return h.responder.events[TcpEvent.TIMER_VISITS]! - before;
  };
  assert.equal(visits(10_000), 5);
  assert.equal(visits(10), 5);
});

for (const remembered of [true, false]) {
  test(`a delayed duplicate of an old query, arriving after its flow was released, is not answered again (${remembered ? 'numbers remembered' : 'without the table'})`, () => {
    const h = new Harness({ answerAtOnce: true, config: remembered ? {} : { recentConnections: 0 } });
    const isn = h.handshake();
    const first = framedQuery('www.lab.test', 1);
    const firstSeq = h.clientSeq;
    h.send(first);
    const answerLength = decode(h.take()[0]!).payloadLength;
    h.ackTo(isn + 1 + answerLength);
    const second = framedQuery('missing.lab.test', 2);
    h.send(second);
    const secondLength = decode(h.take()[0]!).payloadLength;
    h.ackTo(isn + 1 + answerLength + secondLength);
    assert.equal(h.responder.flows.size, 0);

    // The network delivers an old copy of the first query.
    const duplicate = h.segment({ flags: TcpFlag.ACK | TcpFlag.PSH, data: first, seq: firstSeq, ack: isn + 1 });
    if (remembered) {
      // Known to be old: acknowledged where the stream stands, nothing more (RFC 9293 §3.10.7.4).
      assert.equal(duplicate, Outcome.DUPLICATE);
      checkPacket(
        h.take()[0]!,
        h.ip(),
        tcp(flags(TcpFlag.ACK), seqNum((isn + 1 + answerLength + secondLength) >>> 0), ackNum(h.clientSeq), payloadLength(0)),
      );
      assert.equal(h.messages.length, 2);
    } else {
      // It looks like a new request; its answer goes to sequence numbers the client already holds.
      assert.equal(duplicate, Outcome.DATA);
      h.take();
    }
    // The client, which has all our data, sends its next query acknowledging all of it.
    const third = framedQuery('www.lab.test', 3);
    assert.equal(h.send(third), Outcome.DATA);
    const [answer] = h.take();
    checkPacket(
      answer!,
      h.ip(),
      tcp(seqNum((isn + 1 + answerLength + secondLength) >>> 0), ackNum(h.clientSeq), payload(h.answerFor(third.subarray(2)))),
    );
    assert.equal(h.responder.events[TcpEvent.STALE_FLOWS], remembered ? 0 : 1);
  });
}

test('the ACK of a request waits for its answer to carry it, and goes alone once the delay passes', () => {
  const h = new Harness();
  h.handshake();
  const q = framedQuery('www.lab.test', 1);
  assert.equal(h.send(q), Outcome.DATA);
  assert.equal(h.take().length, 0, 'no bare ACK while the answer is owed');
  // The answer comes within the delay: one segment, carrying both.
  const answer = h.answerFor(q.subarray(2));
  h.nowMs += 5;
  h.responder.answer(h.messages[0]!.flow, answer, 0, answer.length);
  checkPacket(h.take()[0]!, h.ip(), tcp(ackNum(h.clientSeq), payload(answer)));
  h.nowMs += 100;
  h.responder.tick(h.nowMs);
  assert.equal(h.take().length, 0, 'nothing more to acknowledge');

  // A slow answer: the ACK goes alone after 20 ms.
  const slow = framedQuery('www.lab.test', 2);
  h.send(slow);
  h.nowMs += 19;
  h.responder.tick(h.nowMs);
  assert.equal(h.take().length, 0);
  h.nowMs += 1;
  h.responder.tick(h.nowMs);
  checkPacket(h.take()[0]!, h.ip(), tcp(flags(TcpFlag.ACK), ackNum(h.clientSeq), payloadLength(0)));

  // Two requests in a row: the second is acknowledged at once.
  h.send(framedQuery('www.lab.test', 3));
  assert.equal(h.take().length, 0);
  h.send(framedQuery('www.lab.test', 4));
  checkPacket(h.take()[0]!, h.ip(), tcp(flags(TcpFlag.ACK), ackNum(h.clientSeq)));
});

test('a streamed answer: answerPart fills the send buffer, onDrain comes once ACKs halve it, and closeWhenAnswered sends FIN after the last part', () => {
  const h = new Harness({ config: { sendBufferBytes: 8000 } });
  const isn = h.handshake();
  h.send(framedQuery('www.lab.test', 1));
  const flow = h.messages[0]!.flow;
  const part = new Uint8Array(3000).fill(0x61);
  assert.equal(h.responder.answerPart(flow, part, 0, part.length), true);
  assert.equal(h.responder.answerPart(flow, part, 0, part.length), true);
  assert.equal(h.responder.answerPart(flow, part, 0, part.length), false, '9000 bytes queued ≥ 8000');
  const sent = h.take().map(decode);
  assert.ok(
    sent.every((seg) => seg.payloadLength <= 1448),
    'segments of the client MSS',
  );
  let acked = isn + 1;
  // ACK the first 4000 bytes: 5000 left, more than half the buffer: no drain yet.
  acked += 4000;
  h.ackTo(acked);
  assert.equal(h.drains.length, 0);
  acked += 1000;
  h.ackTo(acked);
  assert.deepEqual(h.drains, [flow], 'drained to 4000 = half');
  h.responder.closeWhenAnswered(flow, h.nowMs);
  h.responder.answer(flow, part, 0, 100);
  const rest = h.take().map(decode);
  assert.ok(rest.at(-1)!.flags & TcpFlag.FIN, 'FIN after the last part');
  h.ackTo(isn + 1 + 9100 + 1);
  assert.equal(h.responder.flows.size, 0);
  assert.equal(h.responder.queuedBytes, 0);
});

test('a flow owes at most maxPipelined answers: further queries wait out of the window and go on as answers are given', () => {
  const h = new Harness({ config: { maxPipelined: 3 } });
  h.handshake();
  const queries = [1, 2, 3, 4, 5].map((id) => framedQuery('www.lab.test', id));
  h.send(Buffer.concat(queries));
  assert.equal(h.messages.length, 3, 'three handed over, two held');
  assert.equal(h.responder.events[TcpEvent.PIPELINE_FULL], 1);
  assert.equal(h.responder.queuedBytes, queries[3]!.length + queries[4]!.length);
  const flow = h.messages[0]!.flow;
  const answer = h.answerFor(h.messages[0]!.bytes.subarray(2));
  h.responder.answer(flow, answer, 0, answer.length);
  assert.equal(h.messages.length, 4, 'an answer given: the next query goes on');
  // The answer's segment keeps the window's right edge where the handshake put it: what the
  // queries handed over freed is less than a segment (receiver silly-window avoidance, RFC 9293
  // §3.8.6.2.2), so the window is 65,535 less all five queries.
  const all = queries.reduce((sum, q) => sum + q.length, 0);
  checkPacket(h.take().at(-1)!, h.ip(), tcp(window(65535 - all), payloadLength(answer.length)));
  for (let i = 1; i < 4; i++) {
    const next = h.answerFor(h.messages[i]!.bytes.subarray(2));
    h.responder.answer(flow, next, 0, next.length);
  }
  // Nothing held: the whole window again.
  checkPacket(h.take().at(-1)!, h.ip(), tcp(window(65535)));
  assert.equal(h.messages.length, 5);
  assert.equal(flow.receiveQueue.length, 0, 'nothing held any more');
  assert.deepEqual(
    h.messages.map((m) => m.bytes),
    queries,
    'in order',
  );
});

test('a flow whose send buffer is full is handed no more queries until the client acknowledges', () => {
  const h = new Harness({ config: { sendBufferBytes: 200 } });
  const isn = h.handshake();
  h.send(framedQuery('www.lab.test', 1));
  const flow = h.messages[0]!.flow;
  const big = h.answerFor(h.messages[0]!.bytes.subarray(2), 500);
  h.responder.answer(flow, big, 0, big.length);
  h.take();
  h.send(framedQuery('www.lab.test', 2));
  assert.equal(h.messages.length, 1, 'held: 500 unacknowledged bytes ≥ the 200-byte send buffer');
  h.ackTo(isn + 1 + big.length);
  assert.equal(h.messages.length, 2, 'the ACK made room: the query goes on');
});

test('a client FIN after pipelined queries: the whole ones held back are still answered, a partial one is dropped', () => {
  const h = new Harness({ config: { maxPipelined: 1 }, answerAtOnce: false });
  h.handshake();
  const queries = [1, 2].map((id) => framedQuery('www.lab.test', id));
  const partial = framedQuery('www.lab.test', 3).subarray(0, 6);
  h.send(Buffer.concat([...queries, partial]), TcpFlag.FIN);
  assert.equal(h.messages.length, 1);
  assert.equal(h.responder.queuedBytes, queries[1]!.length, 'the partial query is gone, the whole one waits');
  const flow = h.messages[0]!.flow;
  const first = h.answerFor(h.messages[0]!.bytes.subarray(2));
  h.responder.answer(flow, first, 0, first.length);
  assert.equal(h.messages.length, 2);
  const second = h.answerFor(h.messages[1]!.bytes.subarray(2));
  h.responder.answer(flow, second, 0, second.length);
  const sent = h.take().map(decode);
  assert.ok(sent.at(-1)!.flags & TcpFlag.FIN, 'our FIN after the last answer');
});

test('after closeWhenAnswered, what the client sends is acknowledged but not delivered (RFC 9112 §9.6), and a partial request does not hold back the FIN', () => {
  const h = new Harness();
  h.handshake();
  h.send(framedQuery('www.lab.test', 1));
  const flow = h.messages[0]!.flow;
  const late = framedQuery('www.lab.test', 2);
  h.send(late.subarray(0, 5)); // half a request, held in the receive queue
  assert.ok(h.responder.queuedBytes > 0);
  h.responder.closeWhenAnswered(flow, h.nowMs);
  assert.equal(h.responder.queuedBytes, 0, 'the partial request is dropped');
  h.take();
  h.send(late.subarray(5));
  h.send(framedQuery('www.lab.test', 3));
  assert.equal(h.messages.length, 1, 'nothing after the close request reaches the application');
  checkPacket(h.take().at(-1)!, h.ip(), tcp(flags(TcpFlag.ACK), ackNum(h.clientSeq)));
  const answer = h.answerFor(h.messages[0]!.bytes.subarray(2));
  h.responder.answer(flow, answer, 0, answer.length);
  assert.ok(decode(h.take().at(-1)!).flags & TcpFlag.FIN, 'FIN after the answer');
});

test("after the secret is rotated, a connection opened before keeps the TSval it had (a new key's could be smaller: the client's PAWS would drop us)", () => {
  const h = new Harness({ answerAtOnce: true });
  h.handshake();
  const before = h.token;
  h.send(framedQuery('www.lab.test', 1));
  h.ackTo(h.clientAck + decode(h.take()[0]!).payloadLength);
  h.cookies.rotate(Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i));
  // On the idle connection, and on the flow its next request makes.
  h.send(framedQuery('www.lab.test', 2));
  const [answer] = h.take();
  checkPacket(answer!, h.ip(), tcp(timestamps({ val: before, ecr: h.clientTsVal - 1 })));
  // A connection opened after the rotation gets tokens of the new key.
  const fresh = new Harness({ answerAtOnce: true });
  fresh.cookies.rotate(Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i));
  fresh.handshake();
  assert.notEqual(fresh.token, before);
});

test('a flow silent for several periods steps its TSval one period at a time, so the client never sees it go back (RFC 7323 §5 PAWS)', () => {
  const h = new Harness();
  h.handshake();
  h.send(framedQuery('www.lab.test', 1));
  h.send(framedQuery('www.lab.test', 2));
  h.take();
  const [first, second] = h.messages;
  let last = h.token;
  // The answers come three and four periods (128 s) later: each carries the next period's token.
  for (const [i, message] of [first!, second!].entries()) {
    h.nowMs += 3 * 128_000;
    const answer = h.answerFor(message.bytes.subarray(2));
    h.responder.answer(message.flow, answer, 0, answer.length);
    const [segment] = h.take();
    const tsVal = decode(segment!).tsVal;
    assert.ok(((tsVal - last) | 0) > 0, `answer ${i}: TSval ahead of the client's last`);
    assert.equal(tsVal >>> 30, ((last >>> 30) + 1) & 3, `answer ${i}: one period on`);
    last = tsVal;
  }
});

test('a flow proved by its token alone that nobody acknowledges resends once and gives up: a forged request draws three segments', () => {
  const h = new Harness({ config: { recentConnections: 0 } });
  const isn = h.handshake();
  h.send(framedQuery('www.lab.test', 1));
  const firstAnswer = h.answerFor(h.messages[0]!.bytes.subarray(2));
  h.responder.answer(h.messages[0]!.flow, firstAnswer, 0, firstAnswer.length);
  h.ackTo(isn + 1 + firstAnswer.length);
  h.take();
  // A segment on the idle connection with its token, from someone who does not receive what we send.
  h.send(framedQuery('www.lab.test', 2));
  const big = h.answerFor(h.messages[1]!.bytes.subarray(2), 5000);
  h.responder.answer(h.messages[1]!.flow, big, 0, big.length);
  const sent = h.take().map(decode);
  for (let step = 0; step < 200; step++) {
    h.nowMs += 100;
    h.responder.tick(h.nowMs);
    sent.push(...h.take().map(decode));
  }
  const data = sent.filter((seg) => seg.payloadLength > 0);
  assert.equal(data.length, 3, 'two segments, one resent');
  assert.ok((sent.at(-1)!.flags & TcpFlag.RST) !== 0, 'then RST');
  assert.equal(h.responder.flows.size, 0);
});

/** A path MTU table whose route lookup gives `mtu`, counting lookups. */
function routeOf(mtu: number): PathMtuTable {
  return new PathMtuTable(() => mtu, SECRET);
}

/** Plays a query and answers it with a TXT answer of `size` bytes; returns the answer. */
function bigAnswer(h: Harness, size: number): Buffer {
  const query = framedQuery('big.lab.test', 7);
  h.send(query);
  const answer = h.answerFor(query.subarray(2), size);
  h.responder.answer(h.messages.at(-1)!.flow, answer, 0, answer.length);
  return answer;
}

/** The TCP payload lengths and IP packet lengths of `packets`. */
function sizes(packets: Uint8Array[]): { payloads: number[]; packets: number[] } {
  return { payloads: packets.map((p) => decode(p).payloadLength), packets: packets.map((p) => p.length) };
}

test('segment size: the MTU toward the client cuts segments below its MSS (IPv4 and IPv6), asked once per destination', () => {
  for (const synIndex of [Packet.V4_SYN, Packet.V6_SYN]) {
    const route = routeOf(1400);
    const h = new Harness({ synIndex, pathMtus: route });
    h.handshake();
    const answer = bigAnswer(h, 4400);
    const sent = sizes(h.take());
    const ipHeader = synIndex === Packet.V4_SYN ? 20 : 40;
    const payload = 1400 - ipHeader - 20 - 12;
    assert.ok(sent.payloads.length >= 3);
    assert.ok(
      sent.packets.every((n) => n <= 1400),
      `packets fit 1400: ${sent.packets}`,
    );
    assert.equal(sent.payloads[0], payload);
    assert.equal(
      sent.payloads.reduce((a, b) => a + b, 0),
      Math.min(answer.length, 10 * payload),
    );
    assert.equal(h.responder.events[TcpEvent.SEGMENT_SIZE_FROM_ROUTE], 1);
    h.reconnect();
    h.handshake();
    bigAnswer(h, 100);
    assert.equal(route.lookups, 1, 'the route is asked once for the destination');
  }
});

test('a too-big report quoting an unacknowledged segment cuts the flow to the MTU and resends at once; forged ones are refused', () => {
  const route = routeOf(1500);
  const h = new Harness({ pathMtus: route });
  const isn = h.handshake();
  bigAnswer(h, 4000);
  const sent = h.take();
  assert.equal(sizes(sent).payloads[0], 1448);
  const quoted = new Segment();
  const first = Uint8Array.from(sent[0]!);
  const client = Uint8Array.from(first.subarray(16, 20));

  // Forged: a sequence number past what was sent, another port, a flow that does not exist.
  const forged = Uint8Array.from(first);
  forged[24] ^= 0x80; // the sequence number's top byte
  assert.ok(quotedSegment(4, forged, 0, 28, quoted));
  assert.equal(h.responder.packetTooBig(quoted, 1280, false, h.nowMs), false);
  const otherPort = Uint8Array.from(first);
  otherPort[23] ^= 1; // the client's port
  assert.ok(quotedSegment(4, otherPort, 0, 28, quoted));
  assert.equal(h.responder.packetTooBig(quoted, 1280, false, h.nowMs), false);
  assert.equal(h.responder.events[TcpEvent.TOO_BIG_REFUSED], 2);
  assert.equal(h.take().length, 0, 'nothing sent for a forged report');
  assert.equal(route.mtuToward(4, client, h.nowMs), 1500, "the destination's MTU is untouched");

  // Ours: the first segment, quoted as a router quotes it (IP header and 8 bytes of TCP).
  assert.ok(quotedSegment(4, first, 0, 28, quoted));
  assert.equal(h.responder.packetTooBig(quoted, 1280, false, h.nowMs), true);
  assert.equal(h.responder.events[TcpEvent.TOO_BIG_TAKEN], 1);
  const again = h.take();
  assert.ok(again.length >= 1);
  checkPacket(again[0]!, h.ip(), tcp(seqNum((isn + 1) >>> 0), payloadLength(1280 - 52)));
  assert.ok(again.every((p) => p.length <= 1280));
  assert.equal(route.mtuToward(4, client, h.nowMs), 1280, 'learned for the destination');
  // The floor: no report takes an IPv4 path below 552 bytes (RFC 1191 §3).
  assert.equal(route.lower(4, client, 68, h.nowMs), 552);
  // It lasts 10 minutes, then the route is asked again.
  assert.equal(route.mtuToward(4, client, h.nowMs + 600_001), 1500);
});

test('RFC 4821 fallback: the second timeout in a row of full-size segments cuts them to the IPv6 minimum', () => {
  const h = new Harness({ pathMtus: routeOf(1500) });
  const isn = h.handshake();
  bigAnswer(h, 4000);
  h.take();
  h.nowMs += 200;
  h.responder.tick(h.nowMs);
  checkPacket(h.take()[0]!, h.ip(), tcp(seqNum((isn + 1) >>> 0), payloadLength(1448)));
  h.nowMs += 400;
  h.responder.tick(h.nowMs);
  checkPacket(h.take()[0]!, h.ip(), tcp(seqNum((isn + 1) >>> 0), payloadLength(1280 - 52)));
  assert.equal(h.responder.events[TcpEvent.SEGMENT_SIZE_FALLBACKS], 1);
});

test('the path MTU table is bounded: a full set gives up its entry expiring first', () => {
  const table = new PathMtuTable(() => 1500, SECRET, { sets: 1, routeTtlMs: 1000, learnedTtlMs: 600_000, fallbackMtu: 1500 });
  const address = new Uint8Array(16);
  for (let i = 0; i < 6; i++) {
    address[3] = i;
    table.mtuToward(4, address, NOW_MS + i);
  }
  assert.equal(table.lookups, 6);
  assert.equal(table.evictions, 2);
  address[3] = 5;
  table.mtuToward(4, address, NOW_MS + 10);
  assert.equal(table.lookups, 6, 'the newest is still held');
  address[3] = 0;
  table.mtuToward(4, address, NOW_MS + 10);
  assert.equal(table.lookups, 7, 'the oldest was given up');
});

// ---------------------------------------------------------------------------------------------
// A request body streaming to the application (an HTTP upload)
// ---------------------------------------------------------------------------------------------

/** curl's real PUT of 2,000 bytes (test/fixtures/http-requests.txt), its head and its body. */
const CURL_PUT = (() => {
  const line = readFileSync(new URL('../../../../test/fixtures/http-requests.txt', import.meta.url), 'utf8')
    .split('\n')
    .find((l) => l.startsWith('curl-put-upload\t'))!;
  const bytes = Buffer.from(line.split('\t')[1]!, 'hex');
  const head = bytes.indexOf('\r\n\r\n') + 4;
  return { head: bytes.subarray(0, head), body: bytes.subarray(head) };
})();

/** A PUT of `size` bytes with curl's fields. */
function putHead(size: number): Buffer {
  return Buffer.from(CURL_PUT.head.toString('latin1').replace('Content-Length: 2000', `Content-Length: ${size}`), 'latin1');
}

/**
 * The HTTP side as the responder sees it: heads framed by request.ts, each one owed an answer;
 * a body (by its Content-Length) taken as it comes and held until the test releases it.
 */
class Uploads implements StreamApplication<Flow> {
  readonly targets: string[] = [];
  readonly received: Buffer[] = [];
  remaining = 0;
  cutOff = 0;
  flow: Flow | null = null;
  harness!: Harness;

  onMessages(flow: Flow, buf: Uint8Array, offset: number, length: number, nowMs: number): void {
    const head = parseRequest(buf, offset, length) as HttpRequest;
    this.flow = flow;
    this.targets.push(head.target);
    this.harness.responder.expectAnswer(flow);
    if (typeof head.body === 'number' && head.body > 0) {
      this.remaining = head.body;
      this.harness.responder.beginBody(flow, nowMs);
    }
  }

  onBody(flow: Flow, buf: Uint8Array, offset: number, length: number): number {
    const n = Math.min(length, this.remaining);
    this.received.push(Buffer.from(buf.subarray(offset, offset + n)));
    this.remaining -= n;
    if (this.remaining === 0) this.harness.responder.endBody(flow);
    return n;
  }

  onBodyCutOff(): void {
    this.cutOff++;
  }

  get body(): Buffer {
    return Buffer.concat(this.received);
  }
}

function uploadHarness(config: Partial<ResponderConfig> = {}): { h: Harness; app: Uploads; isn: number } {
  const app = new Uploads();
  const h = new Harness({ app, config: { messageLength: wholeRequestLength, plausibleStart: plausibleRequestStart, ...config } });
  app.harness = h;
  return { h, app, isn: h.handshake() };
}

/** The ACKs held for an owed answer (20 ms at most) go out: the last packet sent then. */
function lastAfterDelayedAck(h: Harness): Uint8Array {
  h.nowMs += 20;
  h.responder.tick(h.nowMs);
  return h.take().at(-1)!;
}

/** The pattern body of `size` bytes: byte i = i mod 251. */
const bodyOf = (size: number): Buffer => Buffer.from(Array.from({ length: size }, (_, i) => i % 251));

test('a body streams to the application as it arrives, whatever the flow owes, and the window shrinks by what it holds', () => {
  const { h, app } = uploadHarness({ maxPipelined: 1 });
  const body = bodyOf(20_000);
  h.send(Buffer.concat([putHead(body.length), body.subarray(0, 1000)]));
  assert.deepEqual(app.targets, ['/put/upload.txt']);
  // The head was handed over, but freed less than a segment: the right edge stays (receiver SWS avoidance).
  const head = putHead(body.length).length;
  checkPacket(lastAfterDelayedAck(h), h.ip(), tcp(flags(TcpFlag.ACK), ackNum(h.clientSeq), window(65535 - head - 1000)));
  for (let p = 1000; p < body.length; p += 1208) h.send(body.subarray(p, p + 1208));
  assert.deepEqual(app.body, body, 'every byte, in order, though the flow owes its one answer');
  const last = checkPacket(lastAfterDelayedAck(h), h.ip(), tcp(ackNum(h.clientSeq)));
  // The whole body is held: out of the window, and counted as queued bytes.
  assert.equal(last.window, 65535 - head - body.length);
  assert.equal(h.responder.queuedBytes, body.length);
  // The next request after the body is framed as a head again.
  h.send(Buffer.from('GET /next HTTP/1.1\r\nHost: a\r\n\r\n', 'latin1'));
  assert.deepEqual(app.targets, ['/put/upload.txt'], 'held: the flow owes its limit of one answer');
  h.responder.answer(app.flow!, new Uint8Array(0), 0, 0);
  assert.deepEqual(app.targets, ['/put/upload.txt', '/next']);
});

test('the window opens as the application releases the body: a window update once it has grown by a segment and doubled', () => {
  const { h, app } = uploadHarness();
  const body = bodyOf(60_000);
  h.send(putHead(body.length));
  for (let p = 0; p < 60_000; p += 1208) h.send(body.subarray(p, Math.min(p + 1208, 60_000)));
  const closed = checkPacket(lastAfterDelayedAck(h), h.ip(), tcp(ackNum(h.clientSeq)));
  assert.equal(closed.window, 65535 - putHead(body.length).length - 60_000);
  const flow = app.flow!;
  h.responder.releaseBody(flow, 1000, h.nowMs);
  assert.equal(h.take().length, 0, 'less than a segment more: the client is not told (RFC 9293 §3.8.6.2.2)');
  h.responder.releaseBody(flow, 20_000, h.nowMs);
  const update = checkPacket(h.take().at(-1)!, h.ip(), tcp(flags(TcpFlag.ACK), ackNum(h.clientSeq), payloadLength(0)));
  assert.equal(update.window, 65535 - 60_000 + 21_000, 'a window update');
  h.responder.releaseBody(flow, 5000, h.nowMs);
  assert.equal(h.take().length, 0, 'grown by a segment, but not doubled: no update, its data will bring the ACK');
  h.responder.releaseBody(flow, 34_000, h.nowMs);
  const open = checkPacket(h.take().at(-1)!, h.ip(), tcp(flags(TcpFlag.ACK), payloadLength(0)));
  assert.equal(open.window, 65535);
  assert.equal(h.responder.queuedBytes, 0);
});

test('bytes beyond the window left by a held body are not taken: the client sends them again', () => {
  const { h, app } = uploadHarness();
  const body = bodyOf(70_000);
  h.send(putHead(body.length));
  for (let p = 0; p < 65535; p += 1208) h.send(body.subarray(p, Math.min(p + 1208, 65535)));
  assert.equal(app.body.length, 65535, 'a whole window, held');
  h.take();
  const before = h.clientSeq;
  assert.equal(h.send(body.subarray(65535, 66535)), Outcome.DUPLICATE, 'a zero window: nothing taken');
  checkPacket(h.take().at(-1)!, h.ip(), tcp(ackNum(before), window(0)));
  assert.equal(app.body.length, 65535);
  h.responder.releaseBody(app.flow!, 65535, h.nowMs);
  checkPacket(h.take().at(-1)!, h.ip(), tcp(ackNum(before), window(65535)));
  h.clientSeq = before;
  h.send(body.subarray(65535, 66535));
  assert.equal(app.body.length, 66535);
});

test('a body must keep coming: each half window within messageDeadlineMs while the window is open, not while the application holds it', () => {
  const { h, app } = uploadHarness({ messageDeadlineMs: 1000 });
  const body = bodyOf(100_000);
  h.send(putHead(body.length));
  // 40,000 bytes (more than half a window) in 900 ms: the clock starts again.
  for (let p = 0; p < 40_000; p += 1208) h.send(body.subarray(p, Math.min(p + 1208, 40_000)));
  h.nowMs += 900;
  h.responder.tick(h.nowMs);
  assert.equal(h.responder.flows.size, 1);
  // The application holds 40,000 (≥ half the window): its upstream is waited for, for as long as it takes.
  h.nowMs += 5000;
  h.responder.tick(h.nowMs);
  assert.equal(h.responder.flows.size, 1, 'no deadline while the application holds the body up');
  h.responder.releaseBody(app.flow!, 40_000, h.nowMs);
  h.take();
  h.nowMs += 999;
  h.responder.tick(h.nowMs);
  assert.equal(h.responder.flows.size, 1, 'the clock started again at the release');
  // A trickle does not keep it.
  h.send(body.subarray(40_000, 40_100));
  h.nowMs += 1;
  h.responder.tick(h.nowMs);
  assert.equal(h.responder.flows.size, 0, 'dropped');
  checkPacket(h.take().at(-1)!, h.ip(), tcp(flags(TcpFlag.RST)));
  assert.equal(h.responder.events[TcpEvent.DEADLINES_MISSED], 1);
  assert.equal(h.responder.queuedBytes, 0);
});

test('a FIN before the body ends cuts it off: the application hears of it and may still answer', () => {
  const { h, app, isn } = uploadHarness();
  h.send(Buffer.concat([putHead(5000), bodyOf(3000)]));
  assert.equal(h.send(bodyOf(10), TcpFlag.FIN), Outcome.FIN);
  assert.equal(app.cutOff, 1);
  const answer = Buffer.from('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n', 'latin1');
  h.responder.releaseBody(app.flow!, 3010, h.nowMs);
  h.responder.answer(app.flow!, answer, 0, answer.length);
  checkPacket(h.take().at(-1)!, h.ip(), tcp(flags(TcpFlag.ACK | TcpFlag.PSH | TcpFlag.FIN), payload(answer)));
  h.ackTo(isn + 1 + answer.length + 1);
  assert.equal(h.responder.flows.size, 0);
  assert.equal(h.responder.queuedBytes, 0);
});

test('while a body streams, segments beyond a gap are held and taken when it is filled, with an immediate ACK', () => {
  const { h, app } = uploadHarness();
  const body = bodyOf(10_000);
  h.send(putHead(body.length));
  h.take();
  const start = h.clientSeq;
  // Segment 1 is lost; 2, 3 and a duplicate of 3 arrive.
  for (const p of [1208, 2416, 2416]) {
    assert.equal(h.segment({ flags: TcpFlag.ACK, data: body.subarray(p, p + 1208), seq: (start + p) >>> 0 }), Outcome.OUT_OF_ORDER);
    checkPacket(h.take().at(-1)!, h.ip(), tcp(ackNum(start))); // a duplicate ACK for each
  }
  assert.equal(app.body.length, 0, 'nothing delivered across the gap');
  assert.equal(h.responder.queuedBytes, 2 * 1208, 'the two held, once each');
  // The lost segment comes again: it and the two held go on, and the ACK covers all three at once.
  h.segment({ flags: TcpFlag.ACK, data: body.subarray(0, 1208), seq: start });
  checkPacket(h.take().at(-1)!, h.ip(), tcp(ackNum((start + 3 * 1208) >>> 0)));
  assert.deepEqual(app.body, body.subarray(0, 3 * 1208));
  h.clientSeq = (start + 3 * 1208) >>> 0;
  h.send(body.subarray(3 * 1208));
  assert.deepEqual(app.body, body);
  h.responder.releaseBody(app.flow!, body.length, h.nowMs);
  assert.equal(h.responder.queuedBytes, 0);
});

test('outside a body a gap still drops what comes beyond it (requests are small)', () => {
  const { h, app } = uploadHarness();
  h.send(Buffer.from('GET /a HTTP/1.1\r\nHost: a\r\n\r\n', 'latin1'));
  const head = Buffer.from('GET /b HTTP/1.1\r\nHost: a\r\n\r\n', 'latin1');
  assert.equal(h.segment({ flags: TcpFlag.ACK, data: head.subarray(10), seq: (h.clientSeq + 10) >>> 0 }), Outcome.OUT_OF_ORDER);
  assert.equal(h.responder.queuedBytes, 0, 'nothing held');
  h.send(head.subarray(0, 10));
  assert.deepEqual(app.targets, ['/a'], 'the rest is sent again');
});

test('a body the application gives up (closeWhenAnswered): the rest is acknowledged and dropped, even after our FIN, until the FIN is acknowledged', () => {
  const { h, app, isn } = uploadHarness();
  h.send(Buffer.concat([putHead(50_000), bodyOf(1000)]));
  const flow = app.flow!;
  h.responder.closeWhenAnswered(flow, h.nowMs);
  h.responder.releaseBody(flow, 1000, h.nowMs);
  const refusal = Buffer.from('HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n', 'latin1');
  h.responder.answer(flow, refusal, 0, refusal.length);
  checkPacket(h.take().at(-1)!, h.ip(), tcp(flags(TcpFlag.ACK | TcpFlag.PSH | TcpFlag.FIN), payload(refusal)));
  // More of the body, sent before the client read the refusal: no RST that could erase it (RFC 9112 §9.6).
  assert.equal(h.send(bodyOf(1208)), Outcome.DATA);
  checkPacket(h.take().at(-1)!, h.ip(), tcp(flags(TcpFlag.ACK), ackNum(h.clientSeq)));
  assert.equal(app.body.length, 1000, 'not delivered');
  h.ackTo(isn + 1 + refusal.length + 1);
  assert.equal(h.responder.flows.size, 0);
  assert.equal(h.responder.queuedBytes, 0);
});

test('a held body counts against its source’s queued bytes: past the bound no more of it is acknowledged', () => {
  const { h, app } = uploadHarness({ maxQueuedBytesPerSource: 10_000 });
  const body = bodyOf(20_000);
  h.send(putHead(body.length));
  for (let p = 0; p < 10_000; p += 1000) h.send(body.subarray(p, p + 1000));
  h.take();
  const before = h.clientSeq;
  assert.equal(h.send(body.subarray(10_000, 11_000)), Outcome.SOFT_STATE_FULL);
  assert.equal(app.body.length, 10_000);
  h.responder.releaseBody(app.flow!, 10_000, h.nowMs);
  h.clientSeq = before;
  assert.equal(h.send(body.subarray(10_000, 11_000)), Outcome.DATA);
});
