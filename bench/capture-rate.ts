/**
 * How many packets per second the capture thread takes and spreads over the shard rings, and at
 * what CPU cost per packet: a flood of ACKs with 120 bytes of data, of no connection, from the
 * lab's client namespace to the front end with `--workers 2`. (Data, because the capture thread
 * drops bare ACKs of connections without a flow itself and they would never reach a ring; the
 * shards answer these with RST.) Not a test: it prints numbers.
 *
 *   node dist/bench/capture-rate.js [seconds=5] [flows=1024]
 *
 * The flooder is this file run as `capture-rate.js flood SECONDS FLOWS CLIENT SERVER` in the
 * client namespace: prebuilt IPv4 segments from FLOWS source ports, sent round-robin with our
 * raw sender as fast as one thread can (sendto into the veth runs the server side's receive
 * path, including libpcap's AF_PACKET tap, in the flooder's own context). CPU per thread comes
 * from /proc as in workers-scaling.ts. On a 2-core machine the flooder, the capture thread and
 * two shards share two cores: read the capture thread's CPU per packet, not only the rate.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { RawSender } from '../src/io/raw-send.js';
import { emitReply, replyLength } from '../src/wire/emit.js';
import { ReplyHeader, TcpFlag } from '../src/wire/segment.js';
import { createLab } from '../lab/lab.js';
import { startFrontEnd, summaryCounter } from '../lab/stateless-tcp.js';

const CLOCK_TICKS_PER_SECOND = 100;
/** Sends between clock reads in the flooder. */
const SENDS_PER_CLOCK_READ = 4096;
/** Upper bound on packets the flooder sends, whatever the clock says. */
const MAX_PACKETS = 50_000_000;
/** Long enough that the capture thread hands every frame to a shard (workers/capture/thread.ts SHORT_FRAME_BYTES). */
const FLOOD_PAYLOAD = new Uint8Array(120);

function flood(seconds: number, flows: number, client: string, server: string): void {
  const sender = new RawSender();
  const packets: Buffer[] = [];
  const header = new ReplyHeader();
  header.family = 4;
  header.srcAddr.set(client.split('.').map(Number));
  header.dstAddr.set(server.split('.').map(Number));
  header.dstPort = 53;
  header.flags = TcpFlag.ACK;
  header.window = 64000;
  for (let i = 0; i < flows; i++) {
    header.srcPort = 20000 + i;
    header.seq = 1000 * i;
    header.ack = 7777 * i;
    const packet = Buffer.alloc(replyLength(header, FLOOD_PAYLOAD.length));
    emitReply(header, FLOOD_PAYLOAD, 0, FLOOD_PAYLOAD.length, packet, 0);
    packets.push(packet);
  }
  const dst = header.dstAddr;
  const end = performance.now() + seconds * 1000;
  let sent = 0;
  while (performance.now() < end && sent < MAX_PACKETS) {
    for (let i = 0; i < SENDS_PER_CLOCK_READ; i++) {
      const packet = packets[(sent + i) % flows]!;
      sender.send(4, packet, packet.length, dst);
    }
    sent += SENDS_PER_CLOCK_READ;
  }
  console.log(JSON.stringify({ sent, failed: sender.stats.failed }));
  sender.close();
}

/** CPU ticks so far of each thread of `pid`, by thread name. */
function threadTicks(pid: number): Map<string, number> {
  const ticks = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      ticks.set(name, (ticks.get(name) ?? 0) + Number(fields[11]) + Number(fields[12]));
    } catch {
      // thread ended
    }
  }
  return ticks;
}

async function main(seconds: number, flows: number): Promise<void> {
  console.log(
    `${availableParallelism()} CPUs (${cpus()[0]?.model ?? 'unknown'}), Node ${process.version}; ${seconds} s flood of 120-byte data segments from ${flows} flows\n`,
  );
  const lab = await createLab();
  try {
    for (const workers of [1, 2]) {
      const frontEnd = await startFrontEnd(lab, ['--workers', String(workers)]);
      try {
        const flooder = lab.spawn('client', [
          process.execPath,
          process.argv[1]!,
          'flood',
          String(seconds),
          String(flows),
          lab.clientV4,
          lab.serverV4,
        ]);
        let output = '';
        flooder.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
        const exited = new Promise<void>((resolve) => flooder.once('exit', () => resolve()));
        await sleep(500);
        const t0 = performance.now();
        const before = threadTicks(frontEnd.process.pid!);
        await sleep(seconds * 1000 - 1000);
        const after = threadTicks(frontEnd.process.pid!);
        const elapsed = (performance.now() - t0) / 1000;
        await exited;
        await sleep(500); // let the shards drain their rings
        const summary = await frontEnd.stop();
        const { sent } = JSON.parse(output) as { sent: number };
        const counter = (name: string): number => summaryCounter(summary, name);
        const received = counter('pcap.received');
        const ringDrops = [...summary.matchAll(/shard\d+\.ring_drops=(\d+)/g)].reduce((sum, m) => sum + Number(m[1]), 0);
        const delivered = [...summary.matchAll(/shard\d+\.packets_in=(\d+)/g)].reduce((sum, m) => sum + Number(m[1]), 0);
        const rate = received / seconds;
        const cpu = (name: string): number => ((after.get(name) ?? 0) - (before.get(name) ?? 0)) / CLOCK_TICKS_PER_SECOND / elapsed;
        const shardCpu = [...after.keys()]
          .filter((n) => n.startsWith('stcp-shard'))
          .map((n) => `${n.slice(5)} ${(100 * cpu(n)).toFixed(0)}%`);
        console.log(
          `--workers ${workers}: flooder sent ${(sent / seconds / 1000).toFixed(0)}k pps; libpcap received ${(rate / 1000).toFixed(0)}k pps, ` +
            `kernel dropped ${counter('pcap.dropped')}; rings took ${delivered} (dropped ${ringDrops})\n` +
            `  capture thread ${(100 * cpu('stcp-capture')).toFixed(0)}% of a core = ${((cpu('stcp-capture') / rate) * 1e6).toFixed(2)} µs per packet; ${shardCpu.join(', ')}`,
        );
      } finally {
        await frontEnd.stop();
      }
    }
  } finally {
    await lab.close();
  }
}

if (process.argv[2] === 'flood') {
  const [seconds, flows, client, server] = process.argv.slice(3);
  flood(Number(seconds), Number(flows), client!, server!);
} else {
  const watchdog = setTimeout(() => {
    console.error('capture-rate: not finished after 120 s');
    process.exit(1);
  }, 120_000);
  watchdog.unref();
  await main(Number(process.argv[2] ?? 5), Number(process.argv[3] ?? 1024));
}
