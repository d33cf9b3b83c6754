/**
 * Issue 6: the HTTP front end end to end — real curl and wrk in the client namespace, the real
 * `stateless-tcp http` binary capturing on the server's veth, real nginx behind it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLab, type Lab } from '../../lab/lab.js';
import { serveFile, startNginx, type Nginx } from '../../lab/nginx.js';
import {
  METRICS_ENDPOINT,
  startHttpFrontEnd,
  type RunningFrontEnd,
  summaryCounter as counter,
  waitUntilNoSoftState,
} from '../../lab/stateless-tcp.js';
import { requireTools } from '../../lab/tools.js';
import { parseWrk } from '../../lab/wrk.js';
import { sha256 } from '../support/digest.js';

const MIB = 1024 * 1024;

/** curl in the client namespace; `-w` output is the last line of stdout. */
async function curl(lab: Lab, args: string[], timeoutMs = 20_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return lab.exec('client', ['curl', '-sS', '--max-time', String(timeoutMs / 1000 - 1), ...args], { timeoutMs });
}

/** Sends `request` bytes on one connection and returns everything the server sent until it closed (or `waitMs`). */
async function rawHttp(lab: Lab, host: string, request: string, waitMs = 3000): Promise<string> {
  const script = `
const s = require('net').connect(80, ${JSON.stringify(host)});
const parts = [];
s.on('data', (d) => parts.push(d));
s.on('connect', () => s.write(Buffer.from(${JSON.stringify(Buffer.from(request, 'latin1').toString('base64'))}, 'base64')));
const done = () => { process.stdout.write(Buffer.concat(parts).toString('latin1')); process.exit(0); };
s.on('close', done); s.on('error', done); setTimeout(done, ${waitMs});`;
  const run = await lab.exec('client', [process.execPath, '-e', script], { timeoutMs: waitMs + 5000 });
  assert.equal(run.code, 0, run.stderr);
  return run.stdout;
}

