/**
 * TruncatedQuestions, the relay's memory of questions whose UDP answer came back truncated: a
 * question is recent from `remember` until TRUNCATION_MEMORY_MS later; only the question counts
 * (not the ID or flags), its name case-insensitively (RFC 4343), its type and class exactly; the
 * table is fixed-size, so many questions evict one another instead of growing it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { questionEnd } from '../../../src/dns/message.js';
import { TRUNCATION_MEMORY_MS, TruncatedQuestions } from '../../../src/dns/truncated.js';

const NOW_MS = 1_764_000_000_000;

function query(name: string, type: dnsPacket.RecordType = 'A', id = 1, klass: 'IN' | 'CH' = 'IN'): Buffer {
  return dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name, class: klass }] });
}

function remember(table: TruncatedQuestions, q: Uint8Array, nowMs = NOW_MS): void {
  table.remember(q, 0, q.length, nowMs);
}

function isRecent(table: TruncatedQuestions, q: Uint8Array, nowMs = NOW_MS): boolean {
  return table.isRecent(q, 0, questionEnd(q, 0, q.length), nowMs);
}

describe('TruncatedQuestions', () => {
  it('knows nothing at first', () => {
    const table = new TruncatedQuestions();
    assert.equal(isRecent(table, query('big.stcp.test', 'TXT')), false);
  });

  it('remembers a question, whatever the ID and flags of the next query asking it', () => {
    const table = new TruncatedQuestions();
    remember(table, query('big.stcp.test', 'TXT', 0x1234));
    assert.equal(isRecent(table, query('big.stcp.test', 'TXT', 0x1234)), true);
    assert.equal(isRecent(table, query('big.stcp.test', 'TXT', 0x9999)), true);
    const noRd = dnsPacket.encode({ type: 'query', id: 7, flags: 0, questions: [{ type: 'TXT', name: 'big.stcp.test' }] });
    assert.equal(isRecent(table, noRd), true);
  });

  it('compares names without regard to ASCII case (RFC 4343)', () => {
    const table = new TruncatedQuestions();
    remember(table, query('Big.STCP.test', 'TXT'));
    assert.equal(isRecent(table, query('big.stcp.test', 'TXT')), true);
    assert.equal(isRecent(table, query('BIG.STCP.TEST', 'TXT')), true);
  });

  it('tells other names, types and classes apart', () => {
    const table = new TruncatedQuestions();
    remember(table, query('big.stcp.test', 'TXT'));
    assert.equal(isRecent(table, query('big.stcp.test', 'A')), false, 'type');
    assert.equal(isRecent(table, query('big.stcp.test', 'TXT', 1, 'CH')), false, 'class');
    assert.equal(isRecent(table, query('bug.stcp.test', 'TXT')), false, 'name');
    assert.equal(isRecent(table, query('big.stcp.test.', 'TXT')), true, 'the root label is implicit');
    assert.equal(isRecent(table, query('big.stcp', 'TXT')), false, 'shorter name');
  });

  it('reads the query where it lies in a larger buffer', () => {
    const table = new TruncatedQuestions();
    const q = query('big.stcp.test', 'TXT');
    const buf = new Uint8Array(100 + q.length + 50).fill(0xee);
    buf.set(q, 100);
    table.remember(buf, 100, q.length, NOW_MS);
    assert.equal(isRecent(table, q), true);
    const other = new Uint8Array(7 + q.length);
    other.set(q, 7);
    assert.equal(table.isRecent(other, 7, questionEnd(other, 7, q.length), NOW_MS + 1), true);
  });

  it(`forgets a question ${TRUNCATION_MEMORY_MS} ms after it was truncated, unless truncated again`, () => {
    assert.equal(TRUNCATION_MEMORY_MS, 60_000);
    const table = new TruncatedQuestions();
    const q = query('big.stcp.test', 'TXT');
    remember(table, q);
    assert.equal(isRecent(table, q, NOW_MS + TRUNCATION_MEMORY_MS - 1), true);
    assert.equal(isRecent(table, q, NOW_MS + TRUNCATION_MEMORY_MS), false);
    assert.equal(isRecent(table, q, NOW_MS + 10 * TRUNCATION_MEMORY_MS), false);

    // Truncated again half-way: remembered for a full period from then.
    remember(table, q, NOW_MS);
    remember(table, q, NOW_MS + TRUNCATION_MEMORY_MS / 2);
    assert.equal(isRecent(table, q, NOW_MS + TRUNCATION_MEMORY_MS + 1), true);
    assert.equal(isRecent(table, q, NOW_MS + (3 * TRUNCATION_MEMORY_MS) / 2), false);
  });

  it('stays bounded: of 20,000 questions at most its 4096 slots are remembered, the newest always', () => {
    const table = new TruncatedQuestions();
    const questions: Buffer[] = [];
    for (let i = 0; i < 20_000; i++) {
      const q = query(`n${i}.stcp.test`, 'TXT');
      questions.push(q);
      remember(table, q, NOW_MS + i);
      assert.equal(isRecent(table, q, NOW_MS + i), true, `question ${i} just remembered`);
    }
    const now = NOW_MS + 20_000;
    const recent = questions.filter((q) => isRecent(table, q, now)).length;
    assert.ok(recent <= 4096, `${recent} questions remembered`);
    // A direct-mapped table keeps most of the last few thousand (the slots they won).
    assert.ok(recent > 2000, `${recent} questions remembered`);
    // The oldest were evicted by the 19,000 after them (each survives with odds e^(-19000/4096)).
    assert.ok(questions.slice(0, 1000).filter((q) => isRecent(table, q, now)).length < 100, 'old questions evicted');
  });
});
