/**
 * UndiciBackend against a real node:http server on 127.0.0.1 (port 0): requests arrive as the
 * relay gives them, the response body comes in order and complete, the backend connection is
 * paused while the reader does not read (the server's writes block) and resumes when it does,
 * `destroy()` abandons the rest, a body that breaks off is a BackendError, a backend that does
 * not answer in time is a BackendError of kind 'timeout', one that cannot be reached of kind
 * 'unreachable'. Request bodies as the relay streams them (http/request-body.ts) arrive whole,
 * with their length or chunked; one that fails is never taken for whole; the backend client waits
 * for a slow body without timing out, and times out on a backend that stops reading it.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { BackendError, type BackendResponse } from '../../../src/http/backend.js';
import { UndiciBackend } from '../../../src/io/http-backend.js';
import { RequestBody } from '../../../src/http/request-body.js';

/** Byte `i` of the test bodies: varies within a chunk and between chunks, so order shows. */
const patternByte = (i: number): number => (i * 31 + (i >>> 10) * 7) & 0xff;

function pattern(start: number, length: number): Buffer {
  const chunk = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) chunk[i] = patternByte(start + i);
  return chunk;
}

/** Checks a body as it streams, without keeping it. */
class PatternChecker {
  received = 0;
  firstMismatch = -1;
  add(chunk: Uint8Array): void {
    for (let i = 0; i < chunk.length; i++) {
      if (this.firstMismatch < 0 && chunk[i] !== patternByte(this.received + i)) this.firstMismatch = this.received + i;
    }
    this.received += chunk.length;
  }
}

/** How the server's body stream went, seen from the server. */
interface Streaming {
  written: number;
  /** Times `res.write` returned false (the connection pushed back), and when the last did. */
  blocked: number;
  waitingForDrain: boolean;
  finished: boolean;
  /** The response closed before its end was written (the client went away). */
  abandoned: boolean;
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => void;

/**
 * Runs `run` with a backend for a node:http server on 127.0.0.1 that answers with `handler`.
 * Afterwards the server's connections are closed first: a test that failed with a body unread
 * would otherwise wait for ever in the backend's close, which lets open requests finish.
 */
async function withBackend(handler: Handler, timeoutMs: number, run: (backend: UndiciBackend) => Promise<void>): Promise<void> {
  const server = http.createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (part: Buffer) => parts.push(part));
    req.on('end', () => handler(req, res, Buffer.concat(parts)));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const backend = new UndiciBackend(`http://127.0.0.1:${port}`, timeoutMs);
  try {
    await run(backend);
  } finally {
    server.closeAllConnections();
    await backend.close();
    await new Promise((resolve) => server.close(resolve));
  }
}

/** Writes `total` pattern bytes in `chunkSize` writes, waiting for 'drain' whenever a write says so. */
function streamPattern(res: http.ServerResponse, total: number, chunkSize: number, state: Streaming): void {
  res.on('close', () => {
    if (!state.finished) state.abandoned = true;
  });
  const writeMore = (): void => {
    state.waitingForDrain = false;
    while (state.written < total) {
      const n = Math.min(chunkSize, total - state.written);
      const more = res.write(pattern(state.written, n));
      state.written += n;
      if (!more) {
        state.blocked++;
        state.waitingForDrain = true;
        res.once('drain', writeMore);
        return;
      }
    }
    res.end(() => (state.finished = true));
  };
  writeMore();
}

const newStreaming = (): Streaming => ({ written: 0, blocked: 0, waitingForDrain: false, finished: false, abandoned: false });

const GET = { method: 'GET', path: '/', headers: [] as [string, string][], body: null };

/** A request body as the relay gives one: an async iterable of its parts. */
async function* bodyOf(...parts: string[]): AsyncGenerator<Uint8Array> {
  for (const part of parts) yield Buffer.from(part);
}

async function readAll(response: BackendResponse, checker: PatternChecker): Promise<void> {
  for await (const chunk of response.body) checker.add(chunk);
}

