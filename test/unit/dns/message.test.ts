import { test } from 'node:test';
import assert from 'node:assert/strict';
import dnsPacket from 'dns-packet';
import {
  ClientSubnet,
  ednsOptionAt,
  errorAnswer,
  plausibleQueryStart,
  MessageLayout,
  readQueryLayout,
  questionEnd,
  RELAYED_QUERY_GROWTH,
  removeEdnsOption,
  removeOptRecord,
  Rcode,
  sameQuestion,
  SubnetChange,
  wholeMessages,
  withClientSubnet,
  withEdnsOption,
  writeRelayedQuery,
} from '../../../src/dns/message.js';
import { addressBytes } from '../../../src/endpoint.js';

const query = (name: string, id = 0x1234): Buffer =>
  dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] });

const frame = (...messages: Uint8Array[]): Buffer =>
  Buffer.concat(messages.flatMap((m) => [Buffer.from([m.length >> 8, m.length & 0xff]), m]));

test('wholeMessages counts only complete length-prefixed messages (RFC 7766 §8)', () => {
  const a = query('www.lab.test');
  const b = query('big.lab.test');
  const two = frame(a, b);
  assert.equal(wholeMessages(two, 0, two.length), two.length);
  for (let cut = 0; cut < two.length; cut++) {
    const expected = cut >= 2 + a.length ? 2 + a.length : 0;
    assert.equal(wholeMessages(two, 0, cut), expected, `cut at ${cut}`);
  }
  // At an offset inside a larger buffer.
  const padded = Buffer.concat([Buffer.alloc(5, 0xa5), two]);
  assert.equal(wholeMessages(padded, 5, two.length), two.length);
});

test('questionEnd walks real queries and rejects malformed ones without reading past the end', () => {
  const q = query('www.lab.test');
  assert.equal(questionEnd(q, 0, q.length), 12 + 14 + 4);
  for (let cut = 0; cut < 30; cut++) assert.equal(questionEnd(q, 0, cut), -1, `cut at ${cut}`);

  const longLabel = Buffer.from(q);
  longLabel[12] = 64; // label length above 63
  assert.equal(questionEnd(longLabel, 0, longLabel.length), -1);

  const forwardPointer = Buffer.from(q);
  forwardPointer[12] = 0xc0;
  forwardPointer[13] = 40; // points forward: not allowed
  assert.equal(questionEnd(forwardPointer, 0, forwardPointer.length), -1);

  // Names are at most 255 octets on the wire (RFC 1035 §2.3.4): 3 × (1 + 63) + (1 + 61) + 1 = 255.
  const nameOf = (last: number): string => `${'a'.repeat(63)}.`.repeat(3) + 'b'.repeat(last);
  const longest = dnsPacket.encode({ type: 'query', id: 1, questions: [{ type: 'A', name: nameOf(61) }] });
  assert.equal(questionEnd(longest, 0, longest.length), longest.length);
  const tooLong = dnsPacket.encode({ type: 'query', id: 1, questions: [{ type: 'A', name: nameOf(62) }] });
  assert.equal(questionEnd(tooLong, 0, tooLong.length), -1);
});

test('readQueryLayout: responses, several questions and garbage are format errors', () => {
  const layout = new MessageLayout();
  const isRelayableQuery = (buf: Uint8Array, offset: number, length: number): boolean => readQueryLayout(buf, offset, length, layout);
  assert.ok(isRelayableQuery(query('www.lab.test'), 0, query('www.lab.test').length));
  const response = dnsPacket.encode({ type: 'response', id: 1, questions: [{ type: 'A', name: 'x.test' }] });
  assert.equal(isRelayableQuery(response, 0, response.length), false);
  const twoQuestions = dnsPacket.encode({
    type: 'query',
    id: 1,
    questions: [
      { type: 'A', name: 'a.test' },
      { type: 'A', name: 'b.test' },
    ],
  });
  assert.equal(isRelayableQuery(twoQuestions, 0, twoQuestions.length), false);
  assert.equal(isRelayableQuery(Buffer.from('hello, world'), 0, 12), false);
  assert.equal(isRelayableQuery(Buffer.alloc(5), 0, 5), false);
});

