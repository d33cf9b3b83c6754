/**
 * The impaired link's forwarder: an impairing wire between two veth ends, in userspace — netem
 * for a kernel without netem. (impaired-link.ts is the lab's side: it starts this process and
 * reads its counters.)
 *
 *   node dist/lab/impaired-link-forwarder.js SPEC_JSON   (run by the lab inside its wire namespace)
 *
 * This kernel has no sch_netem (CONFIG_NET_SCH_NETEM is not set, and it has no loadable modules).
 * Impairing with nftables on a sender's own output is not the same thing: a packet dropped there
 * is reported to the sender (sendmsg fails with EPERM), so kernel TCP just sends it again later
 * and the receiver never sees a gap. Here the lab puts a third namespace between client and
 * server, with one veth end facing each, and this process forwards every Ethernet frame captured
 * on one end out of the other (libpcap capture and pcap_inject). The namespace's own kernel has
 * no addresses there and forwards nothing. Neither endpoint can tell the wire from a cable.
 *
 * TCP frames are impaired as `tc qdisc … netem loss L% delay D J reorder R% duplicate P%` would:
 * dropped with probability L; otherwise sent once or (probability P) twice; each copy sent
 * after D ± J ms (uniform), except that a fraction R is sent at once, ahead of those waiting, which
 * reorders them (the jitter reorders some more). Other frames (ARP, neighbour discovery) pass at
 * once and unharmed. Counters per direction — `reordered` counts frames sent ahead of a frame
 * captured before them — are printed as one line `wire stats N {json}` on SIGUSR2 (N counts the
 * requests) and on SIGTERM before exiting. Without arguments it prints this usage and exits.
 */
import { createRequire } from 'node:module';
import type { DirectionStats, WireSpec, WireStats } from './impaired-link.js';

const require = createRequire(import.meta.url);

interface PcapSession {
  open_live(
    device: string,
    filter: string,
    bufferSize: number,
    snapLength: number,
    outfile: string,
    onPacket: () => void,
    monitor: boolean,
    bufferTimeout: number,
    onWarning: (message: string) => void,
    promiscuous: boolean,
  ): string;
  dispatch(buffer: Buffer, header: Buffer): number;
  start_polling(): void;
  inject(frame: Buffer): void;
  close(): void;
  read_callback?: () => void;
}

const SNAP_LENGTH = 65_535;
const BUFFER_BYTES = 8 * 1024 * 1024;

function newStats(): DirectionStats {
  return { frames: 0, tcp: 0, dropped: 0, droppedByRule: 0, duplicated: 0, reordered: 0, sent: 0, injectFailed: 0 };
}

/** Whether an Ethernet frame carries TCP over IPv4 or IPv6 (IPv6: TCP as the first next header). */
function isTcp(frame: Buffer): boolean {
  if (frame.length < 14) return false;
  const etherType = frame.readUInt16BE(12);
  if (etherType === 0x0800) return frame.length >= 24 && frame[23] === 6;
  if (etherType === 0x86dd) return frame.length >= 54 && frame[20] === 6;
  return false;
}

function run(spec: WireSpec): void {
  const binding = require('pcap/build/Release/pcap_binding.node') as { PcapSession: new () => PcapSession };
  const stats: WireStats = { toServer: newStats(), toClient: newStats() };
  const open = (device: string, fromMac: string, onFrame: (frame: Buffer) => void): PcapSession => {
    const session = new binding.PcapSession();
    const buffer = Buffer.alloc(SNAP_LENGTH);
    const header = Buffer.alloc(16);
    const header32 = new Uint32Array(header.buffer, header.byteOffset, 4);
    // Only frames the host behind this end sent: not the ones we inject here ourselves.
    session.open_live(
      device,
      `ether src ${fromMac}`,
      BUFFER_BYTES,
      SNAP_LENGTH,
      '',
      () => onFrame(Buffer.from(buffer.subarray(0, header32[2]!))),
      false,
      0,
      () => {},
      true,
    );
    session.read_callback = () => {
      session.dispatch(buffer, header);
    };
    session.start_polling();
    return session;
  };

  const timers = new Set<NodeJS.Timeout>();
  const dropOnce = new Set((spec.dropOnceToServer ?? []).map((hex) => Buffer.from(hex, 'hex')));
  const forwarder = (out: () => PcapSession, s: DirectionStats, rules: Set<Buffer>): ((frame: Buffer) => void) => {
    let captured = 0;
    let highestSent = 0;
    const send = (frame: Buffer, order: number): void => {
      if (order < highestSent) s.reordered++;
      highestSent = Math.max(highestSent, order);
      try {
        out().inject(frame);
        s.sent++;
      } catch {
        s.injectFailed++;
      }
    };
    const later = (frame: Buffer, order: number): void => {
      if (Math.random() * 100 < spec.reorderPercent) {
        send(frame, order);
        return;
      }
      const delay = Math.max(0, spec.delayMs + (Math.random() * 2 - 1) * spec.jitterMs);
      const timer = setTimeout(() => {
        timers.delete(timer);
        send(frame, order);
      }, delay);
      timers.add(timer);
    };
    return (frame) => {
      const order = ++captured;
      s.frames++;
      if (!isTcp(frame)) {
        send(frame, order);
        return;
      }
      s.tcp++;
      for (const rule of rules) {
        if (frame.includes(rule)) {
          rules.delete(rule);
          s.droppedByRule++;
          return;
        }
      }
      if (Math.random() * 100 < spec.lossPercent) {
        s.dropped++;
        return;
      }
      later(frame, order);
      if (Math.random() * 100 < spec.duplicatePercent) {
        s.duplicated++;
        later(frame, order);
      }
    };
  };

  // Each session captures what its host sends and injects what the other host sent.
  let clientSide: PcapSession | null = null;
  let serverSide: PcapSession | null = null;
  clientSide = open(
    spec.clientSideInterface,
    spec.clientMac,
    forwarder(() => serverSide!, stats.toServer, dropOnce),
  );
  serverSide = open(
    spec.serverSideInterface,
    spec.serverMac,
    forwarder(() => clientSide!, stats.toClient, new Set()),
  );

  let requests = 0;
  const report = (): void => console.log(`wire stats ${++requests} ${JSON.stringify(stats)}`);
  const stop = (): void => {
    for (const timer of timers) clearTimeout(timer);
    report();
    for (const session of [clientSide, serverSide]) {
      session!.read_callback = undefined;
      session!.close();
    }
    process.exit(0);
  };
  process.on('SIGUSR2', report);
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  setTimeout(stop, spec.maxLifetimeMs).unref();
  // Keeps the process alive between frames (the pcap poll handles alone may not).
  setInterval(() => {}, 60_000);
  console.log(`wire ready: ${spec.clientSideInterface} <-> ${spec.serverSideInterface}`);
}

const argument = process.argv[2];
if (argument === undefined) {
  console.log('usage: node impaired-link-forwarder.js SPEC_JSON (the lab runs it in its wire namespace; see the comment at the top)');
} else {
  run(JSON.parse(argument) as WireSpec);
}
