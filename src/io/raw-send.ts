/**
 * Sending complete IP packets through raw sockets (our Node-API addon, native/raw_send.c).
 *
 * Both sockets use protocol IPPROTO_RAW (255): the kernel then takes our IP header as written
 * (raw(7): IPPROTO_RAW implies IP_HDRINCL; for IPv6 the kernel sets hdrincl the same way), and —
 * unlike an IPPROTO_TCP raw socket — is never handed a copy of incoming TCP packets, which we
 * would have to read and throw away.
 *
 * Every shard worker thread opens its own RawSender, so the addon is a Node-API module, which
 * loads in any number of threads at once (the `raw-socket` package cannot: it is not
 * context-aware). A send is one synchronous sendto(2) on a non-blocking socket with the
 * destination taken from the address bytes, so nothing is formatted or allocated per packet.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

interface RawSendAddon {
  open(family: 4 | 6): number;
  /** Bytes sent, or −errno. */
  send(fd: number, family: 4 | 6, packet: Uint8Array, length: number, dst: Uint8Array): number;
  close(fd: number): void;
  errorName(errno: number): string;
}

/** build/Release is where node-gyp puts it (`npm ci` builds it from binding.gyp), from dist/src/io/. */
const ADDON_PATH = '../../../build/Release/raw_send.node';

export interface SendStats {
  sent: number;
  failed: number;
  lastError: string;
}

export class RawSender {
  readonly stats: SendStats = { sent: 0, failed: 0, lastError: '' };
  private readonly addon: RawSendAddon;
  private v4 = -1;
  private v6 = -1;

  /** Opens both sockets; throws an Error whose message names the cause (EPERM without root). */
  constructor() {
    this.addon = require(ADDON_PATH) as RawSendAddon;
    this.v4 = this.addon.open(4);
    try {
      this.v6 = this.addon.open(6);
    } catch (error) {
      this.addon.close(this.v4);
      throw error;
    }
  }

  /**
   * Sends the IP packet `packet[0, length)` to `dst` (4 or 16 address bytes). A failure (e.g. the
   * socket buffer is full: ENOBUFS/EAGAIN) drops the packet and is counted; TCP's retransmission
   * recovers it like any loss in the network.
   */
  send(family: 4 | 6, packet: Buffer, length: number, dst: Uint8Array): void {
    const result = this.addon.send(family === 4 ? this.v4 : this.v6, family, packet, length, dst);
    if (result >= 0) {
      this.stats.sent++;
    } else {
      this.stats.failed++;
      this.stats.lastError = this.addon.errorName(-result);
    }
  }

  close(): void {
    this.addon.close(this.v4);
    this.addon.close(this.v6);
    this.v4 = this.v6 = -1;
  }
}

/** The one-line start-up message for a RawSender that could not be opened. */
export function rawSocketProblem(error: Error): string {
  return `cannot open a raw socket (${error.message}): run as root, or give node CAP_NET_RAW and CAP_NET_ADMIN`;
}
