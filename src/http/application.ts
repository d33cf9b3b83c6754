/**
 * HTTP/1.x as an application of the transports (tcp/transport.ts): its framing (request heads,
 * their bodies streamed, RFC 9112 §6), its counters, and a relay to a backend web server through
 * io/http-backend.ts. This file is where the protocol meets its I/O; relay.ts does none.
 */
import { UndiciBackend, probeHttpBackend } from '../io/http-backend.js';
import type { Application, Protocol, Relay } from '../tcp/transport.js';
import { HTTP_COUNTER_NAMES, HttpRelay } from './relay.js';
import { plausibleRequestStart, wholeRequestLength } from './request.js';

/** What each HTTP front end relays to; plain data, so that it crosses to the shard threads. */
export interface HttpSettings {
  kind: 'http';
  /** The backend web server, `http://host:port`. */
  origin: string;
  /** How long the backend may take for its headers, and between body chunks, before 504. */
  timeoutMs: number;
  /** Largest request body relayed (`--max-body-size`); bigger ones get 413. 0: no limit. */
  maxBodyBytes: number;
}

/** How long the start-up probe waits for the backend to accept a connection. */
const PROBE_TIMEOUT_MS = 2000;

export const HTTP_PROTOCOL: Protocol = {
  kind: 'http',
  messageLength: wholeRequestLength,
  // A browser pipelines a handful at most; each queued request is a copy held until answered.
  maxPipelined: 16,
  plausibleStart: plausibleRequestStart,
  counterNames: HTTP_COUNTER_NAMES,
};

export function httpApplication(settings: HttpSettings): Application {
  return {
    ...HTTP_PROTOCOL,
    probe: () => probeHttpBackend(settings.origin, PROBE_TIMEOUT_MS),
    open: <C>(): Relay<C> =>
      new HttpRelay<C>({
        backend: new UndiciBackend(settings.origin, settings.timeoutMs),
        now: Date.now,
        maxBodyBytes: settings.maxBodyBytes,
      }),
  };
}
