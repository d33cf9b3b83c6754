/**
 * Issue 16: HTTP uploads of any size through `stateless-tcp http` — real curl in the client
 * namespace, the real binary capturing on the server's veth, real nginx writing each body to a
 * file (lab/nginx.ts `/upload/`) that is compared with what curl sent. Bodies stream to nginx as
 * they arrive, with the window the client sees following nginx's progress; a body over
 * `--max-body-size` gets 413 (by its Content-Length before it is sent, a chunked one when its
 * total passes the limit); `Expect: 100-continue` is answered at once.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createLab, type Lab } from '../../lab/lab.js';
import { startNginx, type Nginx } from '../../lab/nginx.js';
import {
  METRICS_ENDPOINT,
  startHttpFrontEnd,
  type RunningFrontEnd,
  summaryCounter as counter,
  waitUntilNoSoftState,
} from '../../lab/stateless-tcp.js';
import { requireTools } from '../../lab/tools.js';
import { sha256 } from '../support/digest.js';

const MIB = 1024 * 1024;
const SERVERS = [
  ['IPv4', 'http://198.18.0.2'],
  ['IPv6', 'http://[2001:2::2]'],
] as const;

interface Upload {
  /** curl's exit status, the HTTP status, and the body bytes curl sent. */
  code: number | null;
  status: string;
  sent: number;
  /** curl -v's account of the exchange (stderr). */
  verbose: string;
}

/** `curl -v -T file` (chunked if asked) in the client namespace, bounded by `timeoutMs`. */
async function upload(lab: Lab, file: string, url: string, chunked: boolean, timeoutMs = 60_000): Promise<Upload> {
  const run = await lab.exec(
    'client',
    [
      'curl',
      '-sS',
      '-v',
      '--max-time',
      String(timeoutMs / 1000 - 1),
      '-T',
      file,
      ...(chunked ? ['-H', 'Transfer-Encoding: chunked'] : []),
      '-o',
      '/dev/null',
      '-w',
      '%{http_code} %{size_upload}',
      url,
    ],
    { timeoutMs },
  );
  const [status = '', sent = '0'] = run.stdout.trim().split(' ');
  return { code: run.code, status, sent: Number(sent), verbose: run.stderr };
}

/** Writes `size` random bytes to a file in the lab's temp dir; its path and its bytes. */
async function randomFile(lab: Lab, name: string, size: number): Promise<{ path: string; bytes: Buffer }> {
  const bytes = randomBytes(size);
  const path = join(lab.tempDir, name);
  await writeFile(path, bytes);
  return { path, bytes };
}

/** What nginx wrote for `/upload/name`, or null if it wrote nothing. */
function stored(nginx: Nginx, name: string): Buffer | null {
  const path = join(nginx.root, 'upload', name);
  return existsSync(path) ? readFileSync(path) : null;
}

/** curl -v shows each response head line it read as `< …`. */
const sawContinue = (verbose: string): boolean => /^< HTTP\/1\.1 100 Continue\r?$/m.test(verbose);

