/**
 * The PROXY protocol, version 2 (haproxy's proxy-protocol.txt, §2.2): a binary header before a
 * UDP datagram or at the start of a TCP connection that tells the receiver whom the relayed
 * traffic is really from. With it the resolver sees each client's own address and port — for its
 * access control, its logs and its response-rate limiting — rather than the front end's;
 * unbound (`proxy-protocol-port`), dnsdist and PowerDNS Recursor accept it.
 */

/** What the header says of one connection: its family, and both ends (the client's first). */
export class ConnectionEndpoints {
  family: 4 | 6 = 4;
  readonly clientAddress = new Uint8Array(16);
  readonly serverAddress = new Uint8Array(16);
  clientPort = 0;
  serverPort = 0;
}

const SIGNATURE = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
/** Version 2, command PROXY. */
const VERSION_PROXY = 0x21;
/** Address family (high nibble: 1 INET, 2 INET6) and transport (low: 1 STREAM, 2 DGRAM). */
const INET = 0x10;
const INET6 = 0x20;
const STREAM = 0x01;
const DGRAM = 0x02;

/** The header's length for `family`: 16 bytes, then 2 × 4 + 4 (IPv4) or 2 × 16 + 4 (IPv6). */
export function proxyHeaderLength(family: 4 | 6): number {
  return 16 + (family === 4 ? 12 : 36);
}

/** Writes the header for `endpoints` over `transport` into `out` at `offset`; returns its length. */
export function writeProxyHeader(endpoints: ConnectionEndpoints, transport: 'udp' | 'tcp', out: Uint8Array, offset: number): number {
  const n = endpoints.family === 4 ? 4 : 16;
  out.set(SIGNATURE, offset);
  out[offset + 12] = VERSION_PROXY;
  out[offset + 13] = (endpoints.family === 4 ? INET : INET6) | (transport === 'udp' ? DGRAM : STREAM);
  const addressLength = 2 * n + 4;
  out[offset + 14] = addressLength >>> 8;
  out[offset + 15] = addressLength;
  let p = offset + 16;
  for (let i = 0; i < n; i++) out[p + i] = endpoints.clientAddress[i]!;
  p += n;
  for (let i = 0; i < n; i++) out[p + i] = endpoints.serverAddress[i]!;
  p += n;
  out[p] = endpoints.clientPort >>> 8;
  out[p + 1] = endpoints.clientPort;
  out[p + 2] = endpoints.serverPort >>> 8;
  out[p + 3] = endpoints.serverPort;
  return 16 + addressLength;
}
