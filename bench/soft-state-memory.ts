/**
 * Memory held per in-flight transaction, and proof that it all goes once answers are delivered
 * and acknowledged (an idle connection holds nothing).
 *
 *   node --expose-gc dist/bench/soft-state-memory.js [connections]
 *
 * Drives the real Responder and DnsRelay in-process: N clients each open a connection (SYN,
 * SYN+ACK) and send one query; with the upstream not answering yet, every connection holds a
 * flow and a pending query. Then every query is answered and every answer acknowledged.
 */
import { randomFillSync } from 'node:crypto';
import dnsPacket from 'dns-packet';
import { DEFAULT_RESPONDER_CONFIG, Responder } from '../src/tcp/responder.js';
import { SynCookies } from '../src/tcp/cookie.js';
import type { Flow } from '../src/tcp/flow.js';
import { DnsRelay } from '../src/dns/relay.js';
import { dnsMessageLength, plausibleQueryStart } from '../src/dns/message.js';
import { TcpFlag } from '../src/wire/segment.js';
import { PlayedClients } from './played-clients.js';

const connections = Number(process.argv[2] ?? 20000);
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) {
  console.error('run with node --expose-gc');
  process.exit(1);
}

const datagrams: Uint8Array[] = [];
let clockMs = Date.now();
const relay = new DnsRelay<Flow>({
  timeoutMs: 3_600_000,
  upstream: {
    sendDatagram: (q) => {
      datagrams.push(q);
      return 0;
    },
    resendDatagram: () => {},
    queryDone: () => {},
    queryOverTcp: () => Promise.resolve(null),
    close: () => {},
  },
  fillRandom: (b) => randomFillSync(b),
  now: () => clockMs,
});
let last = { seq: 0, ack: 0, tsVal: 0, length: 0 };
const responder = new Responder(
  { ...DEFAULT_RESPONDER_CONFIG, messageLength: dnsMessageLength, plausibleStart: plausibleQueryStart },
  new SynCookies(new Uint8Array(16).fill(1)),
  { send: (h, _p, _o, n) => (last = { seq: h.seq, ack: h.ack, tsVal: h.tsVal, length: n }), pushWanted: () => responder.push(Date.now()) },
  relay,
);
relay.attach(responder);

const clients = new PlayedClients(responder);
const now = Date.now();

const query = dnsPacket.encode({
  type: 'query',
  id: 1,
  flags: dnsPacket.RECURSION_DESIRED,
  questions: [{ type: 'A', name: 'www.lab.test' }],
});
const framed = Buffer.concat([Buffer.from([0, query.length]), query]);
const heap = (): number => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};

const before = heap();
const state: { isn: number; token: number }[] = [];
for (let i = 0; i < connections; i++) {
  clients.select(i);
  clients.play(TcpFlag.SYN, 1000, 0, 0, null, now);
  const isn = last.seq;
  const token = last.tsVal;
  clients.play(TcpFlag.ACK | TcpFlag.PSH, 1001, isn + 1, token, framed, now);
  state.push({ isn, token });
}
const inFlight = heap();

// Answer every query (the upstream answers, in order), then every client acknowledges.
let framedAnswerLength = 0;
for (const d of datagrams) {
  const q = dnsPacket.decode(Buffer.from(d));
  const answer = dnsPacket.encode({
    type: 'response',
    id: q.id,
    questions: q.questions,
    answers: [{ type: 'A', name: 'www.lab.test', ttl: 60, data: '198.18.0.100' }],
  });
  framedAnswerLength = 2 + answer.length;
  clockMs = now;
  relay.handleUpstreamAnswer(answer, 0, answer.length, 0);
}
const answered = responder.flows.size;
for (let i = 0; i < connections; i++) {
  clients.select(i);
  clients.play(TcpFlag.ACK, 1001 + framed.length, state[i]!.isn + 1 + framedAnswerLength, state[i]!.token, null, now);
}
datagrams.length = 0;
relay.tick(now + 3_600_000); // past every deadline, as the server's timer gets to
const benchArrayBytes = (() => {
  const x = heap();
  state.length = 0;
  return x - heap();
})();
const after = heap();

const perTransaction = (inFlight - before - benchArrayBytes) / connections;
console.log(`connections:                       ${connections}`);
console.log(`flows while queries are pending:   ${connections} (measured ${answered} still unacknowledged after answers)`);
console.log(`heap per in-flight transaction:    ${perTransaction.toFixed(0)} bytes (flow + pending upstream query)`);
console.log(
  `flows after answers are acked:     ${responder.flows.size}, queued bytes ${responder.queuedBytes}, pending queries ${relay.pendingQueries}`,
);
// What is left is compiled code and other one-time costs: the same total whatever `connections`
// is (about 0.9 MB for 5,000, 20,000 or 60,000), i.e. nothing per idle connection.
console.log(
  `heap left after all went idle:     ${((after - before) / 1024).toFixed(0)} KiB in total, ${((after - before) / connections).toFixed(1)} bytes per connection (run with another count: the total stays)`,
);
console.log(
  `fixed table of recent connections: ${responder.recent.slots} slots, ${((responder.recent.slots * 25) / 1024 / 1024).toFixed(1)} MiB allocated at start, ${responder.recent.live(now)} in use`,
);
