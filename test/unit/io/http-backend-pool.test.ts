/**
 * HttpBackendPool against two real node:http servers on 127.0.0.1: requests go to the backend
 * with the fewest outstanding and each is counted there; a GET that a stopped backend refuses is
 * retried once on the other, a POST with a body is not (502 for the relay); refusals mark the
 * backend down after --health-check-down-after of them, and with none up a request fails at once
 * and the state is said once; an upload the client gave up on does not count against the
 * backend; a health probe that passes brings it back; a probe answered 503 counts as failed.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { BackendError, type BackendRequest } from '../../../src/http/backend.js';
import { BodyNotWhole } from '../../../src/http/request-body.js';
import { HttpBackendPool, backendCounterNames, type HttpHealthCheck } from '../../../src/io/http-backend-pool.js';

interface Backend {
  server: http.Server;
  port: number;
  /** Requests it received, by path. */
  paths: string[];
  /** What it answers the health probe (`/health`). */
  healthStatus: number;
}

async function listen(backend: Backend, port = 0): Promise<void> {
  await new Promise<void>((resolve) => backend.server.listen(port, '127.0.0.1', resolve));
  backend.port = (backend.server.address() as AddressInfo).port;
}

async function startBackend(): Promise<Backend> {
  const backend: Backend = { server: null as unknown as http.Server, port: 0, paths: [], healthStatus: 200 };
  backend.server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      backend.paths.push(req.url!);
      res.statusCode = req.url === '/health' ? backend.healthStatus : 200;
      // `/hold`: the body's end comes later, so that the request stays outstanding meanwhile.
      if (req.url === '/hold') res.write('held ');
      setTimeout(() => res.end(`port ${backend.port}`), req.url === '/hold' ? 300 : 0);
    });
  });
  await listen(backend);
  return backend;
}

async function stopBackend(backend: Backend): Promise<void> {
  backend.server.closeAllConnections();
  await new Promise<void>((resolve) => backend.server.close(() => resolve()));
}

const CHECK: HttpHealthCheck = { path: '/health', intervalMs: 100, timeoutMs: 80, downAfter: 2, upAfter: 1 };
const COUNTERS = 3; // any relay counters before the pool's

function poolOf(backends: Backend[], lines: string[], healthCheck = CHECK) {
  const names = backendCounterNames(backends.length);
  const counts = new Float64Array(COUNTERS + names.length);
  const pool = new HttpBackendPool(
    backends.map((b) => `http://127.0.0.1:${b.port}`),
    {
      timeoutMs: 2000,
      counts,
      firstBackendCounter: COUNTERS,
      downAtStart: [],
      healthCheck,
      policy: 'least-outstanding',
      weights: backends.map(() => 1),
      onStateChange: (line) => lines.push(line),
    },
  );
  const count = (name: string): number => counts[COUNTERS + names.indexOf(name)]!;
  return { pool, count };
}

const get = (path: string): BackendRequest => ({ method: 'GET', path, headers: [], body: null });

async function text(pool: HttpBackendPool, request: BackendRequest): Promise<string> {
  const response = await pool.request(request);
  let body = '';
  for await (const chunk of response.body) body += Buffer.from(chunk).toString();
  return body;
}