describe('uploads with the default limit (1 MiB, as nginx’s client_max_body_size)', () => {
  let lab: Lab;
  let nginx: Nginx;
  let frontEnd: RunningFrontEnd;
  before(async () => {
    requireTools('nginx', 'curl', 'nft');
    lab = await createLab({ unbound: false });
    nginx = await startNginx(lab);
    frontEnd = await startHttpFrontEnd(lab, nginx.origin);
  });
  after(async () => {
    await lab?.close();
  });

  test('60 KB (413 before uploads streamed) and exactly 1 MiB reach nginx whole, with a length and chunked', async () => {
    for (const size of [60_000, MIB]) {
      const file = await randomFile(lab, `up-${size}.bin`, size);
      for (const chunked of [false, true]) {
        const name = `${size}-${chunked ? 'chunked' : 'length'}.bin`;
        const run = await upload(lab, file.path, `http://198.18.0.2/upload/${name}`, chunked);
        assert.equal(run.code, 0, run.verbose);
        assert.equal(run.status, '201', run.verbose);
        assert.equal(sha256(stored(nginx, name) ?? Buffer.alloc(0)), sha256(file.bytes), name);
      }
    }
  });

  test('1 MiB + 1 byte gets 413: by its Content-Length before curl sends it, chunked once the total passes 1 MiB', async () => {
    const file = await randomFile(lab, 'over.bin', MIB + 1);
    const byLength = await upload(lab, file.path, 'http://198.18.0.2/upload/over-length.bin', false);
    assert.equal(byLength.status, '413', byLength.verbose);
    assert.equal(byLength.sent, 0, 'the 413 came instead of 100 Continue: curl sent none of the body');
    assert.ok(!sawContinue(byLength.verbose), byLength.verbose);
    const chunked = await upload(lab, file.path, 'http://198.18.0.2/upload/over-chunked.bin', true);
    assert.equal(chunked.status, '413', chunked.verbose);
    assert.equal(stored(nginx, 'over-length.bin'), null);
    assert.equal(stored(nginx, 'over-chunked.bin'), null, 'nginx never took the cut-off body for a whole one');
    const summary = await frontEnd.stop();
    assert.equal(counter(summary, 'http.bodies_too_large'), 2, summary);
    assert.equal(counter(summary, 'tcp.flows'), 0, summary);
  });
});

describe('10 MiB uploads (max-body-size: 16m in the config file)', () => {
  let lab: Lab;
  let nginx: Nginx;
  let frontEnd: RunningFrontEnd;
  let file: { path: string; bytes: Buffer };
  before(async () => {
    requireTools('nginx', 'curl', 'nft');
    lab = await createLab({ unbound: false });
    nginx = await startNginx(lab);
    file = await randomFile(lab, 'ten-mib.bin', 10 * MIB);
    // The limit from the config file, as an operator would set it.
    const config = join(lab.tempDir, 'uploads.yaml');
    await writeFile(config, 'max-body-size: 16m\n');
    frontEnd = await startHttpFrontEnd(lab, nginx.origin, ['--config', config, '--metrics', METRICS_ENDPOINT]);
  });
  after(async () => {
    await lab?.close();
  });

  for (const [family, server] of SERVERS) {
    test(`${family}: byte-identical at nginx, with a length (answered 100 Continue) and chunked`, async () => {
      const byLength = await upload(lab, file.path, `${server}/upload/${family}-length.bin`, false);
      assert.equal(byLength.code, 0, byLength.verbose);
      assert.equal(byLength.status, '201', byLength.verbose);
      assert.ok(/^> Expect: 100-continue\r?$/m.test(byLength.verbose), 'curl asked to continue');
      assert.ok(sawContinue(byLength.verbose), `curl saw 100 Continue, so it did not wait to send:\n${byLength.verbose}`);
      assert.equal(sha256(stored(nginx, `${family}-length.bin`) ?? Buffer.alloc(0)), sha256(file.bytes));
      const chunked = await upload(lab, file.path, `${server}/upload/${family}-chunked.bin`, true);
      assert.equal(chunked.status, '201', chunked.verbose);
      assert.equal(sha256(stored(nginx, `${family}-chunked.bin`) ?? Buffer.alloc(0)), sha256(file.bytes));
    });
  }

  test('over 16 MiB: 413 by Content-Length at once, chunked once past it; then no soft state, and the counters', async (t) => {
    const big = await randomFile(lab, 'seventeen-mib.bin', 17 * MIB);
    const byLength = await upload(lab, big.path, 'http://198.18.0.2/upload/big-length.bin', false);
    assert.deepEqual([byLength.status, byLength.sent], ['413', 0], byLength.verbose);
    const chunked = await upload(lab, big.path, 'http://198.18.0.2/upload/big-chunked.bin', true);
    assert.equal(chunked.status, '413', chunked.verbose);
    assert.equal(stored(nginx, 'big-chunked.bin'), null);
    await waitUntilNoSoftState(lab);
    const summary = await frontEnd.stop();
    t.diagnostic(summary);
    assert.ok(counter(summary, 'http.body_bytes') >= 4 * 10 * MIB + 16 * MIB - MIB, summary);
    assert.equal(counter(summary, 'http.bodies_too_large'), 2, summary);
    assert.ok(counter(summary, 'http.continues') >= 2, summary);
    assert.equal(counter(summary, 'tcp.flows'), 0, summary);
  });
});

