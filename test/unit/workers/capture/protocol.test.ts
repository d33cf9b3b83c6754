/**
 * The capture thread's control block (workers/capture/protocol.ts): its regions (flags, counters,
 * secret) do not overlap, and the cookie secret is published under a sequence lock — the
 * generation is even whenever the secret is whole, and a reader that follows the lock (a worker
 * thread reading while the main thread publishes as fast as it can) only ever keeps the old or
 * the new secret whole, never a mix.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { SECRET_BYTES } from '../../../../src/tcp/cookie.js';
import {
  allocateCaptureControl,
  CaptureFlag,
  CaptureStat,
  controlFlags,
  controlSecret,
  controlStats,
  publishCaptureSecret,
} from '../../../../workers/capture/protocol.js';
import type { SecretReaderData, SecretReaderReport } from '../../../support/capture-secret-reader.js';

const secretOf = (value: number): Uint8Array => new Uint8Array(SECRET_BYTES).fill(value);

describe('capture control block', () => {
  it('holds two flags, the counters and the secret, apart', () => {
    const control = allocateCaptureControl();
    const flags = controlFlags(control);
    const stats = controlStats(control);
    const secret = controlSecret(control);
    assert.equal(flags.length, Object.keys(CaptureFlag).length);
    assert.equal(stats.length, Object.keys(CaptureStat).length);
    assert.equal(secret.length, SECRET_BYTES);
    assert.equal(control.byteLength, 8 + 8 * stats.length + SECRET_BYTES);
    // Fill each region in turn: the others stay zero.
    stats.fill(Number.MAX_VALUE);
    assert.deepEqual(Array.from(flags), [0, 0]);
    assert.deepEqual(Array.from(secret), Array.from(secretOf(0)));
    flags.fill(-1);
    secret.fill(0xff);
    assert.deepEqual(Array.from(stats), new Array(stats.length).fill(Number.MAX_VALUE));
    Atomics.store(flags, CaptureFlag.STOP, 1);
    assert.deepEqual(Array.from(secret), Array.from(secretOf(0xff)));
  });

  it('is shared: views of one block from two places see the same bytes', () => {
    const control = allocateCaptureControl();
    publishCaptureSecret(control, secretOf(9));
    assert.deepEqual(Array.from(controlSecret(control)), Array.from(secretOf(9)));
    controlStats(control)[CaptureStat.SYN_ANSWERED] = 42;
    assert.equal(controlStats(control)[CaptureStat.SYN_ANSWERED], 42);
  });
});

describe('publishCaptureSecret', () => {
  it('copies the secret in and leaves the generation even, two higher each time', () => {
    const control = allocateCaptureControl();
    const flags = controlFlags(control);
    assert.equal(Atomics.load(flags, CaptureFlag.SECRET_GENERATION), 0);
    const first = Uint8Array.from({ length: SECRET_BYTES }, (_, i) => i + 1);
    publishCaptureSecret(control, first);
    assert.equal(Atomics.load(flags, CaptureFlag.SECRET_GENERATION), 2);
    assert.deepEqual(Array.from(controlSecret(control)), Array.from(first));
    first.fill(0); // the block holds a copy
    assert.deepEqual(
      Array.from(controlSecret(control)),
      Array.from({ length: SECRET_BYTES }, (_, i) => i + 1),
    );
    publishCaptureSecret(control, secretOf(0x5a));
    assert.equal(Atomics.load(flags, CaptureFlag.SECRET_GENERATION), 4);
    assert.deepEqual(Array.from(controlSecret(control)), Array.from(secretOf(0x5a)));
    assert.equal(Atomics.load(flags, CaptureFlag.STOP), 0, 'the stop flag is untouched');
  });

  it('lets a reader on another thread keep only whole secrets while the main thread publishes', { timeout: 20_000 }, async (t) => {
    const control = allocateCaptureControl();
    const done = new SharedArrayBuffer(4);
    const data: SecretReaderData = { control, done, maxMs: 10_000 };
    const worker = new Worker(new URL('../../../support/capture-secret-reader.js', import.meta.url), { workerData: data });
    try {
      const messages: unknown[] = [];
      let wake: (() => void) | null = null;
      worker.on('message', (message) => {
        messages.push(message);
        wake?.();
      });
      const failed = new Promise<never>((_, reject) => worker.once('error', reject));
      const next = async (): Promise<unknown> => {
        while (messages.length === 0) await Promise.race([new Promise<void>((resolve) => (wake = resolve)), failed]);
        return messages.shift();
      };
      assert.equal(await next(), 'ready');

      // As fast as possible, for at most 300 ms or 2,000,000 secrets: publication k is value k mod 256.
      const started = performance.now();
      let published = 0;
      while (published < 2_000_000 && ((published & 255) !== 0 || performance.now() - started < 300)) {
        published++;
        publishCaptureSecret(control, secretOf(published & 0xff));
      }
      Atomics.store(new Int32Array(done), 0, 1);
      const report = (await next()) as SecretReaderReport;

      assert.equal(report.torn, 0, `a kept copy was not whole: ${report.firstTorn}`);
      assert.ok(report.kept > 0, 'the reader kept some copies');
      assert.ok(report.monotonic, 'generations never went backwards');
      assert.equal(report.lastGeneration, 2 * published, 'the last secret is seen, with an even generation');
      assert.equal(Atomics.load(controlFlags(control), CaptureFlag.SECRET_GENERATION), 2 * published);
      // How much the lock had to do (varies by machine; not asserted): reads that met a write.
      t.diagnostic(
        `published ${published}, kept ${report.kept}, retried ${report.retried}, odd ${report.odd}, mixed without the lock ${report.unlockedMixed}`,
      );
    } finally {
      await worker.terminate();
    }
  });
});
