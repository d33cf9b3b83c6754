/**
 * Where the lab's own clients are, for running them with `node` inside a namespace
 * (`lab.exec('client', [process.execPath, TCP_CLIENT, …])`). Each is a script that acts when
 * run, so it is started by its path rather than imported; each script's header says what it
 * takes. Resolved from this file's place in dist/lab/.
 */
import { fileURLToPath } from 'node:url';

const script = (name: string): string => fileURLToPath(new URL(`./${name}`, import.meta.url));

/** DNS over TCP with hand-made writes: malformed messages, several in one write, one over several (dns-client.ts). */
export const DNS_CLIENT = script('dns-client.js');
/** DNS over TCP on kernel sockets: one scripted exchange, or a pipelined load checked answer by answer (tcp-client.ts). */
export const TCP_CLIENT = script('tcp-client.js');
/** Hand-made TCP segments sent from a raw socket (raw-client.ts). */
export const RAW_CLIENT = script('raw-client.js');
/** One DNS connection held open across something the test does to the server (held-connection.ts). */
export const HELD_CONNECTION = script('held-connection.js');
