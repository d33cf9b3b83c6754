/**
 * DNS-over-TCP clients for the lab's TCP tests, on ordinary kernel sockets, run inside the client
 * namespace. Without a known mode it prints its usage and exits.
 *
 *   node dist/lab/tcp-client.js exchange SPEC_JSON
 *     SPEC: { host, writes: hex[], gapMs, gapsMs?, expected, holdBefore?, timeoutMs }
 *     Connects to host port 53 with TCP_NODELAY and prints `port N` (its local port). Writes each
 *     chunk separately, gapMs apart, so that each is its own segment; before chunk `holdBefore`
 *     it waits for SIGUSR2 (the test does something to the connection meanwhile). Prints
 *     `answers ["hex", …]` once `expected` framed answers arrived, and exits 0; exits 1 after
 *     timeoutMs.
 *
 *   node dist/lab/tcp-client.js load SPEC_JSON
 *     SPEC: { servers: string[], connectionsPerServer, queriesPerConnection, inFlight,
 *             questions: Question[], perQueryTimeoutMs }
 *     Persistent connections, each pipelining up to `inFlight` queries (question i of a
 *     connection is questions[i % length]). Every query is sent exactly once — a DNS client that
 *     never retries, so that only TCP can recover what the network loses. Every answer is matched
 *     by ID and checked in full against the lab zone (answers.ts). A query unanswered after
 *     perQueryTimeoutMs ends its connection and counts as timed out. Prints one JSON LoadReport.
 */
import net from 'node:net';
import { checkAnswer, encodeQuery, framed, type Question } from './answers.js';

export interface ExchangeSpec {
  host: string;
  writes: string[];
  gapMs: number;
  /** Gap after each write, overriding gapMs where given. */
  gapsMs?: number[];
  expected: number;
  holdBefore?: number;
  timeoutMs: number;
}

export interface LoadSpec {
  servers: string[];
  connectionsPerServer: number;
  queriesPerConnection: number;
  inFlight: number;
  questions: Question[];
  perQueryTimeoutMs: number;
}

export interface LoadReport {
  connections: number;
  sent: number;
  /** Answers matched to a query of ours, and among them the ones exactly right. */
  answered: number;
  correct: number;
  timedOut: number;
  /** Wrong answers, unknown or repeated IDs, socket errors: at most 20 described. */
  problems: string[];
  problemCount: number;
  maxLatencyMs: number;
  elapsedMs: number;
  /** Answers per question name. */
  perName: Record<string, number>;
}

/** Splits a byte stream into DNS messages (RFC 1035 §4.2.2); keeps the rest for later. */
class Deframer {
  private pending: Buffer = Buffer.alloc(0);
  push(chunk: Buffer, onMessage: (message: Buffer) => void): void {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    while (this.pending.length >= 2 && this.pending.length >= 2 + this.pending.readUInt16BE(0)) {
      const length = this.pending.readUInt16BE(0);
      onMessage(this.pending.subarray(2, 2 + length));
      this.pending = this.pending.subarray(2 + length);
    }
  }
}

function exchange(spec: ExchangeSpec): void {
  const writes = spec.writes.map((hex) => Buffer.from(hex, 'hex'));
  const answers: string[] = [];
  const deframer = new Deframer();
  const timer = setTimeout(() => {
    console.error(`timed out with ${answers.length} of ${spec.expected} answers`);
    process.exit(1);
  }, spec.timeoutMs);
  const socket = net.connect({ host: spec.host, port: 53 });
  socket.setNoDelay(true);
  const gapAfter = (index: number): number => spec.gapsMs?.[index] ?? spec.gapMs;
  const writeFrom = (index: number): void => {
    if (index >= writes.length) return;
    if (index === spec.holdBefore) {
      console.log('holding');
      process.once('SIGUSR2', () => {
        socket.write(writes[index]!);
        setTimeout(() => writeFrom(index + 1), gapAfter(index));
      });
      return;
    }
    socket.write(writes[index]!);
    setTimeout(() => writeFrom(index + 1), gapAfter(index));
  };
  socket.on('connect', () => {
    console.log(`port ${socket.localPort}`);
    writeFrom(0);
  });
  socket.on('data', (chunk: Buffer) => {
    deframer.push(chunk, (message) => answers.push(message.toString('hex')));
    if (answers.length >= spec.expected) {
      clearTimeout(timer);
      console.log(`answers ${JSON.stringify(answers)}`);
      socket.end();
    }
  });
  socket.on('error', (error) => {
    console.error(error.message);
    process.exit(1);
  });
}