describe('HttpBackendPool', () => {
  it('least outstanding: a request in flight sends the next to the other backend; each counted, none left outstanding', async () => {
    const a = await startBackend();
    const b = await startBackend();
    const lines: string[] = [];
    const { pool, count } = poolOf([a, b], lines, { ...CHECK, intervalMs: 60_000 });
    try {
      const first = await pool.request(get('/hold')); // its body not yet whole: still outstanding
      assert.deepEqual([...pool.selection.outstanding], [1, 0]);
      assert.equal(await text(pool, get('/two')), `port ${b.port}`);
      for await (const _ of first.body);
      assert.deepEqual([...pool.selection.outstanding], [0, 0]);
      assert.equal(await text(pool, get('/three')), `port ${a.port}`, 'ties go to the first');
      assert.equal(count('upstream0_requests'), 2);
      assert.equal(count('upstream1_requests'), 1);
      assert.deepEqual(lines, []);
    } finally {
      await pool.close();
      await Promise.all([stopBackend(a), stopBackend(b)]);
    }
  });

  it('a stopped backend: GET retried on the other, POST with a body not; down after 2 failures, none up fails at once, probes bring it back', async () => {
    const a = await startBackend();
    const b = await startBackend();
    const lines: string[] = [];
    const { pool, count } = poolOf([a, b], lines, { ...CHECK, intervalMs: 60_000 });
    try {
      await stopBackend(a);
      assert.equal(await text(pool, get('/retried')), `port ${b.port}`);
      assert.equal(count('upstream0_failures'), 1);
      assert.equal(count('upstream0_retried'), 1);
      assert.equal(pool.isUp(0), true);
      const post: BackendRequest = {
        method: 'POST',
        path: '/post',
        headers: [['content-length', '2']],
        body: (async function* () {
          yield Buffer.from('hi');
        })(),
      };
      await assert.rejects(pool.request(post), (error: unknown) => error instanceof BackendError && error.kind === 'unreachable');
      assert.equal(count('upstream0_retried'), 1, 'a body streams once: not retried');
      assert.equal(pool.isUp(0), false, 'down after 2 failures in a row');
      assert.match(
        lines.join('\n'),
        new RegExp(`backend 127\\.0\\.0\\.1:${a.port} is down after 2 failures in a row; the last: .*ECONNREFUSED`),
      );
      assert.equal(await text(pool, get('/only-b')), `port ${b.port}`);
      assert.equal(count('upstream0_requests'), 2, 'a down backend gets no requests');

      await stopBackend(b);
      await assert.rejects(pool.request(get('/x')), (error: unknown) => error instanceof BackendError && error.kind === 'unreachable');
      await assert.rejects(pool.request(get('/y')), (error: unknown) => error instanceof BackendError && error.kind === 'unreachable');
      assert.equal(pool.isUp(1), false);
      const failures = count('upstream1_failures');
      await assert.rejects(pool.request(get('/z')), (error: unknown) => error instanceof BackendError && error.kind === 'no-backend-up');
      await assert.rejects(pool.request(get('/z')), (error: unknown) => error instanceof BackendError && error.kind === 'no-backend-up');
      assert.equal(count('upstream1_failures'), failures, 'refused at once: no backend tried');
      assert.equal(lines.filter((line) => line.startsWith('no backend is up')).length, 1, lines.join('\n'));
    } finally {
      await pool.close();
    }
  });

  it("an upload the client gave up on is the request's failure, not the backend's", async () => {
    const a = await startBackend();
    const b = await startBackend();
    const { pool, count } = poolOf([a, b], [], { ...CHECK, intervalMs: 60_000 });
    try {
      const upload: BackendRequest = {
        method: 'PUT',
        path: '/upload',
        headers: [['content-length', '10']],
        body: (async function* () {
          yield Buffer.from('part');
          throw new BodyNotWhole('request body not whole');
        })(),
      };
      await assert.rejects(pool.request(upload), (error: unknown) => error instanceof BackendError && error.kind === 'aborted');
      assert.equal(count('upstream0_requests'), 1);
      assert.equal(count('upstream0_failures'), 0);
      for (let i = 0; i < 20 && pool.selection.outstanding[0] !== 0; i++) await sleep(10);
      assert.deepEqual([...pool.selection.outstanding], [0, 0]);
    } finally {
      await pool.close();
      await Promise.all([stopBackend(a), stopBackend(b)]);
    }
  });

  it('health probes: GET --health-check-path each interval; a 503 fails, down after 2; up again after one that passes', async () => {
    const a = await startBackend();
    const b = await startBackend();
    const lines: string[] = [];
    const { pool, count } = poolOf([a, b], lines);
    try {
      a.healthStatus = 503;
      for (let i = 0; i < 50 && pool.isUp(0); i++) await sleep(50);
      assert.equal(pool.isUp(0), false, lines.join('\n'));
      assert.match(lines.join('\n'), /is down after 2 failures in a row; the last: backend .* answered GET \/health with 503/);
      assert.ok(count('upstream0_probe_failures') >= 2);
      assert.equal(pool.isUp(1), true);
      a.healthStatus = 404; // a server that answers is up, whatever it thinks of the path
      for (let i = 0; i < 50 && !pool.isUp(0); i++) await sleep(50);
      assert.equal(pool.isUp(0), true);
      assert.equal(count('upstream0_marked_down'), 1);
      assert.equal(count('upstream0_marked_up'), 1);
      assert.match(lines.at(-1)!, new RegExp(`backend 127\\.0\\.0\\.1:${a.port} is up again`));
      assert.ok(b.paths.includes('/health'));
    } finally {
      await pool.close();
      await Promise.all([stopBackend(a), stopBackend(b)]);
    }
  });
});