test('sameQuestion compares names case-insensitively (RFC 4343) and the rest exactly', () => {
  const a = query('www.lab.test', 1);
  const b = query('WwW.LAB.test', 2);
  assert.ok(sameQuestion(a, 0, a.length, b, 0, b.length));
  const c = query('www.lab.tesu', 1);
  assert.equal(sameQuestion(a, 0, a.length, c, 0, c.length), false);
  const aaaa = dnsPacket.encode({ type: 'query', id: 1, questions: [{ type: 'AAAA', name: 'www.lab.test' }] });
  assert.equal(sameQuestion(a, 0, a.length, aaaa, 0, aaaa.length), false);
});

test('errorAnswer echoes ID, opcode, RD and the question with the given RCODE', () => {
  const q = query('www.lab.test', 0xbeef);
  const answer = dnsPacket.decode(errorAnswer(q, 0, q.length, Rcode.SERVFAIL));
  assert.equal(answer.id, 0xbeef);
  assert.equal(answer.type, 'response');
  assert.equal(answer.flags! & 0xf, Rcode.SERVFAIL);
  assert.equal(answer.flag_rd, true);
  assert.deepEqual(answer.questions, [{ name: 'www.lab.test', type: 'A', class: 'IN' }]);

  const garbage = Buffer.from([0xab, 0xcd, 0x01]);
  const formerr = dnsPacket.decode(errorAnswer(garbage, 0, garbage.length, Rcode.FORMERR));
  assert.equal(formerr.id, 0xabcd);
  assert.equal(formerr.flags! & 0xf, Rcode.FORMERR);
  assert.equal(formerr.questions?.length, 0);
});

test('errorAnswer reads only the header and the question: a query followed by 64 KB that claims 5,000 records still gets its question echoed', () => {
  const q = query('www.lab.test', 0x1234);
  const message = Buffer.concat([q, Buffer.alloc(65_000 - q.length, 0xc0)]);
  message.writeUInt16BE(5000, 10); // ARCOUNT: records that are not there
  const answer = dnsPacket.decode(errorAnswer(message, 0, message.length, Rcode.FORMERR));
  assert.equal(answer.id, 0x1234);
  assert.equal(answer.flags! & 0xf, Rcode.FORMERR);
  assert.deepEqual(answer.questions, [{ name: 'www.lab.test', type: 'A', class: 'IN' }]);
  assert.equal(answer.additionals?.length ?? 0, 0);
});

test('errorAnswer reads the query where it lies in a larger buffer', () => {
  const q = query('www.lab.test', 0x4321);
  const buf = Buffer.concat([Buffer.alloc(37, 0xee), q, Buffer.alloc(11, 0xee)]);
  const answer = dnsPacket.decode(errorAnswer(buf, 37, q.length, Rcode.SERVFAIL));
  assert.equal(answer.id, 0x4321);
  assert.deepEqual(answer.questions, [{ name: 'www.lab.test', type: 'A', class: 'IN' }]);
});

test('plausibleQueryStart accepts real query starts and refuses the same bytes from later offsets', () => {
  const q = frame(query('www.lab.test', 0x8000));
  for (let cut = 0; cut <= q.length; cut++) assert.ok(plausibleQueryStart(q, 0, cut), `prefix of ${cut} bytes`);
  // Every later start that leaves at least a length and an ID and flags to judge (6 bytes).
  for (let start = 2; start <= q.length - 6; start++) {
    assert.equal(plausibleQueryStart(q, start, q.length - start), false, `starting at byte ${start}`);
  }
});

test('sameQuestion folds the name, not the type: HTTPS (0x41) is not TYPE97 (0x61)', () => {
  // QTYPE written into the question's bytes (dns-packet names neither type).
  const q = (name: string, type: number): Buffer => {
    const m = dnsPacket.encode({ type: 'query', id: 1, questions: [{ type: 'A', name }] });
    m.writeUInt16BE(type, m.length - 4);
    return m;
  };
  assert.ok(sameQuestion(q('WWW.lab.test', 65), 0, q('WWW.lab.test', 65).length, q('www.LAB.test', 65), 0, q('www.LAB.test', 65).length));
  assert.ok(!sameQuestion(q('www.lab.test', 65), 0, q('www.lab.test', 65).length, q('www.lab.test', 97), 0, q('www.lab.test', 97).length));
});

