/**
 * The packet cache (src/dns/cache.ts) on messages as dns-packet writes them: what is kept and
 * for how long, what keys apart, and how a kept answer is made for the next asker.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dnsPacket from 'dns-packet';
import { PacketCache } from '../../../src/dns/cache.js';

/** RCODEs, which dns-packet takes in the low bits of `flags` (RFC 1035 §4.1.1). */
const RCODE = { SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 } as const;
const SECRET = Uint8Array.from({ length: 16 }, (_, i) => i + 1);
const NOW = 1_764_000_000_000;

interface QueryOptions {
  id?: number;
  name?: string;
  type?: dnsPacket.RecordType;
  rd?: boolean;
  cd?: boolean;
  edns?: boolean;
  dnssecOk?: boolean;
  cookie?: Buffer;
}

function query(o: QueryOptions = {}): Buffer {
  const flags = (o.rd === false ? 0 : dnsPacket.RECURSION_DESIRED) | (o.cd ? dnsPacket.CHECKING_DISABLED : 0);
  const options = o.cookie === undefined ? [] : [{ code: 10, data: o.cookie }];
  return dnsPacket.encode({
    type: 'query',
    id: o.id ?? 1,
    flags,
    questions: [{ type: o.type ?? 'A', name: o.name ?? 'www.lab.test' }],
    additionals:
      o.edns === false && o.cookie === undefined
        ? []
        : [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: o.dnssecOk ? dnsPacket.DNSSEC_OK : 0, options } as dnsPacket.Answer],
  });
}

/** The resolver's answer to `q`: A records with the given TTLs, or what `fields` say. */
function answerTo(q: Buffer, ttls: number[] = [300, 60], fields: Partial<dnsPacket.Packet> = {}): Buffer {
  const asked = dnsPacket.decode(q);
  return dnsPacket.encode({
    type: 'response',
    id: asked.id,
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
    questions: asked.questions,
    answers: ttls.map((ttl, i) => ({ type: 'A', name: asked.questions![0]!.name, ttl, data: `198.18.0.${10 + i}` })),
    additionals: asked.additionals,
    ...fields,
  });
}

function lookup(cache: PacketCache, q: Buffer, nowMs: number): dnsPacket.DecodedPacket | null {
  const n = cache.lookup(q, 0, q.length, nowMs);
  return n < 0 ? null : dnsPacket.decode(Buffer.from(cache.out.subarray(0, n)));
}

test('a kept answer is served with the asker ID and letter case, TTLs counted down, until the smallest TTL runs out', () => {
  const cache = new PacketCache(100, SECRET);
  const first = query({ id: 7 });
  assert.equal(lookup(cache, first, NOW), null);
  assert.ok(cache.store(first, 0, first.length, answerTo(first), 0, answerTo(first).length, NOW));
  const again = query({ id: 4242, name: 'WwW.LaB.TeSt' });
  const served = lookup(cache, again, NOW + 5_500)!;
  assert.equal(served.id, 4242);
  assert.equal(served.questions![0]!.name, 'WwW.LaB.TeSt');
  assert.deepEqual(
    served.answers!.map((a) => (a as dnsPacket.StringAnswer).ttl),
    [295, 55],
  );
  assert.deepEqual(
    served.answers!.map((a) => (a as dnsPacket.StringAnswer).data),
    ['198.18.0.10', '198.18.0.11'],
  );
  assert.ok(lookup(cache, again, NOW + 59_999) !== null);
  assert.equal(lookup(cache, again, NOW + 60_000), null, 'gone with its smallest TTL');
  assert.equal(cache.size, 0);
});

test('RD, CD, DO, EDNS, the type and the EDNS options key apart; the COOKIE option does not, and the asker gets its own', () => {
  const cache = new PacketCache(100, SECRET);
  const base = query({ cookie: Buffer.from('0102030405060708', 'hex') });
  cache.store(base, 0, base.length, answerTo(base), 0, answerTo(base).length, NOW);
  for (const other of [
    query({ rd: false }),
    query({ cd: true }),
    query({ dnssecOk: true }),
    query({ edns: false }),
    query({ type: 'AAAA' }),
  ]) {
    assert.equal(lookup(cache, other, NOW), null, JSON.stringify(dnsPacket.decode(other).flags));
  }
  const ecs = dnsPacket.encode({
    type: 'query',
    id: 1,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: 'A', name: 'www.lab.test' }],
    additionals: [
      {
        type: 'OPT',
        name: '.',
        udpPayloadSize: 1232,
        options: [{ code: 8, family: 1, sourcePrefixLength: 24, ip: '198.18.5.0' }],
      } as dnsPacket.Answer,
    ],
  });
  assert.equal(lookup(cache, ecs, NOW), null, 'a client-subnet option keys apart');
  const otherCookie = Buffer.from('a1a2a3a4a5a6a7a8', 'hex');
  const served = lookup(cache, query({ id: 9, cookie: otherCookie }), NOW)!;
  const opt = served.additionals!.find((a) => a.type === 'OPT') as dnsPacket.OptAnswer;
  const cookie = (opt.options as { code: number; data?: Buffer }[]).find((o) => o.code === 10)!;
  assert.deepEqual(cookie.data!.subarray(0, 8), otherCookie, 'the client cookie is the asker’s');
  assert.ok(lookup(cache, query({ id: 3 }), NOW) !== null, 'no cookie at all: the same entry');
});

