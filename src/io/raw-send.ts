/**
 * Sending complete IP packets through raw sockets (the `raw-socket` package).
 *
 * Both sockets use protocol IPPROTO_RAW (255): the kernel then takes our IP header as written
 * (raw(7): IPPROTO_RAW implies IP_HDRINCL; for IPv6 the kernel sets hdrincl the same way), and —
 * unlike an IPPROTO_TCP raw socket — is never handed a copy of incoming TCP packets, which we
 * would have to read and throw away.
 *
 * We call the socket's native `send` directly: the package's `Socket.send` queues every packet
 * and waits for a writable event before sending it, a round trip through the event loop per
 * segment; the native call is one synchronous sendto(2).
 */
import { createRequire } from 'node:module';
import { formatAddress } from '../wire/format.js';

const require = createRequire(import.meta.url);

interface RawSocketWrap {
  send(buffer: Buffer, offset: number, length: number, address: string, done: (bytes: number) => void): void;
  pause(recvPaused: boolean, sendPaused: boolean): void;
  close(): void;
}
interface RawSocketModule {
  createSocket(options: { addressFamily: number; protocol: number }): { wrap: RawSocketWrap; pauseRecv(): unknown; close(): unknown };
  AddressFamily: { IPv4: number; IPv6: number };
}

const IPPROTO_RAW = 255;
const noop = (): void => {};

export interface SendStats {
  sent: number;
  failed: number;
  lastError: string;
}

export class RawSender {
  readonly stats: SendStats = { sent: 0, failed: 0, lastError: '' };
  private readonly v4: RawSocketWrap;
  private readonly v6: RawSocketWrap;
  /** Destination address strings by their bytes: sendto needs a string; clients repeat. */
  private readonly names = new Map<string, string>();
  private readonly keyScratch: number[] = [];

  constructor() {
    const raw = require('raw-socket') as RawSocketModule;
    const open = (family: number): RawSocketWrap => {
      const socket = raw.createSocket({ addressFamily: family, protocol: IPPROTO_RAW });
      // We only send: stop the poll for readable events (an IPPROTO_RAW socket receives nothing anyway).
      socket.wrap.pause(true, true);
      return socket.wrap;
    };
    this.v4 = open(raw.AddressFamily.IPv4);
    this.v6 = open(raw.AddressFamily.IPv6);
  }

  /**
   * Sends the IP packet `packet[0, length)` to `dst` (4 or 16 address bytes). A failure (e.g. the
   * socket buffer is full: ENOBUFS/EAGAIN) drops the packet and is counted; TCP's retransmission
   * recovers it like any loss in the network.
   */
  send(family: 4 | 6, packet: Buffer, length: number, dst: Uint8Array): void {
    try {
      (family === 4 ? this.v4 : this.v6).send(packet, 0, length, this.addressName(family, dst), noop);
      this.stats.sent++;
    } catch (error) {
      this.stats.failed++;
      this.stats.lastError = (error as Error).message;
    }
  }

  close(): void {
    this.v4.close();
    this.v6.close();
  }

  private addressName(family: 4 | 6, dst: Uint8Array): string {
    const n = family === 4 ? 4 : 16;
    const k = this.keyScratch;
    k.length = n;
    for (let i = 0; i < n; i++) k[i] = dst[i]!;
    const key = String.fromCharCode.apply(null, k);
    let name = this.names.get(key);
    if (name === undefined) {
      if (this.names.size >= 65536) this.names.clear();
      name = formatAddress(dst, 0, family);
      this.names.set(key, name);
    }
    return name;
  }
}