test('EDNS options: one running past its OPT record is not found (nor removed); an answer is never made longer than 65,535 bytes', () => {
  const query = dnsPacket.encode({
    type: 'query',
    id: 1,
    questions: [{ type: 'A', name: 'lab.test' }],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, options: [{ code: 11 }] } as unknown as dnsPacket.Answer],
  });
  assert.ok(ednsOptionAt(query, 0, query.length, 11) > 0);
  // The option's length field says 0xffff, past the 4-byte record.
  const broken = Buffer.from(query);
  broken.writeUInt16BE(0xffff, broken.length - 2);
  assert.equal(ednsOptionAt(broken, 0, broken.length, 11), -1);
  assert.equal(removeEdnsOption(broken, 0, broken.length, 11), broken.length);
  const big = Buffer.alloc(0xffff - 3);
  query.copy(big);
  const out = new Uint8Array(0x10000 + 16);
  assert.equal(withEdnsOption(big, 0, big.length, 11, 1280, out), -1, 'past 65,535 bytes');
  assert.equal(withEdnsOption(query, 0, query.length, 11, 1280, out), query.length + 6);
});

/** Real queries as the clients sent them over TCP (captured from a listener on loopback, length prefix removed). */
const CAPTURED = {
  /** dig +tcp +keepalive +subnet=192.0.2.77/24 +cookie=0102030405060708 www.lab.test A: ECS, COOKIE, keepalive. */
  digEdns: Buffer.from(
    '7bd00120000100000000000103777777036c61620474657374000001000100002904d000000000001b' +
      '0008000700011800c00002' +
      '000a00080102030405060708' +
      '000b0000',
    'hex',
  ),
  /** dig +tcp +noedns www.lab.test A: no OPT record. */
  digPlain: Buffer.from('99e50120000100000000000003777777036c616204746573740000010001', 'hex'),
  /** kdig +tcp +subnet=2001:db8:1234::/48 www.lab.test AAAA. */
  kdigSubnet: Buffer.from(
    '20b30120000100000000000103777777036c6162047465737400001c0001000029100000000000000e0008000a0002300020010db81234',
    'hex',
  ),
};

/** The client subnet `writeRelayedQuery` gets for a client at `address`, cut to `prefix` bits. */
function subnetFor(address: string, prefix: number, override = false): ClientSubnet {
  const subnet = new ClientSubnet();
  const bytes = addressBytes(address);
  subnet.family = bytes.length === 4 ? 1 : 2;
  subnet.address.set(bytes);
  subnet.sourcePrefixLength = prefix;
  subnet.override = override;
  return subnet;
}

/** Reads the layout of `query`, writes its relayed copy after 7 bytes of 0xa5 garbage, and checks the layout left matches the copy's own. */
function relay(query: Buffer, subnet: ClientSubnet | null): { out: Buffer; layout: MessageLayout } {
  const at = 7;
  const padded = Buffer.concat([Buffer.alloc(at, 0xa5), query]);
  const layout = new MessageLayout();
  assert.ok(readQueryLayout(padded, at, query.length, layout));
  const out = Buffer.alloc(query.length + RELAYED_QUERY_GROWTH + 8, 0xa5);
  const n = writeRelayedQuery(padded, at, query.length, layout, subnet, out);
  assert.ok(n > 0, 'rewritten');
  assert.ok(
    out.subarray(n).every((b) => b === 0xa5),
    'nothing written past the copy',
  );
  const copy = out.subarray(0, n);
  const reread = new MessageLayout();
  assert.ok(readQueryLayout(copy, 0, n, reread));
  reread.subnetChange = layout.subnetChange;
  assert.deepEqual(reread, layout, 'the layout describes the copy');
  return { out: Buffer.from(copy), layout };
}

