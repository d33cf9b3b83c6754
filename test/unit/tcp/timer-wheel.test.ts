/**
 * The timer wheel against the plain rule it implements: at each `expire(now)`, exactly the
 * entries whose timer is due by `now` fire, each once — whatever the times (already past, within
 * a slot, several turns of the wheel ahead), the steps of the clock and what `fire` does to the
 * wheel meanwhile; and expiring costs looks at the entries due, not at every entry held.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TimerWheel, type TimerEntry } from '../../../src/tcp/timer-wheel.js';
import { Prng } from '../../support/prng.js';

class Timer implements TimerEntry<Timer> {
  timerDueMs = 0;
  timerList = -1;
  timerPrev: Timer | null = null;
  timerNext: Timer | null = null;
  constructor(readonly id: number) {}
}

/** 256 slots of 4 ms: one turn of the wheel is 1,024 ms. */
const HORIZON_MS = 1000;

test('random timers, moves, cancels and clock steps: each expire fires exactly the timers due, once', () => {
  const rng = new Prng(20261204);
  const wheel = new TimerWheel<Timer>(HORIZON_MS);
  const timers = Array.from({ length: 300 }, (_, i) => new Timer(i));
  /** The rule: when each timer is due (absent: not set). */
  const due = new Map<Timer, number>();
  let nowMs = 1_764_000_000_000;
  const set = (timer: Timer, atMs: number): void => {
    wheel.schedule(timer, atMs);
    due.set(timer, atMs);
  };
  const cancel = (timer: Timer): void => {
    wheel.cancel(timer);
    due.delete(timer);
  };
  let fired = 0;
  for (let step = 0; step < 20_000; step++) {
    const timer = timers[rng.below(timers.length)]!;
    const roll = rng.below(10);
    if (roll < 5) {
      // From a little in the past to several turns ahead.
      set(timer, nowMs - 20 + rng.below(rng.below(4) === 0 ? 5000 : 300));
    } else if (roll < 6) {
      cancel(timer);
    } else {
      nowMs += rng.below(8) === 0 ? rng.below(3000) : rng.below(12);
      const expected = new Set([...due].filter(([, atMs]) => atMs <= nowMs).map(([t]) => t));
      const firedNow = new Set<Timer>();
      wheel.expire(nowMs, (t, atMs) => {
        assert.equal(atMs, nowMs);
        assert.ok(expected.has(t), `timer ${t.id} fired, due at ${due.get(t)}, now ${nowMs}`);
        assert.ok(!firedNow.has(t), `timer ${t.id} fired twice`);
        assert.equal(t.timerList, -1, 'taken out of the wheel before it fires');
        firedNow.add(t);
        due.delete(t);
        // What an owner does when its timer fires: set the next one, or drop another timer.
        const action = rng.below(4);
        if (action === 0) set(t, nowMs + 1 + rng.below(2000));
        if (action === 1) {
          const other = timers[rng.below(timers.length)]!;
          if (!firedNow.has(other)) {
            cancel(other);
            expected.delete(other);
          }
        }
      });
      assert.deepEqual(
        [...expected].filter((t) => !firedNow.has(t)).map((t) => t.id),
        [],
        'every due timer fired',
      );
      fired += firedNow.size;
    }
  }
  assert.ok(fired > 2000, `${fired} timers fired`);
});

test('expiring looks at the timers due, not at every timer held', () => {
  const wheel = new TimerWheel<Timer>(HORIZON_MS);
  const startMs = 1_764_000_000_000;
  // 10,000 timers 900 ms ahead, spread over 100 ms of slots; one due in 50 ms.
  for (let i = 0; i < 10_000; i++) wheel.schedule(new Timer(i), startMs + 900 + (i % 100));
  const soon = new Timer(-1);
  wheel.schedule(soon, startMs + 50);
  let visits = 0;
  const fired: Timer[] = [];
  for (let nowMs = startMs; nowMs < startMs + 800; nowMs += 10) visits += wheel.expire(nowMs, (t) => fired.push(t));
  assert.deepEqual(fired, [soon]);
  assert.equal(visits, 1);
  // Then the 10,000 come due: each looked at when its time comes, and those due later in the
  // slot a tick falls in (up to 3 of its 4 ms) once more, at the next tick.
  for (let nowMs = startMs + 800; nowMs < startMs + 1100; nowMs += 10) visits += wheel.expire(nowMs, (t) => fired.push(t));
  assert.equal(fired.length, 10_001);
  assert.ok(visits <= 10_001 * 1.25, `${visits} looks for 10,001 timers`);
});
