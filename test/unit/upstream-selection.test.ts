import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_HEALTH_THRESHOLDS, perUpstreamCounterNames, UpstreamSelection } from '../../src/upstream-selection.js';

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

test(`an upstream is down after ${DEFAULT_HEALTH_THRESHOLDS.downAfter} failed probes in a row, gets no queries, and is up after one that answers`, () => {
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

test('the thresholds are configurable: down after 2 failures, up after 3 successes in a row', () => {
  const s = new UpstreamSelection(2, { downAfter: 2, upAfter: 3 });
  assert.equal(s.probed(1, false), 0);
  assert.equal(s.probed(1, false), -1);
  assert.equal(s.probed(1, true), 0);
  assert.equal(s.probed(1, true), 0);
  assert.equal(s.probed(1, false), 0, 'a failure breaks the run of successes');
  assert.equal(s.probed(1, true), 0);
  assert.equal(s.probed(1, true), 0);
  assert.equal(s.probed(1, true), 1);
});

test('queries left unanswered count as failures with the probes; an answer in between breaks the run', () => {
  const s = new UpstreamSelection(2);
  assert.equal(s.failed(0), 0);
  assert.equal(s.failed(0), 0);
  s.answered(0);
  assert.equal(s.failed(0), 0);
  assert.equal(s.probed(0, false), 0, 'a failed probe adds to the same run');
  assert.equal(s.failed(0), -1, 'down on the third failure in a row');
  assert.deepEqual(s.up, [false, true]);
  s.answered(0);
  assert.deepEqual(s.up, [false, true], 'a late answer does not bring it up: only probes do');
  assert.equal(s.probed(0, true), 1);
});

test('weighted: each healthy upstream gets queries in proportion to its weight, interleaved (smooth weighted round robin)', () => {
  const s = new UpstreamSelection(2, DEFAULT_HEALTH_THRESHOLDS, 'weighted', [1, 3]);
  const picks = Array.from({ length: 8 }, () => s.pick());
  assert.deepEqual(picks, [1, 0, 1, 1, 1, 0, 1, 1]);
  // Three upstreams, 5:1:1 (nginx's own example): every round of 7 holds each share exactly.
  const t = new UpstreamSelection(3, DEFAULT_HEALTH_THRESHOLDS, 'weighted', [5, 1, 1]);
  const round = Array.from({ length: 7 }, () => t.pick());
  assert.deepEqual(round, [0, 0, 1, 0, 2, 0, 0]);
  const counts = [0, 0, 0];
  for (let i = 0; i < 7000; i++) counts[t.pick()]!++;
  assert.deepEqual(counts, [5000, 1000, 1000]);
});

test('weighted: a down upstream gets nothing and its share goes to the others; a failover skips the one it leaves', () => {
  const s = new UpstreamSelection(3, DEFAULT_HEALTH_THRESHOLDS, 'weighted', [1, 3, 2]);
  s.markDown(1);
  const counts = [0, 0, 0];
  for (let i = 0; i < 300; i++) counts[s.pick()]!++;
  assert.deepEqual(counts, [100, 0, 200]);
  for (let i = 0; i < 10; i++) assert.equal(s.pick(2), 0);
  s.markDown(0);
  assert.equal(s.pick(2), -1);
  assert.equal(s.pick(), 2);
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

test("a pool's per-upstream counter names: each upstream's, in order", () => {
  assert.deepEqual(perUpstreamCounterNames(2, ['requests', 'failures']), [
    'upstream0_requests',
    'upstream0_failures',
    'upstream1_requests',
    'upstream1_failures',
  ]);
});