test('readQueryLayout finds the OPT record and its options in one walk of a real dig query', () => {
  const layout = new MessageLayout();
  assert.ok(readQueryLayout(CAPTURED.digEdns, 0, CAPTURED.digEdns.length, layout));
  assert.deepEqual(
    { ...layout },
    {
      questionEnd: 30,
      recordsEnd: CAPTURED.digEdns.length,
      optAt: 30,
      optionsAt: 41,
      optionsEnd: 68,
      clientSubnetAt: 41,
      keepaliveAt: 64,
      signed: false,
      subnetChange: SubnetChange.NONE,
    },
  );
  assert.ok(readQueryLayout(CAPTURED.digPlain, 0, CAPTURED.digPlain.length, layout));
  assert.deepEqual([layout.optAt, layout.recordsEnd], [-1, CAPTURED.digPlain.length]);
  // Cut anywhere in its records: still relayable (the question is whole), but the records do not parse.
  for (let cut = 30; cut < CAPTURED.digEdns.length; cut++) {
    assert.ok(readQueryLayout(CAPTURED.digEdns, 0, cut, layout), `cut at ${cut}`);
    assert.equal(layout.recordsEnd, -1, `cut at ${cut}`);
  }
  // An option running past its record: the OPT record does not parse either.
  const broken = Buffer.from(CAPTURED.digEdns);
  broken.writeUInt16BE(0x00ff, 43);
  assert.ok(readQueryLayout(broken, 0, broken.length, layout));
  assert.deepEqual([layout.optAt, layout.recordsEnd], [-1, -1]);
});

test('writeRelayedQuery: edns-tcp-keepalive left out (RFC 7828 §3.2.1), all else as the client sent it', () => {
  const { out, layout } = relay(CAPTURED.digEdns, null);
  assert.equal(out.toString('hex'), CAPTURED.digEdns.subarray(0, 64).toString('hex').replace('001b0008', '00170008'));
  assert.equal(layout.subnetChange, SubnetChange.NONE);
  // With a client subnet to give, a client's own option is kept as it is (dnsdist's default).
  const kept = relay(CAPTURED.digEdns, subnetFor('198.18.7.129', 24));
  assert.equal(kept.out.toString('hex'), out.toString('hex'));
  assert.equal(kept.layout.subnetChange, SubnetChange.NONE);
});

test('writeRelayedQuery: a query without EDNS gets an OPT record with the client subnet (RFC 7871 §6, RFC 6891 §6.1.2)', () => {
  const { out, layout } = relay(CAPTURED.digPlain, subnetFor('198.18.7.129', 24));
  assert.equal(
    out.toString('hex'),
    `${CAPTURED.digPlain.subarray(0, 10).toString('hex')}0001${CAPTURED.digPlain.subarray(12).toString('hex')}` +
      '00002904d000000000000b' +
      '0008000700011800c61207',
  );
  assert.equal(layout.subnetChange, SubnetChange.OPT_ADDED);
  // Prefix lengths that end inside an octet: its trailing bits cleared; 0: no address at all.
  assert.equal(relay(CAPTURED.digPlain, subnetFor('198.18.7.129', 20)).out.subarray(-7).toString('hex'), '00011400c61200');
  assert.equal(relay(CAPTURED.digPlain, subnetFor('198.18.7.129', 0)).out.subarray(-8).toString('hex'), '0008000400010000');
  const v6 = relay(CAPTURED.digPlain, subnetFor('2001:2:0:ab12:34::1', 56)).out;
  assert.equal(v6.subarray(-15).toString('hex'), '0008000b00023800200100020000ab');
});

test('writeRelayedQuery with override: the client option replaced, never longer than the client allowed (RFC 7871 §7.1.1, §7.1.3)', () => {
  const { out, layout } = relay(CAPTURED.digEdns, subnetFor('198.18.7.129', 24, true));
  assert.equal(layout.subnetChange, SubnetChange.REPLACED);
  // COOKIE first, then ours (24, the client's 24): the client's 192.0.2 is gone.
  assert.equal(out.subarray(41).toString('hex'), '000a00080102030405060708' + '0008000700011800c61207');
  const v6 = relay(CAPTURED.kdigSubnet, subnetFor('2001:2:0:ab12:34::1', 56, true)).out;
  assert.equal(v6.subarray(-14).toString('hex'), '0008000a00023000200100020000', 'the client /48, not our /56');
});

