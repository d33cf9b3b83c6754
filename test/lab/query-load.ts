/**
 * A verifying DNS-over-TCP load client for lab tests, run inside the client namespace:
 *
 *   node dist/test/lab/query-load.js SPEC_JSON
 *
 * SPEC: { servers: string[], connectionsPerServer, queriesPerConnection, inFlight,
 *         names: [name, type][], timeoutMs }
 * Every query is sent exactly once (no DNS-level retry: recovery is TCP's job), pipelined up to
 * `inFlight` per connection over persistent kernel TCP connections. Each answer is matched by ID
 * and decoded. Prints one JSON line: { sent, answered, truncated, rcodes, answers: {name: [count,
 * firstRdataLength]} , timedOut, errors } and exits 0; the test judges it.
 */
import net from 'node:net';
import dnsPacket from 'dns-packet';

interface Spec {
  servers: string[];
  connectionsPerServer: number;
  queriesPerConnection: number;
  inFlight: number;
  names: [string, 'A' | 'AAAA' | 'TXT'][];
  timeoutMs: number;
}

export interface LoadResult {
  sent: number;
  answered: number;
  truncated: number;
  rcodes: Record<string, number>;
  /** Per question name: how many answers, and the set of distinct answer-section sizes seen. */
  answers: Record<string, { count: number; records: number[] }>;
  timedOut: number;
  errors: string[];
}

const spec = process.argv[2] === undefined ? null : (JSON.parse(process.argv[2]) as Spec);

function runConnection(server: string, spec: Spec, result: LoadResult, firstId: number): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: server, port: 53 });
    const outstanding = new Map<number, string>();
    let next = 0;
    let buffered = Buffer.alloc(0);
    const timer = setTimeout(() => {
      result.timedOut += outstanding.size + (spec.queriesPerConnection - next);
      socket.destroy();
      resolve();
    }, spec.timeoutMs);
    const sendMore = (): void => {
      while (outstanding.size < spec.inFlight && next < spec.queriesPerConnection) {
        const [name, type] = spec.names[next % spec.names.length]!;
        const id = (firstId + next) & 0xffff;
        const query = dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }] });
        const framed = Buffer.alloc(2 + query.length);
        framed.writeUInt16BE(query.length, 0);
        query.copy(framed, 2);
        socket.write(framed);
        outstanding.set(id, name);
        result.sent++;
        next++;
      }
      if (outstanding.size === 0 && next === spec.queriesPerConnection) {
        clearTimeout(timer);
        socket.end();
        resolve();
      }
    };
    socket.on('connect', sendMore);
    socket.on('error', (error) => {
      result.errors.push(`${server}: ${error.message}`);
      clearTimeout(timer);
      result.timedOut += outstanding.size + (spec.queriesPerConnection - next);
      resolve();
    });
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
        const length = buffered.readUInt16BE(0);
        const answer = dnsPacket.decode(buffered.subarray(2, 2 + length));
        buffered = buffered.subarray(2 + length);
        const name = outstanding.get(answer.id!);
        if (name === undefined) {
          result.errors.push(`unexpected answer id ${answer.id}`);
          continue;
        }
        outstanding.delete(answer.id!);
        result.answered++;
        if (answer.flag_tc) result.truncated++;
        const rcode = (answer as { rcode?: string }).rcode ?? String(answer.flags! & 0xf);
        result.rcodes[rcode] = (result.rcodes[rcode] ?? 0) + 1;
        const entry = (result.answers[name] ??= { count: 0, records: [] });
        entry.count++;
        const records = answer.answers?.length ?? 0;
        if (!entry.records.includes(records)) entry.records.push(records);
      }
      sendMore();
    });
  });
}

async function main(spec: Spec): Promise<void> {
  const result: LoadResult = { sent: 0, answered: 0, truncated: 0, rcodes: {}, answers: {}, timedOut: 0, errors: [] };
  const runs: Promise<void>[] = [];
  let id = 1;
  for (const server of spec.servers) {
    for (let c = 0; c < spec.connectionsPerServer; c++) {
      runs.push(runConnection(server, spec, result, id));
      id += spec.queriesPerConnection;
    }
  }
  await Promise.all(runs);
  console.log(JSON.stringify(result));
}

if (spec !== null) void main(spec);
