/**
 * The cost of the responder's timer tick while many flows are held and none of their timers is
 * due (issue 13): N clients each send the first bytes of a DNS query and then nothing, so every
 * flow holds a partial message whose deadline (messageDeadlineMs, 10 s) is far off. The shard
 * worker ticks every 10 ms; this drives the real Responder in-process the same way.
 *
 *   node dist/bench/timer-tick.js [flows] [ticks]
 *
 * Prints the time of one tick (median and 99th percentile over `ticks` ticks 10 ms apart, all
 * before any deadline) and the flows the timers looked at per tick (`tcp.timer_visits`).
 */
import dnsPacket from 'dns-packet';
import { DEFAULT_RESPONDER_CONFIG, Responder } from '../src/tcp/responder.js';
import { TcpEvent } from '../src/tcp/counters.js';
import { SynCookies } from '../src/tcp/cookie.js';
import { dnsMessageLength, plausibleQueryStart } from '../src/dns/message.js';
import { TcpFlag } from '../src/wire/segment.js';
import { PlayedClients } from './played-clients.js';

const flowCount = Number(process.argv[2] ?? 65536);
const ticks = Number(process.argv[3] ?? 500);
const TICK_INTERVAL_MS = 10;

let synAck = { seq: 0, tsVal: 0 };
const responder = new Responder(
  { ...DEFAULT_RESPONDER_CONFIG, maxFlows: flowCount, messageLength: dnsMessageLength, plausibleStart: plausibleQueryStart },
  new SynCookies(new Uint8Array(16).fill(1)),
  { send: (h) => (synAck = { seq: h.seq, tsVal: h.tsVal }), pushWanted: () => {} },
  { onMessages: () => assert(false, 'no query is ever whole') },
);

function assert(condition: boolean, what: string): asserts condition {
  if (!condition) throw new Error(what);
}

const clients = new PlayedClients(responder);
const startMs = Date.now();

const query = dnsPacket.encode({
  type: 'query',
  id: 1,
  flags: dnsPacket.RECURSION_DESIRED,
  questions: [{ type: 'A', name: 'www.lab.test' }],
});
const firstBytes = Buffer.concat([Buffer.from([0, query.length]), query]).subarray(0, 5);
for (let i = 0; i < flowCount; i++) {
  clients.select(i);
  clients.play(TcpFlag.SYN, 1000, 0, 0, null, startMs);
  clients.play(TcpFlag.ACK | TcpFlag.PSH, 1001, synAck.seq + 1, synAck.tsVal, firstBytes, startMs);
}
assert(responder.flows.size === flowCount, `${responder.flows.size} flows held, not ${flowCount}`);

const micros: number[] = [];
const visitsBefore = responder.events[TcpEvent.TIMER_VISITS]!;
for (let i = 1; i <= ticks; i++) {
  const nowMs = startMs + i * TICK_INTERVAL_MS;
  assert(nowMs - startMs < DEFAULT_RESPONDER_CONFIG.messageDeadlineMs, 'ticks must stay before the deadline');
  const began = process.hrtime.bigint();
  responder.tick(nowMs);
  micros.push(Number(process.hrtime.bigint() - began) / 1000);
}
assert(responder.flows.size === flowCount, 'no flow was due');
micros.sort((a, b) => a - b);
const at = (q: number): string => micros[Math.min(micros.length - 1, Math.floor(q * micros.length))]!.toFixed(1);
console.log(`flows held, none due:   ${flowCount}`);
console.log(
  `tick time:              median ${at(0.5)} µs, p99 ${at(0.99)} µs, max ${at(1)} µs (${ticks} ticks ${TICK_INTERVAL_MS} ms apart)`,
);
console.log(`flows visited per tick: ${((responder.events[TcpEvent.TIMER_VISITS]! - visitsBefore) / ticks).toFixed(2)}`);