/** Waits (bounded) until `condition` holds. */
async function until(condition: () => boolean, what: string, maxMs = 5000): Promise<void> {
  const deadline = Date.now() + maxMs;
  while (!condition() && Date.now() < deadline) await sleep(5);
  assert.ok(condition(), `timed out waiting for: ${what}`);
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  assert.fail('expected a rejection');
}

describe('UndiciBackend', () => {
  it('relays method, path, fields and body, and gives the response fields lower-cased, repeated ones apart', {
    timeout: 10_000,
  }, async () => {
    let seen: { method?: string; url?: string; headers: http.IncomingHttpHeaders; body: string } | null = null;
    await withBackend(
      (req, res, body) => {
        seen = { method: req.method, url: req.url, headers: req.headers, body: body.toString() };
        res.setHeader('Set-Cookie', ['a=1', 'b=2']);
        res.setHeader('X-Backend', 'node');
        res.writeHead(201, { 'Content-Type': 'text/plain' });
        res.end('made');
      },
      5000,
      async (backend) => {
        const response = await backend.request({
          method: 'POST',
          path: '/things?x=1',
          headers: [
            ['Host', 'example.test'],
            ['X-Forwarded-For', '198.18.0.1'],
            ['Content-Type', 'text/plain'],
            ['content-length', '5'],
          ],
          body: bodyOf('hel', 'lo'),
        });
        assert.equal(response.status, 201);
        const checker: Uint8Array[] = [];
        for await (const chunk of response.body) checker.push(chunk);
        assert.equal(Buffer.concat(checker).toString(), 'made');
        assert.ok(
          response.headers.every(([name]) => name === name.toLowerCase()),
          JSON.stringify(response.headers),
        );
        assert.deepEqual(
          response.headers.filter(([name]) => name === 'set-cookie'),
          [
            ['set-cookie', 'a=1'],
            ['set-cookie', 'b=2'],
          ],
        );
        assert.deepEqual(
          response.headers.find(([name]) => name === 'x-backend'),
          ['x-backend', 'node'],
        );
        assert.deepEqual(
          response.headers.find(([name]) => name === 'content-type'),
          ['content-type', 'text/plain'],
        );
      },
    );
    assert.ok(seen !== null);
    const request = seen as { method?: string; url?: string; headers: http.IncomingHttpHeaders; body: string };
    assert.equal(request.method, 'POST');
    assert.equal(request.url, '/things?x=1');
    assert.equal(request.headers.host, 'example.test');
    assert.equal(request.headers['x-forwarded-for'], '198.18.0.1');
    assert.equal(request.headers['content-length'], '5');
    assert.equal(request.body, 'hello');
  });

  it('skips informational responses (103 Early Hints) to the final one', { timeout: 10_000 }, async () => {
    await withBackend(
      (_req, res) => {
        res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' }, () => res.end('final'));
      },
      5000,
      async (backend) => {
        const response = await backend.request(GET);
        assert.equal(response.status, 200);
        const chunks: Uint8Array[] = [];
        for await (const chunk of response.body) chunks.push(chunk);
        assert.equal(Buffer.concat(chunks).toString(), 'final');
      },
    );
  });

  for (const framing of ['content-length', 'chunked'] as const) {
    it(`reads a 16 MiB ${framing} body in order and complete`, { timeout: 20_000 }, async () => {
      const total = 16 * 1024 * 1024;
      const state = newStreaming();
      await withBackend(
        (_req, res) => {
          if (framing === 'content-length') res.setHeader('Content-Length', total);
          streamPattern(res, total, 100_003, state);
        },
        5000,
        async (backend) => {
          const response = await backend.request(GET);
          assert.equal(response.status, 200);
          assert.equal(
            response.headers.some(([name, value]) => name === 'transfer-encoding' && value === 'chunked'),
            framing === 'chunked',
          );
          const checker = new PatternChecker();
          await readAll(response, checker);
          assert.equal(checker.firstMismatch, -1, `byte ${checker.firstMismatch} out of order or wrong`);
          assert.equal(checker.received, total);
        },
      );
      assert.equal(state.finished, true);
    });
  }

  it('pauses the backend connection while the reader does not read, and resumes when it does', { timeout: 30_000 }, async (t) => {
    // Far more than loopback socket buffers and the backend's queue of chunks hold together.
    const total = 256 * 1024 * 1024;
    const state = newStreaming();
    await withBackend(
      (_req, res) => {
        res.setHeader('Content-Length', total);
        streamPattern(res, total, 64 * 1024, state);
      },
      10_000,
      async (backend) => {
        const response = await backend.request(GET);
        const checker = new PatternChecker();
        const iterator = response.body[Symbol.asyncIterator]();
        // Read a little, then stop reading.
        for (let i = 0; i < 4; i++) {
          const { value, done } = await iterator.next();
          assert.equal(done, false);
          checker.add(value!);
        }
        await until(() => state.waitingForDrain, 'the server to be pushed back');
        // Socket buffers may still grow a little (receive-window autotuning): let them settle,
        // then, still not reading, the server stays blocked and its writes do not move.
        await sleep(200);
        const writtenWhenSettled = state.written;
        for (let waited = 0; waited < 500; waited += 50) {
          await sleep(50);
          assert.equal(state.waitingForDrain, true, `the server was drained at ${state.written} bytes though nobody read`);
        }
        assert.equal(state.written, writtenWhenSettled, 'the server wrote more though nobody read');
        t.diagnostic(
          `server blocked after ${state.written} bytes, ${state.written - checker.received} of them held between server and reader`,
        );
        assert.ok(state.written <= 64 * 1024 * 1024, `the server wrote ${state.written} of ${total} bytes with nobody reading`);
        assert.equal(state.finished, false);

        // Reading again: the server resumes, and everything arrives in order.
        for (;;) {
          const { value, done } = await iterator.next();
          if (done) break;
          checker.add(value);
        }
        assert.equal(checker.firstMismatch, -1, `byte ${checker.firstMismatch} out of order or wrong`);
        assert.equal(checker.received, total);
        assert.ok(state.blocked > 1, 'pushed back more than once');
      },
    );
    assert.equal(state.finished, true);
  });

  it('abandons the rest of a body on destroy(), and serves the next request', { timeout: 20_000 }, async () => {
    const total = 64 * 1024 * 1024;
    const state = newStreaming();
    let requests = 0;
    await withBackend(
      (req, res) => {
        requests++;
        if (req.url === '/small') {
          res.end('small');
          return;
        }
        res.setHeader('Content-Length', total);
        streamPattern(res, total, 64 * 1024, state);
      },
      10_000,
      async (backend) => {
        const response = await backend.request({ ...GET, path: '/big' });
        const iterator = response.body[Symbol.asyncIterator]();
        const first = await iterator.next();
        assert.equal(first.done, false);
        response.body.destroy();
        assert.deepEqual(await iterator.next(), { value: undefined, done: true }, 'nothing more after destroy');
        await until(() => state.abandoned, 'the server to see its response abandoned');
        assert.ok(state.written < total);

        const next = await backend.request({ ...GET, path: '/small' });
        const chunks: Uint8Array[] = [];
        for await (const chunk of next.body) chunks.push(chunk);
        assert.equal(Buffer.concat(chunks).toString(), 'small');
        assert.equal(requests, 2);
      },
    );
  });

  it('abandons the rest when a for-await loop over the body breaks', { timeout: 20_000 }, async () => {
    const total = 64 * 1024 * 1024;
    const state = newStreaming();
    await withBackend(
      (_req, res) => {
        res.setHeader('Content-Length', total);
        streamPattern(res, total, 64 * 1024, state);
      },
      10_000,
      async (backend) => {
        const response = await backend.request(GET);
        let chunks = 0;
        for await (const chunk of response.body) {
          assert.ok(chunk.length > 0);
          if (++chunks === 3) break;
        }
        await until(() => state.abandoned, 'the server to see its response abandoned');
      },
    );
  });

  for (const framing of ['content-length', 'chunked'] as const) {
    it(`reports a ${framing} body that breaks off as a BackendError`, { timeout: 10_000 }, async () => {
      await withBackend(
        (_req, res) => {
          if (framing === 'content-length') res.setHeader('Content-Length', 1_000_000);
          res.write(pattern(0, 10_000), () => setTimeout(() => res.socket?.destroy(), 20));
        },
        5000,
        async (backend) => {
          const response = await backend.request(GET);
          assert.equal(response.status, 200);
          const checker = new PatternChecker();
          const error = await rejection(readAll(response, checker));
          assert.ok(error instanceof BackendError, `${String(error)} is a BackendError`);
          assert.equal(error.kind, 'unreachable');
          assert.equal(checker.received, 10_000, 'what came before the break');
          assert.equal(checker.firstMismatch, -1);
        },
      );
    });
  }

  it("gives a BackendError of kind 'timeout' when the headers do not come in time", { timeout: 10_000 }, async () => {
    let arrived = 0;
    await withBackend(
      () => void arrived++, // never answers
      200,
      async (backend) => {
        const started = Date.now();
        const error = await rejection(backend.request(GET));
        const elapsed = Date.now() - started;
        assert.ok(error instanceof BackendError, `${String(error)} is a BackendError`);
        assert.equal(error.kind, 'timeout');
        assert.equal(arrived, 1);
        assert.ok(elapsed >= 150 && elapsed < 5000, `after ${elapsed} ms`);
      },
    );
  });

  it("gives a BackendError of kind 'timeout' when the body stalls", { timeout: 10_000 }, async () => {
    await withBackend(
      (_req, res) => {
        res.setHeader('Content-Length', 100);
        res.write('the start'); // and nothing more
      },
      200,
      async (backend) => {
        const response = await backend.request(GET);
        const chunks: Uint8Array[] = [];
        const error = await rejection(
          (async () => {
            for await (const chunk of response.body) chunks.push(chunk);
          })(),
        );
        assert.ok(error instanceof BackendError, `${String(error)} is a BackendError`);
        assert.equal(error.kind, 'timeout');
        assert.equal(Buffer.concat(chunks).toString(), 'the start');
      },
    );
  });

  it("gives a BackendError of kind 'unreachable' when nothing listens", { timeout: 10_000 }, async () => {
    // A port that was just free: listen, note it, close.
    const probe = http.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as AddressInfo;
    await new Promise((resolve) => probe.close(resolve));
    const backend = new UndiciBackend(`http://127.0.0.1:${port}`, 2000);
    try {
      const error = await rejection(backend.request(GET));
      assert.ok(error instanceof BackendError, `${String(error)} is a BackendError`);
      assert.equal(error.kind, 'unreachable');
      assert.match(error.message, /ECONNREFUSED/);
    } finally {
      await backend.close();
    }
  });
});

