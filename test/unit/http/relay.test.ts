/**
 * HttpRelay between a recording transport (tcp/transport.ts: a connection is a name, what is sent
 * on it is recorded) and an in-memory backend (http/backend.ts HttpBackend, whose responses and
 * bodies the test gives when it chooses). What the relay promises: requests relayed with
 * hop-by-hop fields dropped and X-Forwarded-For added; pipelined requests answered in order, one
 * at a time; responses re-framed for the client (Content-Length kept, chunked for HTTP/1.1
 * without one, close for HTTP/1.0 without one; no body for HEAD, 204, 304); `Connection: close`
 * and every error closing the connection; 400/413/431/501/505 for requests it cannot relay,
 * 502/504 when the backend fails, RST when a body breaks off after its head; the body streamed
 * only while the transport has room; a connection closed under a response stops it. Request
 * bodies streamed to the backend as they arrive, released to the transport as the backend reads
 * them; 413 over the limit, 100 Continue and 417 for expectations, 400 for a body cut off. And
 * every answer the relay expects it gives, exactly once.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BackendError, type BackendRequest, type BackendResponse, type HttpBackend } from '../../../src/http/backend.js';
import { HttpCounter, HttpRelay } from '../../../src/http/relay.js';
import { wholeRequestLength } from '../../../src/http/request.js';
import type { Transport } from '../../../src/tcp/transport.js';

const CLIENT = '198.18.0.1';
/** The relay's body limit in these tests. */
const MAX_BODY = 1000;

/** A response body the test feeds chunk by chunk; records how far the relay read it. */
class FakeBody implements AsyncIterable<Uint8Array> {
  private readonly chunks: Uint8Array[] = [];
  private ended = false;
  private error: Error | null = null;
  private waiting: { resolve: (result: IteratorResult<Uint8Array>) => void; reject: (error: Error) => void } | null = null;
  destroyed = false;
  /** Chunks the relay has taken. */
  taken = 0;

  push(text: string | Uint8Array): this {
    const chunk = typeof text === 'string' ? Buffer.from(text, 'latin1') : text;
    if (this.waiting !== null) {
      const { resolve } = this.waiting;
      this.waiting = null;
      this.taken++;
      resolve({ value: chunk, done: false });
    } else {
      this.chunks.push(chunk);
    }
    return this;
  }

  end(): this {
    this.ended = true;
    if (this.waiting !== null && this.chunks.length === 0) {
      const { resolve } = this.waiting;
      this.waiting = null;
      resolve({ value: undefined, done: true });
    }
    return this;
  }

  fail(error: Error): void {
    this.error = error;
    if (this.waiting !== null) {
      const { reject } = this.waiting;
      this.waiting = null;
      reject(error);
    }
  }