test('writeRelayedQuery: a signed query, one whose records do not parse, or one with nothing to change goes as it is', () => {
  const tsig = Buffer.from('0000fa00ff00000000000400000000', 'hex');
  const signed = Buffer.concat([CAPTURED.digPlain, tsig]);
  signed.writeUInt16BE(1, 10);
  const layout = new MessageLayout();
  assert.ok(readQueryLayout(signed, 0, signed.length, layout));
  assert.equal(layout.signed, true);
  const out = new Uint8Array(signed.length + RELAYED_QUERY_GROWTH).fill(0xa5);
  assert.equal(writeRelayedQuery(signed, 0, signed.length, layout, subnetFor('198.18.7.1', 24), out), -1);
  const cut = CAPTURED.digEdns.subarray(0, 50);
  assert.ok(readQueryLayout(cut, 0, cut.length, layout));
  assert.equal(writeRelayedQuery(cut, 0, cut.length, layout, subnetFor('198.18.7.1', 24, true), out), -1);
  // Nothing to change: no client subnet to add, or the client's own kept, and no keepalive.
  assert.ok(readQueryLayout(CAPTURED.digPlain, 0, CAPTURED.digPlain.length, layout));
  assert.equal(writeRelayedQuery(CAPTURED.digPlain, 0, CAPTURED.digPlain.length, layout, null, out), -1);
  assert.ok(readQueryLayout(CAPTURED.kdigSubnet, 0, CAPTURED.kdigSubnet.length, layout));
  assert.equal(writeRelayedQuery(CAPTURED.kdigSubnet, 0, CAPTURED.kdigSubnet.length, layout, subnetFor('2001:2::1', 56), out), -1);
  assert.ok(
    out.every((b) => b === 0xa5),
    'nothing written',
  );
});

/** A resolver's answer with an A record, then OPT (with `options`), then a glue A record after it. */
const answerWithOpt = (options: object[]): Buffer =>
  dnsPacket.encode({
    type: 'response',
    id: 9,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: 'A', name: 'www.lab.test' }],
    answers: [{ type: 'A', name: 'www.lab.test', ttl: 60, data: '198.18.0.100' }],
    additionals: [
      { type: 'OPT', name: '.', udpPayloadSize: 1232, options } as unknown as dnsPacket.Answer,
      { type: 'A', name: 'ns.lab.test', ttl: 60, data: '198.18.0.53' },
    ],
  });

test('removeOptRecord takes the OPT record out of an answer, and only it', () => {
  const answer = answerWithOpt([{ code: 8, family: 1, sourcePrefixLength: 24, scopePrefixLength: 24, ip: '198.18.7.0' }]);
  const n = removeOptRecord(answer, 0, answer.length);
  const decoded = dnsPacket.decode(answer.subarray(0, n));
  assert.deepEqual(
    decoded.additionals!.map((a) => [a.type, a.name]),
    [['A', 'ns.lab.test']],
  );
  assert.equal((decoded.answers![0] as dnsPacket.StringAnswer).data, '198.18.0.100');
  assert.equal(removeOptRecord(answer, 0, n), n, 'none left to remove');
});

test("withClientSubnet gives the client its own option back, scoped to its own prefix (or 0 when the resolver's is 0)", () => {
  const client = Buffer.from('0008000700011400c00002', 'hex'); // 192.0.2.0/20
  const out = new Uint8Array(512);
  for (const [scope, expected] of [
    [24, 20],
    [0, 0],
  ] as const) {
    const answer = answerWithOpt([
      { code: 10, data: Buffer.alloc(16, 1) },
      { code: 8, family: 1, sourcePrefixLength: 20, scopePrefixLength: scope, ip: '198.18.0.0' },
    ]);
    const n = withClientSubnet(answer, 0, answer.length, client, 0, out);
    const opt = dnsPacket.decode(Buffer.from(out.subarray(0, n))).additionals!.find((a) => a.type === 'OPT') as dnsPacket.OptAnswer;
    const [cookie, subnet] = opt.options as { code: number; ip?: string; sourcePrefixLength?: number; scopePrefixLength?: number }[];
    assert.equal(cookie!.code, 10);
    assert.deepEqual([subnet!.ip, subnet!.sourcePrefixLength, subnet!.scopePrefixLength], ['192.0.2.0', 20, expected]);
  }
  const without = answerWithOpt([]);
  assert.equal(withClientSubnet(without, 0, without.length, client, 0, out), -1, 'no option to replace: the answer goes as it is');
});
