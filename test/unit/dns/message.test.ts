import { test } from 'node:test';
import assert from 'node:assert/strict';
import dnsPacket from 'dns-packet';
import {
  ednsOptionAt,
  errorAnswer,
  isRelayableQuery,
  plausibleQueryStart,
  questionEnd,
  removeEdnsOption,
  Rcode,
  sameQuestion,
  wholeMessages,
  withEdnsOption,
} from '../../../src/dns/message.js';

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

test('isRelayableQuery: responses, several questions and garbage are format errors', () => {
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