describe('10 MiB uploads through a wire that loses 5 %, duplicates and reorders both ways', () => {
  let lab: Lab;
  let nginx: Nginx;
  let frontEnd: RunningFrontEnd;
  before(async () => {
    requireTools('nginx', 'curl', 'nft');
    lab = await createLab({ unbound: false, wire: { lossPercent: 5, duplicatePercent: 2, reorderPercent: 10, delayMs: 2, jitterMs: 1 } });
    nginx = await startNginx(lab);
    frontEnd = await startHttpFrontEnd(lab, nginx.origin, ['--max-body-size', '16m', '--metrics', METRICS_ENDPOINT]);
  });
  after(async () => {
    await lab?.close();
  });

  test('byte-identical at nginx over IPv4 and IPv6', async (t) => {
    const file = await randomFile(lab, 'lossy.bin', 10 * MIB);
    for (const [family, server] of SERVERS) {
      const run = await upload(lab, file.path, `${server}/upload/lossy-${family}.bin`, false, 240_000);
      assert.equal(run.code, 0, run.verbose.slice(-2000));
      assert.equal(run.status, '201', run.verbose.slice(-2000));
      assert.equal(sha256(stored(nginx, `lossy-${family}.bin`) ?? Buffer.alloc(0)), sha256(file.bytes), family);
    }
    const wire = await lab.wireStats();
    t.diagnostic(`wire: ${JSON.stringify(wire)}`);
    assert.ok(wire.toServer.dropped > 10 && wire.toClient.dropped > 0, 'both directions lost packets');
    await waitUntilNoSoftState(lab);
    const summary = await frontEnd.stop();
    t.diagnostic(summary);
    assert.ok(counter(summary, 'http.body_bytes') >= 2 * 10 * MIB, summary);
    assert.equal(counter(summary, 'tcp.flows'), 0, summary);
  });
});

describe('uploads on --transport kernel (ordinary TCP sockets)', () => {
  let lab: Lab;
  let nginx: Nginx;
  let frontEnd: RunningFrontEnd;
  before(async () => {
    requireTools('nginx', 'curl');
    lab = await createLab({ unbound: false });
    nginx = await startNginx(lab);
    frontEnd = await startHttpFrontEnd(lab, nginx.origin, ['--transport', 'kernel', '--max-body-size', '16m']);
  });
  after(async () => {
    await lab?.close();
  });

  test('the same relay: 10 MiB byte-identical with a length and chunked, 413 over the limit', async () => {
    const file = await randomFile(lab, 'kernel.bin', 10 * MIB);
    for (const chunked of [false, true]) {
      const name = `kernel-${chunked}.bin`;
      const run = await upload(lab, file.path, `http://198.18.0.2/upload/${name}`, chunked);
      assert.equal(run.status, '201', run.verbose);
      assert.equal(sha256(stored(nginx, name) ?? Buffer.alloc(0)), sha256(file.bytes), name);
    }
    const big = await randomFile(lab, 'kernel-big.bin', 17 * MIB);
    const over = await upload(lab, big.path, 'http://198.18.0.2/upload/kernel-big.bin', true);
    assert.equal(over.status, '413', over.verbose);
    const summary = await frontEnd.stop();
    assert.ok(counter(summary, 'http.body_bytes') >= 2 * 10 * MIB, summary);
    assert.equal(counter(summary, 'http.bodies_too_large'), 1, summary);
  });
});