test('kept: NXDOMAIN and NODATA for min(SOA TTL, SOA MINIMUM); not kept: SERVFAIL, REFUSED, truncated, negative without SOA', () => {
  const cache = new PacketCache(100, SECRET);
  const soa = (ttl: number, minimum: number): dnsPacket.Answer => ({
    type: 'SOA',
    name: 'lab.test',
    ttl,
    data: { mname: 'ns.lab.test', rname: 'hostmaster.lab.test', serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum },
  });
  const nx = query({ name: 'missing.lab.test' });
  const nxAnswer = answerTo(nx, [], { flags: RCODE.NXDOMAIN, authorities: [soa(3600, 30)] });
  assert.ok(cache.store(nx, 0, nx.length, nxAnswer, 0, nxAnswer.length, NOW));
  assert.equal((lookup(cache, nx, NOW + 29_000) as { rcode?: string }).rcode, 'NXDOMAIN');
  assert.equal(lookup(cache, nx, NOW + 30_000), null);
  const nodata = query({ type: 'MX' });
  const nodataAnswer = answerTo(nodata, [], { authorities: [soa(20, 300)] });
  assert.ok(cache.store(nodata, 0, nodata.length, nodataAnswer, 0, nodataAnswer.length, NOW));
  assert.equal(lookup(cache, nodata, NOW + 19_000)!.answers!.length, 0);
  assert.equal(lookup(cache, nodata, NOW + 20_000), null);

  const q = query({ name: 'x.lab.test' });
  for (const [what, answer] of [
    ['SERVFAIL', answerTo(q, [], { flags: RCODE.SERVFAIL })],
    ['REFUSED', answerTo(q, [], { flags: RCODE.REFUSED })],
    ['truncated', answerTo(q, [60], { flags: dnsPacket.TRUNCATED_RESPONSE })],
    ['NODATA without SOA', answerTo(q, [])],
    ['a zero TTL', answerTo(q, [0, 60])],
  ] as const) {
    assert.equal(cache.store(q, 0, q.length, answer, 0, answer.length, NOW), false, what);
    assert.equal(lookup(cache, q, NOW), null, what);
  }
});

test('TTLs are capped at a day; at capacity the oldest entry goes', () => {
  const cache = new PacketCache(3, SECRET);
  const long = query({ name: 'long.lab.test' });
  cache.store(long, 0, long.length, answerTo(long, [7 * 86_400]), 0, answerTo(long, [7 * 86_400]).length, NOW);
  assert.ok(lookup(cache, long, NOW + 86_399_000) !== null);
  assert.equal(lookup(cache, long, NOW + 86_400_000), null);
  const names = ['a', 'b', 'c', 'd'].map((n) => query({ name: `${n}.lab.test` }));
  for (const q of names) cache.store(q, 0, q.length, answerTo(q), 0, answerTo(q).length, NOW);
  assert.equal(cache.size, 3);
  assert.equal(lookup(cache, names[0]!, NOW), null, 'the oldest went');
  for (const q of names.slice(1)) assert.ok(lookup(cache, q, NOW) !== null);
});

test('types key apart byte for byte: a TYPE97 answer is never served for HTTPS (0x41, the same byte but for case)', () => {
  const cache = new PacketCache(100, SECRET);
  // QTYPE written into the question's bytes (dns-packet names neither type); the question ends 4 + 11 bytes from the end (OPT).
  const withType = (type: number): Buffer => {
    const m = query({ type: 'A' });
    m.writeUInt16BE(type, m.length - 11 - 4);
    return m;
  };
  const type97 = withType(97);
  const answer = answerTo(query({ type: 'A' }), [], {
    authorities: [
      {
        type: 'SOA',
        name: 'lab.test',
        ttl: 300,
        data: { mname: 'ns.lab.test', rname: 'hostmaster.lab.test', serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum: 300 },
      },
    ],
  });
  answer.writeUInt16BE(97, 12 + 'www.lab.test'.length + 2);
  assert.ok(cache.store(type97, 0, type97.length, answer, 0, answer.length, NOW));
  assert.equal(lookup(cache, withType(65), NOW), null);
  assert.ok(lookup(cache, type97, NOW) !== null);
});

test('an answer whose COOKIE option runs past its OPT record is not kept', () => {
  const cache = new PacketCache(100, SECRET);
  const q = query({ cookie: Buffer.alloc(8, 1) });
  const answer = Buffer.from(answerTo(q));
  // The last option is the cookie: say it is longer than what is left.
  answer.writeUInt16BE(40, answer.length - 8 - 2);
  assert.equal(cache.store(q, 0, q.length, answer, 0, answer.length, NOW), false);
});
