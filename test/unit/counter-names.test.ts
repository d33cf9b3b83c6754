/**
 * counterNames: a counter's name is its key in lower case, at its index; an index used twice or
 * left unused is an error at load time. And every counter family of the project has exactly one
 * name per index, so that a counter array and its names cannot drift apart.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { counterNames } from '../../src/counter-names.js';
import { RELAY_COUNTER_NAMES, RelayCounter } from '../../src/dns/relay.js';
import { HTTP_COUNTER_NAMES, HttpCounter } from '../../src/http/relay.js';
import { Outcome, OUTCOME_NAMES, TCP_EVENT_NAMES, TcpEvent } from '../../src/tcp/counters.js';
import { DECODE_RESULT_NAMES, DecodeResult } from '../../src/wire/segment.js';

describe('counterNames', () => {
  it('names each index by its key in lower case, in index order whatever the key order', () => {
    assert.deepEqual(counterNames({ QUERIES: 0, SERVFAIL_TIMEOUT: 1 }), ['queries', 'servfail_timeout']);
    assert.deepEqual(counterNames({ B: 1, C: 2, A: 0 }), ['a', 'b', 'c']);
    assert.deepEqual(counterNames({}), []);
  });

  it('refuses an index used twice, naming both keys', () => {
    assert.throws(() => counterNames({ OK: 0, FINE: 0 }), { message: 'counter index 0 used twice (ok, FINE)' });
    assert.throws(() => counterNames({ A: 0, B: 1, C: 1 }), { message: 'counter index 1 used twice (b, C)' });
  });

  it('refuses a gap in the indices, naming the first unused one', () => {
    assert.throws(() => counterNames({ A: 0, C: 2 }), { message: 'counter index 1 is unused' });
    assert.throws(() => counterNames({ B: 1 }), { message: 'counter index 0 is unused' });
    assert.throws(() => counterNames({ A: 0, D: 3, B: 1 }), { message: 'counter index 2 is unused' });
  });
});

describe("the project's counter families", () => {
  const families: [string, Readonly<Record<string, number>>, readonly string[]][] = [
    ['DecodeResult', DecodeResult, DECODE_RESULT_NAMES],
    ['Outcome', Outcome, OUTCOME_NAMES],
    ['TcpEvent', TcpEvent, TCP_EVENT_NAMES],
    ['RelayCounter', RelayCounter, RELAY_COUNTER_NAMES],
    ['HttpCounter', HttpCounter, HTTP_COUNTER_NAMES],
  ];

  for (const [family, indices, names] of families) {
    it(`${family}: one name per index 0 … n-1, each its key in lower case`, () => {
      const keys = Object.keys(indices);
      assert.equal(names.length, keys.length);
      const values = Object.values(indices).sort((a, b) => a - b);
      assert.deepEqual(
        values,
        keys.map((_, i) => i),
        'indices are 0 … n-1, each once',
      );
      for (const [key, index] of Object.entries(indices)) assert.equal(names[index], key.toLowerCase(), key);
      assert.equal(new Set(names).size, names.length, 'no name twice');
      for (const name of names) assert.match(name, /^[a-z][a-z0-9_]*$/, 'usable as a Prometheus label value and a summary name');
    });
  }

  it('keeps the numbering that metrics and the stop summary were built on (append, never reorder)', () => {
    assert.equal(DECODE_RESULT_NAMES[0], 'ok');
    assert.equal(OUTCOME_NAMES[Outcome.IGNORED], 'ignored');
    assert.equal(OUTCOME_NAMES[1], 'syn_answered');
    assert.equal(TCP_EVENT_NAMES[0], 'retransmit_timeouts');
    assert.equal(RELAY_COUNTER_NAMES[0], 'queries');
    assert.equal(HTTP_COUNTER_NAMES[0], 'requests');
  });
});