describe('UndiciBackend with request bodies as the relay streams them', () => {
  /** A RequestBody fed by the test, with what it released and handed out. */
  function streamed(framing: number | 'chunked'): { body: RequestBody; released: () => number; feed: (text: string) => void } {
    let released = 0;
    const body = new RequestBody(framing, 0, {
      release: (n) => {
        released += n;
      },
      read: () => {},
    });
    const feed = (text: string): void => {
      const bytes = Buffer.from(text, 'latin1');
      assert.equal(body.take(bytes, 0, bytes.length), bytes.length);
      bytes.fill(0x7e); // the transport's bytes are valid only during the call
    };
    return { body, released: () => released, feed };
  }

  for (const framing of ['content-length', 'chunked'] as const) {
    it(`sends a ${framing} body as it comes — its first part there before undici starts writing — whole`, { timeout: 10_000 }, async () => {
      let seen: { headers: http.IncomingHttpHeaders; body: string } | null = null;
      await withBackend(
        (req, res, body) => {
          seen = { headers: req.headers, body: body.toString() };
          res.writeHead(201).end();
        },
        5000,
        async (backend) => {
          const wire = framing === 'chunked' ? '5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n' : 'hello world';
          const { body, released, feed } = streamed(framing === 'chunked' ? 'chunked' : 11);
          feed(wire.slice(0, 9));
          const headers: [string, string][] = framing === 'chunked' ? [] : [['content-length', '11']];
          const responding = backend.request({ method: 'PUT', path: '/up', headers, body });
          await sleep(20);
          feed(wire.slice(9));
          const response = await responding;
          assert.equal(response.status, 201);
          for await (const _ of response.body);
          body.close();
          assert.equal(released(), wire.length);
        },
      );
      const request = seen as unknown as { headers: http.IncomingHttpHeaders; body: string };
      assert.equal(request.body, 'hello world');
      if (framing === 'chunked') assert.equal(request.headers['transfer-encoding'], 'chunked');
      else assert.equal(request.headers['content-length'], '11');
    });
  }

  it('a body that fails is never taken for whole: the backend sees the request broken off, the request rejects', {
    timeout: 10_000,
  }, async () => {
    let ended = false;
    let broken = false;
    const server = http.createServer((req) => {
      req.on('data', () => {});
      req.on('end', () => (ended = true));
      req.on('close', () => (broken = !req.complete));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const backend = new UndiciBackend(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, 5000);
    try {
      const { body, feed } = streamed('chunked');
      feed('5\r\nhello\r\n');
      const responding = rejection(backend.request({ method: 'PUT', path: '/up', headers: [], body }));
      await sleep(50);
      body.fail(400);
      assert.ok((await responding) instanceof BackendError);
      await until(() => broken, 'the backend to see the request broken off');
      assert.equal(ended, false);
    } finally {
      server.closeAllConnections();
      await backend.close();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('waits for a slow client’s body longer than its timeout: the backend is not the one waited for', { timeout: 10_000 }, async () => {
    await withBackend(
      (_req, res, received) => res.end(`got ${received.length}`),
      200,
      async (backend) => {
        const { body, feed } = streamed(6);
        feed('abc');
        const responding = backend.request({ method: 'PUT', path: '/', headers: [['content-length', '6']], body });
        await sleep(700);
        feed('def');
        const response = await responding;
        const chunks: Uint8Array[] = [];
        for await (const chunk of response.body) chunks.push(chunk);
        assert.equal(Buffer.concat(chunks).toString(), 'got 6');
      },
    );
  });

  it("gives a BackendError of kind 'timeout' when the backend stops reading the body", { timeout: 20_000 }, async () => {
    const sockets = new Set<import('node:net').Socket>();
    const server = http.createServer((req) => req.pause()); // reads the head, never the body
    server.on('connection', (socket) => sockets.add(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const backend = new UndiciBackend(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, 300);
    try {
      const total = 64 * 1024 * 1024;
      const { body, feed } = streamed(total);
      const responding = rejection(backend.request({ method: 'PUT', path: '/', headers: [['content-length', String(total)]], body }));
      // Feed as the relay would, a window at a time, while the backend client takes it.
      const piece = 'x'.repeat(65536);
      let fed = 0;
      let error: unknown;
      let settled = false;
      responding.then((e) => {
        error = e;
        settled = true;
      });
      while (!settled && fed < total) {
        feed(piece);
        fed += piece.length;
        await sleep(1);
      }
      await until(() => settled, 'the request to fail');
      assert.ok(error instanceof BackendError, String(error));
      assert.equal(error.kind, 'timeout');
      assert.ok(fed < total, 'it stopped before the whole body');
    } finally {
      for (const socket of sockets) socket.destroy();
      await backend.close();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