function loadConnection(server: string, spec: LoadSpec, firstId: number, report: LoadReport): Promise<void> {
  const problem = (text: string): void => {
    report.problemCount++;
    if (report.problems.length < 20) report.problems.push(`${server}: ${text}`);
  };
  return new Promise((resolve) => {
    const socket = net.connect({ host: server, port: 53 });
    const outstanding = new Map<number, { question: Question; sentAt: number }>();
    const deframer = new Deframer();
    let next = 0;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearInterval(watchdog);
      report.timedOut += outstanding.size + (spec.queriesPerConnection - next);
      socket.destroy();
      resolve();
    };
    // Bounded: every query must be answered within perQueryTimeoutMs of being sent.
    const watchdog = setInterval(() => {
      const now = Date.now();
      for (const [id, entry] of outstanding) {
        if (now - entry.sentAt > spec.perQueryTimeoutMs) {
          problem(`query ${id} (${entry.question.name} ${entry.question.type}) unanswered after ${spec.perQueryTimeoutMs} ms`);
          finish();
          return;
        }
      }
    }, 100);
    const sendMore = (): void => {
      const batch: Buffer[] = [];
      while (outstanding.size < spec.inFlight && next < spec.queriesPerConnection) {
        const question = spec.questions[next % spec.questions.length]!;
        const id = (firstId + next) & 0xffff;
        batch.push(framed(encodeQuery(id, question)));
        outstanding.set(id, { question, sentAt: Date.now() });
        report.sent++;
        next++;
      }
      if (batch.length > 0) socket.write(Buffer.concat(batch));
      if (outstanding.size === 0 && next === spec.queriesPerConnection) {
        done = true;
        clearInterval(watchdog);
        socket.end();
        resolve();
      }
    };
    socket.on('connect', sendMore);
    socket.on('error', (error) => {
      problem(`socket error: ${error.message}`);
      finish();
    });
    socket.on('close', () => {
      if (!done) problem(`connection closed with ${outstanding.size} answers outstanding`);
      finish();
    });
    socket.on('data', (chunk: Buffer) => {
      deframer.push(chunk, (message) => {
        const id = message.length >= 2 ? message.readUInt16BE(0) : -1;
        const entry = outstanding.get(id);
        if (entry === undefined) {
          problem(`answer with unknown or repeated ID ${id}`);
          return;
        }
        outstanding.delete(id);
        report.answered++;
        report.maxLatencyMs = Math.max(report.maxLatencyMs, Date.now() - entry.sentAt);
        report.perName[entry.question.name] = (report.perName[entry.question.name] ?? 0) + 1;
        const wrong = checkAnswer(id, entry.question, Buffer.from(message));
        if (wrong === null) report.correct++;
        else problem(wrong);
      });
      if (!done) sendMore();
    });
  });
}

async function load(spec: LoadSpec): Promise<void> {
  const report: LoadReport = {
    connections: 0,
    sent: 0,
    answered: 0,
    correct: 0,
    timedOut: 0,
    problems: [],
    problemCount: 0,
    maxLatencyMs: 0,
    elapsedMs: 0,
    perName: {},
  };
  const started = Date.now();
  const runs: Promise<void>[] = [];
  let firstId = 1;
  for (const server of spec.servers) {
    for (let c = 0; c < spec.connectionsPerServer; c++) {
      report.connections++;
      runs.push(loadConnection(server, spec, firstId, report));
      firstId += spec.queriesPerConnection;
    }
  }
  await Promise.all(runs);
  report.elapsedMs = Date.now() - started;
  console.log(JSON.stringify(report));
}

const [mode, json] = process.argv.slice(2);
if (mode === 'exchange' && json !== undefined) exchange(JSON.parse(json) as ExchangeSpec);
else if (mode === 'load' && json !== undefined) void load(JSON.parse(json) as LoadSpec);
else console.log('usage: node tcp-client.js exchange|load SPEC_JSON (see the comment at the top)');