  destroy(): void {
    this.destroyed = true;
    this.chunks.length = 0;
    this.end();
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return {
      next: () => {
        const chunk = this.chunks.shift();
        if (chunk !== undefined) {
          this.taken++;
          return Promise.resolve({ value: chunk, done: false });
        }
        if (this.error !== null) return Promise.reject(this.error);
        if (this.ended || this.destroyed) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
      },
      return: () => {
        this.destroy();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}

/**
 * Reads a request body as undici does: one read after another, each once the previous one is
 * "written"; all of it as text, or the error its read failed with.
 */
async function readAll(body: AsyncIterable<Uint8Array> | null): Promise<string> {
  if (body === null) return '';
  let text = '';
  try {
    for await (const chunk of body) text += Buffer.from(chunk).toString('latin1');
  } catch (error) {
    return `${text}<${(error as Error).constructor.name}>`;
  }
  return text;
}

/** The backend: requests recorded; each answered (or failed) when the test says. */
class FakeBackend implements HttpBackend {
  readonly requests: BackendRequest[] = [];
  private readonly pending: { resolve: (response: BackendResponse) => void; reject: (error: unknown) => void }[] = [];
  closed = false;

  request(request: BackendRequest): Promise<BackendResponse> {
    this.requests.push(request);
    return new Promise((resolve, reject) => this.pending.push({ resolve, reject }));
  }

  /** Answers request `index` with this status and fields (names lower-cased, as undici gives them). */
  respond(index: number, status: number, headers: [string, string][], body = new FakeBody()): FakeBody {
    this.pending[index]!.resolve({ status, headers, body });
    return body;
  }

  fail(index: number, error: unknown): void {
    this.pending[index]!.reject(error);
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}

/** The transport: what the relay sends on each connection, as text, and what it asks for. */
class RecordingTransport implements Transport<string> {
  readonly owed = new Map<string, number>();
  /** Connections whose body streams (beginBody … endBody). */
  readonly streaming = new Set<string>();
  /** Body bytes the relay holds (taken by onBody, not released), and all it released. */
  readonly held = new Map<string, number>();
  released = 0;
  readonly output = new Map<string, string>();
  readonly events: string[] = [];
  readonly closing = new Set<string>();
  readonly closed = new Set<string>();
  readonly resets = new Set<string>();
  answersDropped = 0;
  /** What `answerPart` returns once the bytes are queued (the send buffer's room). */
  room: (connection: string) => boolean = () => true;

  expectAnswer(connection: string): void {
    this.owed.set(connection, (this.owed.get(connection) ?? 0) + 1);
  }

  answerPart(connection: string, data: Uint8Array, offset: number, length: number): boolean {
    assert.ok((this.owed.get(connection) ?? 0) > 0, 'a part of an answer that is owed');
    if (this.closed.has(connection)) return false;
    this.write(connection, data, offset, length);
    this.events.push(`part ${connection}`);
    return this.room(connection);
  }

  answer(connection: string, data: Uint8Array, offset: number, length: number): void {
    const owed = this.owed.get(connection) ?? 0;
    assert.ok(owed > 0, `an answer on ${connection} that was not expected`);
    this.owed.set(connection, owed - 1);
    this.events.push(`answer ${connection}`);
    if (this.closed.has(connection)) {
      this.answersDropped++;
      return;
    }
    this.write(connection, data, offset, length);
  }

  closeWhenAnswered(connection: string): void {
    this.events.push(`closeWhenAnswered ${connection}`);
    this.closing.add(connection);
  }

  beginBody(connection: string): void {
    this.streaming.add(connection);
  }

  endBody(connection: string): void {
    this.streaming.delete(connection);
  }

  releaseBody(connection: string, length: number): void {
    const held = (this.held.get(connection) ?? 0) - length;
    assert.ok(held >= 0, `released more than the relay held on ${connection}`);
    this.held.set(connection, held);
    this.released += length;
  }

  reset(connection: string): void {
    this.events.push(`reset ${connection}`);
    this.resets.add(connection);
    this.closed.add(connection);
  }

  isClosed(connection: string): boolean {
    return this.closed.has(connection);
  }

  clientAddress(): string {
    return CLIENT;
  }

  text(connection: string): string {
    return this.output.get(connection) ?? '';
  }

  private write(connection: string, data: Uint8Array, offset: number, length: number): void {
    this.output.set(connection, this.text(connection) + Buffer.from(data.subarray(offset, offset + length)).toString('latin1'));
  }
}

const transports = new WeakMap<HttpRelay<string>, RecordingTransport>();

function setup(): { relay: HttpRelay<string>; backend: FakeBackend; transport: RecordingTransport; clock: { ms: number } } {
  const backend = new FakeBackend();
  const transport = new RecordingTransport();
  const clock = { ms: 1_000_000 };
  const relay = new HttpRelay<string>({ backend, now: () => clock.ms, maxBodyBytes: MAX_BODY });
  relay.attach(transport);
  transports.set(relay, transport);
  return { relay, backend, transport, clock };
}

/**
 * Hands the relay `text` as it arrived on `connection`, as a transport does: heads one at a
 * time (as `wholeRequestLength` frames them), the bytes after one with a body to `onBody` until
 * it ends. At a non-zero offset of a plain Uint8Array (as both transports hand it: a ring slot,
 * a ByteQueue) or of a Buffer, overwritten after the calls: the bytes are valid only during them.
 * Returns how much of `text` was taken (a partial head is not).
 */
function send(relay: HttpRelay<string>, connection: string, text: string, asBuffer = false): number {
  const transport = transports.get(relay)!;
  const padded = Buffer.from(`junk${text}junk`, 'latin1');
  const bytes = asBuffer ? padded : Uint8Array.from(padded);
  const end = bytes.length - 4;
  let p = 4;
  while (p < end) {
    if (transport.streaming.has(connection)) {
      // Held while the relay looks at them, as the transports do: what it releases meanwhile is counted.
      const offered = end - p;
      transport.held.set(connection, (transport.held.get(connection) ?? 0) + offered);
      const n = relay.onBody(connection, bytes, p, offered);
      transport.held.set(connection, transport.held.get(connection)! - (offered - n));
      p += n;
      if (transport.streaming.has(connection)) break;
      continue;
    }
    const n = wholeRequestLength(bytes, p, end - p);
    if (n === 0) break;
    relay.onMessages(connection, bytes, p, n);
    p += n;
  }
  bytes.fill(0x7e);
  return p - 4;
}

/** Lets the relay's promises run: a few turns of the event loop, at most `maxTurns`. */
async function until(condition: () => boolean, what: string, maxTurns = 200): Promise<void> {
  for (let i = 0; i < maxTurns && !condition(); i++) await new Promise((resolve) => setImmediate(resolve));
  assert.ok(condition(), `timed out waiting for: ${what}`);
}

async function turns(n = 10): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
}

const get = (target = '/', fields = ''): string => `GET ${target} HTTP/1.1\r\nHost: example.test\r\n${fields}\r\n`;

/** A response as the client reads it: status line, fields, body. */
function parseResponse(text: string): { status: string; fields: [string, string][]; body: string } {
  const end = text.indexOf('\r\n\r\n');
  assert.ok(end >= 0, `a response head in ${JSON.stringify(text)}`);
  const [status, ...lines] = text.slice(0, end).split('\r\n');
  return { status: status!, fields: lines.map((line) => line.split(': ', 2) as [string, string]), body: text.slice(end + 4) };
}

function errorResponse(status: number, reason: string): string {
  const body = `${status} ${reason}\n`;
  return `HTTP/1.1 ${status} ${reason}\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`;
}

describe('HttpRelay: the request to the backend', () => {
  it('relays method, target and fields, without hop-by-hop ones, adding X-Forwarded-For', async () => {
    const { relay, backend, transport } = setup();
    send(
      relay,
      'c',
      'GET /search?q=stateless HTTP/1.1\r\nHost: example.test\r\nUser-Agent: curl/8.5.0\r\nConnection: keep-alive, X-Trace\r\n' +
        'Keep-Alive: timeout=5\r\nX-Trace: 1\r\nTE: trailers\r\nUpgrade: h2c\r\nProxy-Authorization: Basic eA==\r\nProxy-Connection: keep-alive\r\nAccept: */*\r\n\r\n',
    );
    await until(() => backend.requests.length === 1, 'the backend request');
    assert.deepEqual(backend.requests[0], {
      method: 'GET',
      path: '/search?q=stateless',
      headers: [
        ['Host', 'example.test'],
        ['User-Agent', 'curl/8.5.0'],
        ['Accept', '*/*'],
        ['x-forwarded-for', CLIENT],
      ],
      body: null,
    });
    assert.equal(transport.owed.get('c'), 1);
    assert.equal(relay.counts[HttpCounter.REQUESTS], 1);
  });

  it('appends the client to an X-Forwarded-For it already has, and relays a body with its length, without Expect', async () => {
    const { relay, backend, transport } = setup();
    send(
      relay,
      'c',
      'POST /form HTTP/1.1\r\nHost: example.test\r\nX-Forwarded-For: 10.0.0.1\r\nContent-Length: 11\r\nExpect: 100-continue\r\n' +
        'x-forwarded-for: 10.0.0.2\r\nContent-Type: text/plain\r\n\r\nhello world',
    );
    await until(() => backend.requests.length === 1, 'the backend request');
    const request = backend.requests[0]!;
    assert.equal(request.method, 'POST');
    assert.deepEqual(request.headers, [
      ['Host', 'example.test'],
      ['Content-Type', 'text/plain'],
      ['x-forwarded-for', `10.0.0.1, 10.0.0.2, ${CLIENT}`],
      ['content-length', '11'],
    ]);
    assert.equal(await readAll(request.body), 'hello world');
    assert.equal(transport.text('c'), '', 'no 100 Continue: the body came with the head');
    assert.equal(relay.counts[HttpCounter.BODY_BYTES], 11);
  });

  it('copies the body out of bytes handed as a Buffer, which the transport may reuse', async () => {
    const { relay, backend } = setup();
    send(relay, 'c', `POST /a HTTP/1.1\r\nHost: example.test\r\nContent-Length: 5\r\n\r\nhello${get('/b')}`, true);
    await until(() => backend.requests.length === 1, 'the backend request');
    assert.equal(await readAll(backend.requests[0]!.body), 'hello');
  });

  it('relays a chunked request body de-chunked, for the backend client to chunk anew', async () => {
    const { relay, backend } = setup();
    send(relay, 'c', 'POST /up HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n');
    await until(() => backend.requests.length === 1, 'the backend request');
    assert.equal(await readAll(backend.requests[0]!.body), 'hello world');
    assert.deepEqual(
      backend.requests[0]!.headers.map(([name]) => name),
      ['Host', 'x-forwarded-for'],
    );
  });
});

describe('HttpRelay: responses re-framed for the client', () => {
  it('keeps Content-Length, drops the backend’s hop-by-hop fields, keeps the connection open', async () => {
    const { relay, backend, transport } = setup();
    send(relay, 'c', get('/a'));
    await until(() => backend.requests.length === 1, 'the backend request');
    backend
      .respond(0, 200, [
        ['content-type', 'text/plain'],
        ['content-length', '11'],
        ['connection', 'keep-alive'],
        ['keep-alive', 'timeout=5'],
        ['set-cookie', 'a=1'],
        ['set-cookie', 'b=2'],
        ['trailer', 'x-checksum'],
      ])
      .push('hello ')
      .push('world')
      .end();
    await until(() => transport.owed.get('c') === 0, 'the answer');
    assert.equal(
      transport.text('c'),
      'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 11\r\nset-cookie: a=1\r\nset-cookie: b=2\r\n\r\nhello world',
    );
    assert.equal(transport.closing.has('c'), false);
    assert.equal(relay.counts[HttpCounter.RESPONSES], 1);
  });

  it('sends a body without a length chunked to an HTTP/1.1 client, skipping empty chunks', async () => {
    const { relay, backend, transport } = setup();
    send(relay, 'c', get());
    await until(() => backend.requests.length === 1, 'the backend request');
    backend
      .respond(0, 200, [['content-type', 'text/html']])
      .push('<p>')
      .push(new Uint8Array(0))
      .push('hello, world</p>')
      .end();
    await until(() => transport.owed.get('c') === 0, 'the answer');
    assert.equal(
      transport.text('c'),
      'HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ntransfer-encoding: chunked\r\n\r\n3\r\n<p>\r\n10\r\nhello, world</p>\r\n0\r\n\r\n',
    );
    assert.equal(transport.closing.has('c'), false);
  });

  it('sends a body without a length to an HTTP/1.0 client up to the close', async () => {
    const { relay, backend, transport } = setup();
    send(relay, 'c', 'GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
    await until(() => backend.requests.length === 1, 'the backend request');
    backend
      .respond(0, 200, [['content-type', 'text/plain']])
      .push('all of it')
      .end();
    await until(() => transport.owed.get('c') === 0, 'the answer');
    assert.equal(transport.text('c'), 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nall of it');
    assert.equal(transport.closing.has('c'), true);
  });

  it('keeps an HTTP/1.0 keep-alive connection open when the length is known, and says so', async () => {
    const { relay, backend, transport } = setup();
    send(relay, 'c', 'GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
    await until(() => backend.requests.length === 1, 'the backend request');
    backend
      .respond(0, 200, [['content-length', '2']])
      .push('ok')
      .end();
    await until(() => transport.owed.get('c') === 0, 'the answer');
    assert.equal(transport.text('c'), 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok');
    assert.equal(transport.closing.has('c'), false);
  });

  it('closes an HTTP/1.0 connection that did not ask to be kept', async () => {
    const { relay, backend, transport } = setup();
    send(relay, 'c', 'GET / HTTP/1.0\r\n\r\n');
    await until(() => backend.requests.length === 1, 'the backend request');
    backend
      .respond(0, 200, [['content-length', '2']])
      .push('ok')
      .end();
    await until(() => transport.owed.get('c') === 0, 'the answer');
    assert.equal(transport.text('c'), 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok');
    assert.equal(transport.closing.has('c'), true);
  });

  for (const [what, request, status, reason] of [
    ['HEAD', 'HEAD / HTTP/1.1\r\nHost: example.test\r\n\r\n', 200, 'OK'],
    ['204', get(), 204, 'No Content'],
    ['304', get('/', 'If-None-Match: "x"\r\n'), 304, 'Not Modified'],
  ] as const) {
    it(`sends no body for ${what}, unchunked, and abandons the backend's`, async () => {
      const { relay, backend, transport } = setup();
      send(relay, 'c', request);
      await until(() => backend.requests.length === 1, 'the backend request');
      const fields: [string, string][] = status === 200 ? [['content-length', '1234']] : [['etag', '"x"']];
      const body = backend.respond(0, status, fields).push('must not be sent');
      await until(() => transport.owed.get('c') === 0, 'the answer');
      const head = status === 200 ? 'content-length: 1234\r\n' : 'etag: "x"\r\n';
      assert.equal(transport.text('c'), `HTTP/1.1 ${status} ${reason}\r\n${head}\r\n`);
      assert.equal(body.destroyed, true);
      assert.equal(transport.closing.has('c'), false, 'still keep-alive');
    });
  }

  it('closes after the response when the client said Connection: close', async () => {
    const { relay, backend, transport } = setup();
    send(relay, 'c', get('/', 'Connection: close\r\n'));
    await until(() => backend.requests.length === 1, 'the backend request');
    backend
      .respond(0, 200, [['content-length', '2']])
      .push('ok')
      .end();
    await until(() => transport.owed.get('c') === 0, 'the answer');
    assert.equal(transport.text('c'), 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok');
    // Closing is asked for before the head goes out; the last (empty) answer ends it.
    assert.deepEqual(transport.events, ['closeWhenAnswered c', 'part c', 'part c', 'answer c']);
  });

  it('measures the time to the response head', async () => {
    const { relay, backend, transport, clock } = setup();
    const latencies: number[] = [];
    relay.observeLatency = (seconds) => latencies.push(seconds);
    send(relay, 'c', get());
    await until(() => backend.requests.length === 1, 'the backend request');
    clock.ms += 250;
    backend.respond(0, 200, [['content-length', '0']]).end();
    await until(() => transport.owed.get('c') === 0, 'the answer');
    assert.deepEqual(latencies, [0.25]);
  });
});

describe('HttpRelay: pipelined requests', () => {
  it('sends them to the backend one at a time and answers in order', async () => {
    const { relay, backend, transport } = setup();
    send(relay, 'c', get('/1') + get('/2'));
    send(relay, 'c', get('/3'));
    assert.equal(transport.owed.get('c'), 3);
    await until(() => backend.requests.length === 1, 'the first backend request');
    await turns();
    assert.equal(backend.requests.length, 1, 'the second waits for the first response');
    backend
      .respond(0, 200, [['content-length', '3']])
      .push('one')
      .end();
    await until(() => backend.requests.length === 2, 'the second backend request');
    assert.equal(backend.requests[1]!.path, '/2');
    backend
      .respond(1, 200, [['content-length', '3']])
      .push('two')
      .end();
    await until(() => backend.requests.length === 3, 'the third backend request');
    backend
      .respond(2, 200, [['content-length', '5']])
      .push('three')
      .end();
    await until(() => transport.owed.get('c') === 0, 'every answer');
    const text = transport.text('c');
    assert.deepEqual(
      text
        .split('HTTP/1.1 ')
        .filter(Boolean)
        .map((r) => parseResponse(`HTTP/1.1 ${r}`).body),
      ['one', 'two', 'three'],
    );
    assert.equal(relay.counts[HttpCounter.REQUESTS], 3);
    assert.equal(relay.counts[HttpCounter.RESPONSES], 3);
  });

  it('keeps connections apart: a slow response on one does not hold up another', async () => {
    const { relay, backend, transport } = setup();
    send(relay, 'slow', get('/slow'));
    send(relay, 'fast', get('/fast'));
    await until(() => backend.requests.length === 2, 'both backend requests');
    const fast = backend.requests.findIndex((r) => r.path === '/fast');
    backend
      .respond(fast, 200, [['content-length', '4']])
      .push('fast')
      .end();
    await until(() => transport.owed.get('fast') === 0, 'the fast answer');
    assert.equal(transport.owed.get('slow'), 1);
    backend
      .respond(1 - fast, 200, [['content-length', '4']])
      .push('slow')
      .end();
    await until(() => transport.owed.get('slow') === 0, 'the slow answer');
    assert.equal(parseResponse(transport.text('slow')).body, 'slow');
    assert.equal(parseResponse(transport.text('fast')).body, 'fast');
  });

  it('does not answer requests pipelined after one that closes, releasing what was owed for them', async () => {
    const { relay, backend, transport } = setup();
    send(relay, 'c', get('/1', 'Connection: close\r\n') + get('/2') + get('/3'));
    assert.equal(transport.owed.get('c'), 3);
    await until(() => backend.requests.length === 1, 'the backend request');
    const body = backend.respond(0, 200, [['content-length', '2']]).push('o');
    await until(() => transport.owed.get('c') === 1, 'the answers owed for /2 and /3 released');
    // A request arriving while the closing response streams is not taken either.
    send(relay, 'c', get('/4'));
    assert.equal(transport.owed.get('c'), 1);
    body.push('k').end();
    await until(() => transport.owed.get('c') === 0, 'the answer');
    await turns();
    assert.equal(backend.requests.length, 1, 'the backend saw only the first');
    assert.equal(transport.text('c'), 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok');
    assert.equal(relay.counts[HttpCounter.REQUESTS], 3, '/4 is not counted');
  });
});

describe('HttpRelay: requests it cannot relay', () => {
  const cases: [string, string, number, string][] = [
    ['malformed', 'GARBAGE\r\n\r\n', 400, 'Bad Request'],
    ['HTTP/1.1 without Host', 'GET / HTTP/1.1\r\nAccept: */*\r\n\r\n', 400, 'Bad Request'],
    ['a body over the limit', `POST / HTTP/1.1\r\nHost: example.test\r\nContent-Length: ${MAX_BODY + 1}\r\n\r\n`, 413, 'Payload Too Large'],
    ['an expectation other than 100-continue', 'GET / HTTP/1.1\r\nHost: example.test\r\nExpect: 200-ok\r\n\r\n', 417, 'Expectation Failed'],
    ['a head too big', `GET / HTTP/1.1\r\nHost: example.test\r\nX-Big: ${'x'.repeat(16 * 1024)}`, 431, 'Request Header Fields Too Large'],
    ['an unknown transfer coding', 'POST / HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: gzip\r\n\r\n', 501, 'Not Implemented'],
    ['CONNECT', 'CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n', 501, 'Not Implemented'],
    ['HTTP/2.0', 'GET / HTTP/2.0\r\nHost: example.test\r\n\r\n', 505, 'HTTP Version Not Supported'],
  ];
  for (const [what, request, status, reason] of cases) {
    it(`answers ${what} with ${status} and Connection: close, without the backend`, async () => {
      const { relay, backend, transport } = setup();
      send(relay, 'c', request);
      await until(() => transport.owed.get('c') === 0, 'the answer');
      assert.equal(transport.text('c'), errorResponse(status, reason));
      assert.deepEqual(transport.events, ['closeWhenAnswered c', 'answer c']);
      assert.equal(backend.requests.length, 0);
      assert.equal(relay.counts[status === 413 ? HttpCounter.BODIES_TOO_LARGE : HttpCounter.BAD_REQUESTS], 1);
    });
  }

  it('answers a request pipelined behind a bad one with nothing', async () => {
    const { relay, backend, transport } = setup();
    // As the framer hands them over: a request, then bytes that can never be one.
    send(relay, 'c', `${get('/ok')}POST / HTTP/1.1\r\nHost: example.test\r\nContent-Length: x\r\n\r\n`);
    assert.equal(transport.owed.get('c'), 2);
    await until(() => backend.requests.length === 1, 'the backend request');
    backend
      .respond(0, 200, [['content-length', '2']])
      .push('ok')
      .end();
    await until(() => transport.owed.get('c') === 0, 'both answers');
    assert.equal(transport.text('c'), `HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok${errorResponse(400, 'Bad Request')}`);
    assert.equal(transport.closing.has('c'), true);
  });
});

describe('HttpRelay: backend failures', () => {
  for (const [what, error, status, reason, counter] of [
    ['unreachable', new BackendError('unreachable', 'connect ECONNREFUSED'), 502, 'Bad Gateway', HttpCounter.BACKEND_UNREACHABLE],
    ['too slow', new BackendError('timeout', 'Headers Timeout Error'), 504, 'Gateway Timeout', HttpCounter.BACKEND_TIMEOUTS],
    ['failing otherwise', new TypeError('not a BackendError'), 502, 'Bad Gateway', HttpCounter.BACKEND_UNREACHABLE],
  ] as const) {
    it(`answers ${status} when the backend is ${what}, closing the connection`, async () => {
      const { relay, backend, transport } = setup();
      send(relay, 'c', get('/1') + get('/2'));
      await until(() => backend.requests.length === 1, 'the backend request');
      backend.fail(0, error);
      await until(() => transport.owed.get('c') === 0, 'the answer');
      assert.equal(transport.text('c'), errorResponse(status, reason));
      assert.equal(relay.counts[counter], 1);
      assert.equal(transport.closing.has('c'), true);
      assert.equal(backend.requests.length, 1, 'the pipelined request is not relayed');
    });
  }

  for (const [what, error, counter] of [
    ['breaks off', new BackendError('unreachable', 'other side closed'), HttpCounter.BROKEN_RESPONSES],
    ['stalls', new BackendError('timeout', 'Body Timeout Error'), HttpCounter.BACKEND_TIMEOUTS],
  ] as const) {
    it(`resets the connection when the body ${what} after the head`, async () => {
      const { relay, backend, transport } = setup();
      send(relay, 'c', get());
      await until(() => backend.requests.length === 1, 'the backend request');
      const body = backend.respond(0, 200, [['content-length', '100']]).push('the first part');
      await until(() => transport.text('c').endsWith('the first part'), 'the first part');
      body.fail(error);
      await until(() => transport.resets.has('c'), 'the reset');
      assert.equal(relay.counts[counter], 1);
      assert.equal(relay.counts[HttpCounter.RESPONSES], 0);
      assert.equal(transport.events.at(-1), 'reset c');
    });
  }

  it('closes its backend when closed', () => {
    const { relay, backend } = setup();
    relay.close();
    assert.equal(backend.closed, true);
  });
});

describe('HttpRelay: backpressure and closed connections', () => {
  it('waits for onDrain whenever answerPart says the send buffer is full', async () => {
    const { relay, backend, transport } = setup();
    let full = true;
    transport.room = () => !full;
    send(relay, 'c', get());
    await until(() => backend.requests.length === 1, 'the backend request');
    const body = backend
      .respond(0, 200, [['content-length', '9']])
      .push('abc')
      .push('def')
      .push('ghi')
      .end();
    await until(() => transport.events.length === 1, 'the head');
    await turns();
    // The head filled the buffer: at most the chunk the relay holds is taken, nothing sent.
    assert.deepEqual(transport.events, ['part c']);
    assert.ok(body.taken <= 1);
    assert.equal(parseResponse(transport.text('c')).body, '');

    relay.onDrain('c');
    await until(() => transport.events.length === 2, 'one chunk after onDrain');
    await turns();
    assert.equal(parseResponse(transport.text('c')).body, 'abc', 'one chunk, then full again');

    full = false;
    relay.onDrain('c');
    await until(() => transport.owed.get('c') === 0, 'the rest');
    assert.equal(parseResponse(transport.text('c')).body, 'abcdefghi');
  });

  it('remembers an onDrain that comes before the response waits for it', async () => {
    const { relay, backend, transport } = setup();
    let answered = 0;
    transport.room = () => ++answered > 1; // only the head finds the buffer full
    send(relay, 'c', get());
    await until(() => backend.requests.length === 1, 'the backend request');
    const body = backend.respond(0, 200, [['content-length', '6']]);
    await until(() => transport.events.length === 1, 'the head');
    relay.onDrain('c'); // drained before any chunk came
    body.push('abc').push('def').end();
    await until(() => transport.owed.get('c') === 0, 'the body');
    assert.equal(parseResponse(transport.text('c')).body, 'abcdef');
  });

  it('stops a response waiting for room when the connection closes (onClosed)', async () => {
    const { relay, backend, transport } = setup();
    transport.room = () => false;
    send(relay, 'c', get());
    await until(() => backend.requests.length === 1, 'the backend request');
    const body = backend
      .respond(0, 200, [['content-length', '6']])
      .push('abc')
      .push('def');
    await until(() => transport.events.length === 1, 'the head');
    transport.closed.add('c');
    relay.onClosed('c');
    await until(() => body.destroyed, 'the body abandoned');
    await turns();
    assert.deepEqual(transport.events, ['part c'], 'nothing more sent');
    assert.equal(relay.counts[HttpCounter.ABANDONED], 1);
    assert.equal(relay.counts[HttpCounter.RESPONSES], 0);
  });

  it('stops reading a body when the connection closes between chunks', async () => {
    const { relay, backend, transport } = setup();
    send(relay, 'c', get());
    await until(() => backend.requests.length === 1, 'the backend request');
    const body = backend.respond(0, 200, [['content-length', '6']]).push('abc');
    await until(() => transport.text('c').endsWith('abc'), 'the first chunk');
    transport.closed.add('c');
    body.push('def');
    await until(() => body.destroyed, 'the body abandoned');
    assert.equal(parseResponse(transport.text('c')).body, 'abc');
  });

  it('abandons a response whose connection closed while the backend was answering', async () => {
    const { relay, backend, transport } = setup();
    send(relay, 'c', get('/1') + get('/2'));
    await until(() => backend.requests.length === 1, 'the backend request');
    transport.closed.add('c');
    relay.onClosed('c');
    const body = backend.respond(0, 200, [['content-length', '2']]).push('ok');
    await until(() => body.destroyed, 'the body abandoned');
    await turns();
    assert.equal(transport.text('c'), '');
    assert.equal(backend.requests.length, 1, 'the pipelined request is not relayed');
  });
});

describe('HttpRelay: request bodies streamed to the backend', () => {
  const put = (length: number | 'chunked', fields = ''): string =>
    `PUT /up HTTP/1.1\r\nHost: example.test\r\n${length === 'chunked' ? 'Transfer-Encoding: chunked' : `Content-Length: ${length}`}\r\n${fields}\r\n`;

  /** The body's reads one at a time, as undici makes them. */
  const reader = (backend: FakeBackend, index = 0): AsyncIterator<Uint8Array> => backend.requests[index]!.body![Symbol.asyncIterator]();
  const text = (result: IteratorResult<Uint8Array>): string => (result.done ? '<end>' : Buffer.from(result.value).toString('latin1'));

  it('hands the backend each part as it comes, and releases a read once the backend client comes for the next', async () => {
    const { relay, backend, transport } = setup();
    send(relay, 'c', `${put(11)}hello`);
    await until(() => backend.requests.length === 1, 'the backend request');
    assert.deepEqual(backend.requests[0]!.headers.at(-1), ['content-length', '11']);
    const reads = reader(backend);
    assert.equal(text(await reads.next()), 'hello');
    assert.equal(transport.held.get('c'), 5, 'held while the backend client writes it');
    const next = reads.next();
    assert.equal(transport.held.get('c'), 0, 'released: the backend client came for more');
    send(relay, 'c', ' world');
    assert.equal(text(await next), ' world');
    assert.equal(text(await reads.next()), '<end>');
    assert.equal(transport.held.get('c'), 0);
    assert.equal(transport.streaming.has('c'), false, 'endBody: what follows is a head again');
    assert.equal(relay.counts[HttpCounter.BODY_BYTES], 11);
    backend.respond(0, 201, [['content-length', '0']]).end();
    await until(() => transport.owed.get('c') === 0, 'the answer');
    assert.equal(transport.text('c'), 'HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n');
  });

  it('de-chunks a chunked body cut anywhere, and releases its framing with its data', async () => {
    const { relay, backend, transport } = setup();
    const body = '5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n';
    send(relay, 'c', put('chunked'));
    await until(() => backend.requests.length === 1, 'the backend request');
    const read = readAll(backend.requests[0]!.body);
    for (let i = 0; i < body.length; i += 3) send(relay, 'c', body.slice(i, i + 3));
    assert.equal(await read, 'hello world');
    assert.equal(transport.released, body.length, 'every byte of it released, framing and trailer included');
    assert.equal(transport.streaming.has('c'), false);
  });

  it('answers 100 Continue when the request is served and its body has not come, before the response', async () => {
    const { relay, backend, transport } = setup();
    send(relay, 'c', put(5, 'Expect: 100-continue\r\n'));
    await until(() => transport.text('c') === 'HTTP/1.1 100 Continue\r\n\r\n', '100 Continue');
    assert.equal(relay.counts[HttpCounter.CONTINUES], 1);
    const read = readAll(backend.requests[0]!.body);
    send(relay, 'c', 'hello');
    assert.equal(await read, 'hello');
    backend.respond(0, 204, []).end();
    await until(() => transport.owed.get('c') === 0, 'the answer');
    assert.equal(transport.text('c'), 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n');
  });

  it('answers 413 instead of 100 Continue when the Content-Length is over the limit; an HTTP/1.0 expectation is ignored', async () => {
    const { relay, backend, transport } = setup();
    send(relay, 'c', put(MAX_BODY + 1, 'Expect: 100-continue\r\n'));
    await until(() => transport.owed.get('c') === 0, 'the answer');
    assert.equal(transport.text('c'), errorResponse(413, 'Payload Too Large'));
    assert.equal(backend.requests.length, 0);
    send(relay, 'old', 'PUT /up HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n');
    await until(() => backend.requests.length === 1, 'the backend request');
    assert.equal(transport.text('old'), '', 'no 100 for HTTP/1.0 (RFC 9110 §10.1.1)');
  });

  it('a chunked body whose total passes the limit: 413, its backend request aborted, what followed not read', async () => {
    const { relay, backend, transport } = setup();
    send(relay, 'c', put('chunked'));
    await until(() => backend.requests.length === 1, 'the backend request');
    const read = readAll(backend.requests[0]!.body);
    send(relay, 'c', `200\r\n${'a'.repeat(512)}\r\n`);
    send(relay, 'c', `200\r\n${'b'.repeat(512)}\r\n0\r\n\r\n${get('/after')}`);
    assert.match(await read, /<BodyNotWhole>$/, 'the read fails: the backend never takes a cut body for a whole one');
    backend.fail(0, new BackendError('unreachable', 'aborted'));
    await until(() => transport.owed.get('c') === 0, 'the answer');
    assert.equal(transport.text('c'), errorResponse(413, 'Payload Too Large'));
    assert.equal(relay.counts[HttpCounter.BODIES_TOO_LARGE], 1);
    assert.equal(relay.counts[HttpCounter.BACKEND_UNREACHABLE], 0, 'not the backend’s fault');
    assert.equal(transport.held.get('c'), 0, 'all released');
    assert.deepEqual(transport.events.slice(0, 1), ['closeWhenAnswered c']);
    assert.equal(backend.requests.length, 1, '/after is not relayed');
  });

  it('a body the client cuts off with its FIN: 400, and the backend read fails', async () => {
    const { relay, backend, transport } = setup();
    send(relay, 'c', `${put(10)}half`);
    await until(() => backend.requests.length === 1, 'the backend request');
    const read = readAll(backend.requests[0]!.body);
    relay.onBodyCutOff('c');
    assert.equal(await read, 'half<BodyNotWhole>');
    backend.fail(0, new BackendError('unreachable', 'aborted'));
    await until(() => transport.owed.get('c') === 0, 'the answer');
    assert.equal(transport.text('c'), errorResponse(400, 'Bad Request'));
    assert.equal(relay.counts[HttpCounter.BODIES_CUT_OFF], 1);
    assert.equal(transport.held.get('c'), 0);
  });

  it('a connection reset mid-body: the backend read fails, and nothing is answered', async () => {
    const { relay, backend, transport } = setup();
    send(relay, 'c', `${put(10)}half`);
    await until(() => backend.requests.length === 1, 'the backend request');
    const read = readAll(backend.requests[0]!.body);
    transport.closed.add('c');
    relay.onClosed('c');
    assert.equal(await read, 'half<BodyNotWhole>');
    backend.fail(0, new BackendError('unreachable', 'aborted'));
    await until(() => transport.owed.get('c') === 0, 'the owed answer given up');
    assert.equal(transport.answersDropped, 1);
    assert.equal(relay.counts[HttpCounter.BODIES_CUT_OFF], 1);
    assert.equal(relay.counts[HttpCounter.BACKEND_UNREACHABLE], 0);
  });

  it('the backend answers before the body is whole: the response closes the connection, the body is released, its read fails after', async () => {
    const { relay, backend, transport } = setup();
    send(relay, 'c', `${put(100)}part`);
    await until(() => backend.requests.length === 1, 'the backend request');
    const reads = reader(backend);
    assert.equal(text(await reads.next()), 'part');
    const waiting = reads.next();
    let settled = false;
    waiting.then(
      () => (settled = true),
      () => (settled = true),
    );
    const body = backend.respond(0, 413, [['content-length', '4']]).push('big!');
    await until(() => transport.text('c').endsWith('big!'), 'the response');
    assert.match(transport.text('c'), /^HTTP\/1\.1 413 Payload Too Large\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbig!$/);
    assert.equal(transport.held.get('c'), 0, 'released: it will not be read');
    assert.equal(settled, false, 'the read waits while the response streams');
    body.end();
    await until(() => transport.owed.get('c') === 0, 'the answer');
    await assert.rejects(waiting);
    assert.ok(transport.closing.has('c'));
  });

  it('a body pipelined behind another request is held until its turn', async () => {
    const { relay, backend, transport } = setup();
    send(relay, 'c', `${get('/first')}${put(5)}hello`);
    await until(() => backend.requests.length === 1, 'the first backend request');
    assert.equal(transport.held.get('c'), 5, 'held: its request waits');
    backend.respond(0, 200, [['content-length', '0']]).end();
    await until(() => backend.requests.length === 2, 'the second backend request');
    assert.equal(await readAll(backend.requests[1]!.body), 'hello');
    assert.equal(transport.held.get('c'), 0);
  });
});
