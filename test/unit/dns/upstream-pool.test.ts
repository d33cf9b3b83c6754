import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DOWN_AFTER_FAILURES, UpstreamSelection } from '../../../src/dns/upstream-pool.js';

test('queries go to the healthy upstream with the fewest outstanding (dnsdist leastOutstanding), ties to the first', () => {
  const s = new UpstreamSelection(3);
  assert.equal(s.pick(), 0);
  s.outstanding[0] = 2;
  s.outstanding[1] = 1;
  s.outstanding[2] = 1;
  assert.equal(s.pick(), 1);
  assert.equal(s.pick(1), 2, 'a failover goes to another upstream');
  s.outstanding[2] = 0;
  assert.equal(s.pick(), 2);
});

test(`an upstream is down after ${DOWN_AFTER_FAILURES} failed probes in a row, gets no queries, and is up after one that answers`, () => {
  const s = new UpstreamSelection(2);
  s.outstanding[1] = 100;
  assert.equal(s.probed(0, false), 0);
  assert.equal(s.probed(0, false), 0);
  assert.equal(s.probed(0, true), 0, 'a success resets the failures');
  assert.equal(s.probed(0, false), 0);
  assert.equal(s.probed(0, false), 0);
  assert.equal(s.probed(0, false), -1, 'down: reported once');
  assert.equal(s.probed(0, false), 0);
  assert.equal(s.pick(), 1, 'the busier but healthy upstream');
  assert.equal(s.pick(1), -1, 'no other to fail over to');
  assert.equal(s.probed(0, true), 1, 'up again: reported once');
  assert.equal(s.probed(0, true), 0);
  assert.equal(s.pick(), 0);
});

test('with every upstream down there is none to pick', () => {
  const s = new UpstreamSelection(2);
  s.markDown(0);
  s.markDown(1);
  assert.equal(s.anyUp, false);
  assert.equal(s.pick(), -1);
  assert.equal(s.probed(1, true), 1);
  assert.equal(s.pick(), 1);
});
