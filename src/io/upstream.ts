/**
 * Sockets to the upstream DNS resolver: one connected UDP socket for queries, and a TCP
 * connection per retry of a truncated answer (rare, so not pooled).
 */
import { randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import type { UpstreamTransport } from '../dns/relay.js';

export interface UpstreamAddress {
  host: string;
  port: number;
}

export class UdpTcpUpstream implements UpstreamTransport {
  private readonly udp: dgram.Socket;
  private lastError = '';

  /** `onAnswer` gets every datagram the resolver sends back. */
  constructor(
    private readonly address: UpstreamAddress,
    onAnswer: (answer: Buffer) => void,
  ) {
    this.udp = dgram.createSocket({ type: net.isIPv6(address.host) ? 'udp6' : 'udp4' });
    this.udp.on('message', onAnswer);
    // ICMP errors (port unreachable while the resolver restarts) surface here; queries then time out.
    this.udp.on('error', (error) => {
      this.lastError = error.message;
    });
  }

  /** Binds a random source port (RFC 5452 §9.2) and connects, so only the resolver's datagrams arrive. */
  async open(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.udp.once('error', reject);
      this.udp.connect(this.address.port, this.address.host, () => {
        this.udp.off('error', reject);
        resolve();
      });
    });
  }

  get error(): string {
    return this.lastError;
  }

  sendDatagram(query: Uint8Array): void {
    this.udp.send(query);
  }

  queryOverTcp(query: Uint8Array, timeoutMs: number): Promise<Uint8Array | null> {
    return new Promise((resolve) => {
      const socket = net.connect({ host: this.address.host, port: this.address.port });
      const chunks: Buffer[] = [];
      let received = 0;
      const finish = (answer: Uint8Array | null): void => {
        clearTimeout(timer);
        socket.destroy();
        resolve(answer);
      };
      const timer = setTimeout(() => finish(null), timeoutMs);
      socket.setNoDelay(true);
      socket.on('error', () => finish(null));
      socket.on('close', () => finish(null));
      socket.on('connect', () => {
        const framed = Buffer.allocUnsafe(2 + query.length);
        framed.writeUInt16BE(query.length, 0);
        framed.set(query, 2);
        socket.write(framed);
      });
      socket.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        received += chunk.length;
        if (received < 2) return;
        const all = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, received);
        const length = all.readUInt16BE(0);
        if (received >= 2 + length) finish(all.subarray(2, 2 + length));
      });
    });
  }

  close(): void {
    this.udp.close();
  }
}

/**
 * Checks at start-up that a DNS server answers at `address` over UDP (any answer will do, even
 * REFUSED). Resolves to null, or to a one-line reason naming the fix.
 */
export async function probeUpstream(address: UpstreamAddress, timeoutMs: number): Promise<string | null> {
  const query = dnsPacket.encode({
    type: 'query',
    id: randomInt(65536),
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: 'SOA', name: '.' }],
  });
  const socket = dgram.createSocket({ type: net.isIPv6(address.host) ? 'udp6' : 'udp4' });
  const where = `${net.isIPv6(address.host) ? `[${address.host}]` : address.host}:${address.port}`;
  const fix = 'start the resolver or correct --upstream';
  try {
    return await new Promise<string | null>((resolve) => {
      const timer = setTimeout(() => resolve(`upstream ${where} did not answer a DNS query within ${timeoutMs} ms: ${fix}`), timeoutMs);
      socket.on('error', (error) => {
        clearTimeout(timer);
        resolve(`upstream ${where} is unreachable (${error.message}): ${fix}`);
      });
      socket.on('message', (answer) => {
        if (answer.length >= 2 && answer.readUInt16BE(0) === query.readUInt16BE(0)) {
          clearTimeout(timer);
          resolve(null);
        }
      });
      socket.connect(address.port, address.host, () => socket.send(query));
    });
  } finally {
    socket.close();
  }
}