describe('stateless-tcp http with curl, wrk and nginx', () => {
  let lab: Lab;
  let nginx: Nginx;
  let frontEnd: RunningFrontEnd;
  const body = randomBytes(MIB);

  before(async () => {
    requireTools('nginx', 'curl', 'wrk', 'nft');
    lab = await createLab({ unbound: false });
    nginx = await startNginx(lab);
    await serveFile(nginx, 'one-mib.bin', body);
    await serveFile(nginx, 'small.txt', Buffer.from('hello from nginx\n'));
    frontEnd = await startHttpFrontEnd(lab, nginx.origin, ['--timeout', '1000']);
  });
  after(async () => {
    await lab?.close();
  });

  for (const [family, host, url] of [
    ['IPv4', '198.18.0.2', 'http://198.18.0.2'],
    ['IPv6', '2001:2::2', 'http://[2001:2::2]'],
  ] as const) {
    test(`${family}: curl gets a 1 MiB body byte-identical`, async () => {
      const file = join(lab.tempDir, `one-mib-${family}.bin`);
      // %{remote_ip}: the connection really went to the server's address of this family.
      const run = await curl(lab, ['-o', file, '-w', '%{http_code} %{size_download} %{remote_ip}', `${url}/one-mib.bin`]);
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stdout, `200 ${MIB} ${host}`);
      assert.equal(sha256(readFileSync(file)), sha256(body));
    });
  }

  test('X-Forwarded-For carries the client address; HEAD gets headers only; a chunked backend body arrives de-chunked; CONNECT gets 501', async () => {
    const echo = await curl(lab, ['http://198.18.0.2/echo-headers']);
    assert.match(echo.stdout, /^xff=198\.18\.0\.1 method=GET length= /);
    const echo6 = await curl(lab, ['-H', 'X-Forwarded-For: 203.0.113.7', 'http://[2001:2::2]/echo-headers']);
    assert.match(echo6.stdout, /^xff=203\.0\.113\.7, 2001:2::1 /, 'appended to what the client sent');
    const head = await curl(lab, ['-I', 'http://198.18.0.2/one-mib.bin']);
    assert.match(head.stdout, /^HTTP\/1\.1 200 OK\r$/m);
    assert.match(head.stdout, new RegExp(`^content-length: ${MIB}\r$`, 'mi'));
    const chunked = await curl(lab, ['-D', '-', 'http://198.18.0.2/chunked']);
    assert.match(chunked.stdout, /^transfer-encoding: chunked\r$/im);
    assert.match(chunked.stdout, /\r\n\r\nfirst line\nsecond line\n$/);
    const old = await curl(lab, ['-0', '-D', '-', 'http://198.18.0.2/chunked']);
    assert.doesNotMatch(old.stdout, /transfer-encoding/i, 'HTTP/1.0 gets no chunked coding');
    assert.match(old.stdout, /^connection: close\r$/im, '… and the body ends with the connection');
    assert.match(old.stdout, /\r\n\r\nfirst line\nsecond line\n$/);
    const connect = await rawHttp(lab, '198.18.0.2', 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n');
    assert.match(connect, /^HTTP\/1\.1 501 Not Implemented\r\n/, 'CONNECT is not relayed (a tunnel is not a request)');
  });

  test('a PUT body (40 KB, Content-Length) reaches nginx byte-identical; so does a chunked POST-style upload', async () => {
    const upload = randomBytes(40_000);
    const file = join(lab.tempDir, 'upload.bin');
    await import('node:fs/promises').then((fs) => fs.writeFile(file, upload));
    const put = await curl(lab, ['-T', file, '-w', '%{http_code}', '-o', '/dev/null', 'http://198.18.0.2/put/upload.bin']);
    assert.match(put.stdout, /^20[14]$/);
    assert.equal(sha256(readFileSync(join(nginx.root, 'put', 'upload.bin'))), sha256(upload));
    const chunked = await curl(lab, [
      '-T',
      file,
      '-H',
      'Transfer-Encoding: chunked',
      '-w',
      '%{http_code}',
      '-o',
      '/dev/null',
      'http://198.18.0.2/put/chunked.bin',
    ]);
    assert.match(chunked.stdout, /^20[14]$/);
    assert.equal(sha256(readFileSync(join(nginx.root, 'put', 'chunked.bin'))), sha256(upload));
  });

  test('300 sequential requests on one keep-alive connection all succeed; HTTP/1.0 closes after each', async () => {
    const urls = Array.from({ length: 300 }, (_, i) => `http://198.18.0.2/small.txt?${i}`);
    const run = await curl(lab, ['-w', '%{http_code} %{num_connects}\n', ...urls.flatMap((url) => ['-o', '/dev/null', url])], 60_000);
    assert.equal(run.code, 0, run.stderr);
    const lines = run.stdout.trim().split('\n');
    assert.equal(lines.length, 300);
    assert.ok(
      lines.every((line) => line.startsWith('200 ')),
      run.stdout,
    );
    assert.equal(lines.filter((line) => line === '200 1').length, 1, 'one connection for all 300');
    const old = await curl(lab, [
      '-0',
      '-w',
      '%{http_code} %{num_connects}\n',
      ...urls.slice(0, 5).flatMap((url) => ['-o', '/dev/null', url]),
    ]);
    assert.deepEqual(old.stdout.trim().split('\n'), Array(5).fill('200 1'), 'a new connection each time');
  });

  test('HTTP/1.0 with Connection: keep-alive: two requests on one connection, each answered with a length and keep-alive', async () => {
    const run = await curl(lab, [
      '-0',
      '-H',
      'Connection: keep-alive',
      '-D',
      '-',
      '-w',
      'connects=%{num_connects}\n',
      ...['small.txt?1', 'small.txt?2'].flatMap((path) => ['-o', '/dev/null', `http://198.18.0.2/${path}`]),
    ]);
    assert.equal(run.code, 0, run.stderr);
    const heads = run.stdout.split(/connects=\d+\n/).slice(0, 2);
    for (const head of heads) {
      assert.match(head, /^HTTP\/1\.1 200 OK\r$/m);
      assert.match(head, /^connection: keep-alive\r$/im);
      assert.match(head, /^content-length: 17\r$/im);
    }
    assert.deepEqual(
      [...run.stdout.matchAll(/connects=(\d+)/g)].map((m) => m[1]),
      ['1', '0'],
      'the second reused the connection',
    );
  });

  test('pipelined requests in one segment are answered in order; Connection: close ends the connection after its response', async () => {
    const request = (path: string, extra = ''): string => `GET ${path} HTTP/1.1\r\nHost: 198.18.0.2\r\n${extra}\r\n`;
    const reply = await rawHttp(
      lab,
      '198.18.0.2',
      request('/small.txt?1') + request('/echo-headers') + request('/small.txt?3', 'Connection: close\r\n'),
    );
    const statuses = [...reply.matchAll(/^HTTP\/1\.1 (\d+)/gm)].map((m) => m[1]);
    assert.deepEqual(statuses, ['200', '200', '200'], reply);
    const bodies = reply
      .split(/\r\n\r\n/)
      .slice(1)
      .map((part) => part.split('HTTP/1.1')[0]);
    assert.equal(bodies[0], 'hello from nginx\n');
    assert.match(bodies[1]!, /^xff=198\.18\.0\.1 method=GET/);
    assert.equal(bodies[2], 'hello from nginx\n');
    assert.match(reply, /connection: close\r\n\r\nhello from nginx\n$/, 'the last response says close, and the server closed');
  });

  test('bad requests: malformed → 400, oversized head → 431, unknown coding → 501, each with Connection: close', async () => {
    const cases: [string, string][] = [
      ['GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n', '400'],
      [`GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, '431'],
      ['POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked, br\r\n\r\n', '501'],
    ];
    for (const [request, status] of cases) {
      const reply = await rawHttp(lab, '198.18.0.2', request);
      assert.match(reply, new RegExp(`^HTTP/1\\.1 ${status} `), reply.slice(0, 200));
      assert.match(reply, /^connection: close\r$/m);
    }
  });

  test('wrk for 3 s with keep-alive and with Connection: close: zero errors', async () => {
    for (const extra of [[], ['-H', 'Connection: close']]) {
      const run = await lab.exec('client', ['wrk', '-t2', '-c16', '-d3s', '--timeout', '5s', ...extra, 'http://198.18.0.2/small.txt'], {
        timeoutMs: 20_000,
      });
      assert.equal(run.code, 0, run.stderr);
      const report = parseWrk(run.stdout);
      assert.ok(report.requests > 100, run.stdout);
      assert.equal(report.socketErrors, 0, run.stdout);
      assert.equal(report.non2xx, 0, run.stdout);
    }
  });

  test('a slow backend gets 504, a dead one 502; the server keeps serving and counted them', async () => {
    const slow = await curl(lab, ['-w', '%{http_code}', '-o', '/dev/null', 'http://198.18.0.2/slow']);
    assert.equal(slow.stdout, '504');
    await nginx.stop();
    const dead = await curl(lab, ['-w', '%{http_code}', '-o', '/dev/null', 'http://198.18.0.2/small.txt']);
    assert.equal(dead.stdout, '502');
    const summary = await frontEnd.stop();
    assert.equal(counter(summary, 'http.backend_timeouts'), 1, summary);
    assert.ok(counter(summary, 'http.backend_unreachable') >= 1, summary);
    assert.equal(counter(summary, 'tcp.flows'), 0, summary);
  });
});

describe('stateless-tcp http through a wire that loses 5 %, duplicates and reorders both ways', () => {
  let lab: Lab;
  let nginx: Nginx;
  let frontEnd: RunningFrontEnd;
  const body = randomBytes(MIB);
  before(async () => {
    requireTools('nginx', 'curl');
    lab = await createLab({ unbound: false, wire: { lossPercent: 5, duplicatePercent: 2, reorderPercent: 10, delayMs: 2, jitterMs: 1 } });
    nginx = await startNginx(lab);
    await serveFile(nginx, 'one-mib.bin', body);
    frontEnd = await startHttpFrontEnd(lab, nginx.origin, ['--metrics', METRICS_ENDPOINT]);
  });
  after(async () => {
    await lab?.close();
  });

  test('a 1 MiB body arrives intact over IPv4 and IPv6', async (t) => {
    for (const url of ['http://198.18.0.2/one-mib.bin', 'http://[2001:2::2]/one-mib.bin']) {
      const file = join(lab.tempDir, 'lossy.bin');
      const run = await curl(lab, ['-o', file, '-w', '%{http_code} %{size_download}', url], 120_000);
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stdout, `200 ${MIB}`);
      assert.equal(sha256(readFileSync(file)), sha256(body));
    }
    const wire = await lab.wireStats();
    t.diagnostic(`wire: ${JSON.stringify(wire)}`);
    assert.ok(wire.toClient.dropped > 10 && wire.toServer.dropped > 0, 'both directions lost packets');
    // curl has the whole body, but the ACK of our last segment may have been lost on the way: the
    // flow then resends it until an ACK comes. Soft state must go, once that exchange is over.
    await waitUntilNoSoftState(lab);
    const summary = await frontEnd.stop();
    t.diagnostic(summary);
    assert.ok(counter(summary, 'tcp.retransmit_timeouts') + counter(summary, 'tcp.fast_retransmits') > 0);
    assert.equal(counter(summary, 'tcp.flows'), 0, summary);
  });
});

describe('stateless-tcp http --transport kernel (ordinary TCP sockets)', () => {
  let lab: Lab;
  let frontEnd: RunningFrontEnd;
  const body = randomBytes(MIB);
  before(async () => {
    requireTools('nginx', 'curl', 'wrk');
    lab = await createLab({ unbound: false });
    const nginx = await startNginx(lab);
    await serveFile(nginx, 'one-mib.bin', body);
    frontEnd = await startHttpFrontEnd(lab, nginx.origin, ['--transport', 'kernel']);
  });
  after(async () => {
    await lab?.close();
  });

  test('the same relay: 1 MiB byte-identical over IPv4 and IPv6, X-Forwarded-For, wrk with zero errors', async () => {
    for (const url of ['http://198.18.0.2/one-mib.bin', 'http://[2001:2::2]/one-mib.bin']) {
      const file = join(lab.tempDir, 'kernel.bin');
      const run = await curl(lab, ['-o', file, '-w', '%{http_code} %{size_download}', url]);
      assert.equal(run.stdout, `200 ${MIB}`, run.stderr);
      assert.equal(sha256(readFileSync(file)), sha256(body));
    }
    const echo = await curl(lab, ['http://198.18.0.2/echo-headers']);
    assert.match(echo.stdout, /^xff=198\.18\.0\.1 /);
    const run = await lab.exec('client', ['wrk', '-t2', '-c16', '-d2s', 'http://198.18.0.2/echo-headers'], { timeoutMs: 20_000 });
    const report = parseWrk(run.stdout);
    assert.ok(report.requests > 100 && report.socketErrors === 0 && report.non2xx === 0, run.stdout);
    const summary = await frontEnd.stop();
    assert.ok(counter(summary, 'http.responses') >= report.requests, summary);
  });
});
