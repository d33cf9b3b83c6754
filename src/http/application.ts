/**
 * HTTP/1.x as an application of the transports (tcp/transport.ts): its framing (request heads,
 * their bodies streamed, RFC 9112 §6), its counters, and a relay to a backend web server through
 * io/http-backend.ts — or, with several, a pool of them (io/http-backend-pool.ts). This file is
 * where the protocol meets its I/O; relay.ts does none.
 */
import { UndiciBackend, probeHttpBackend, probeHttpHealth } from '../io/http-backend.js';
import { HttpBackendPool, backendCounterNames, type HttpHealthCheck } from '../io/http-backend-pool.js';
import type { Application, Protocol, Relay } from '../tcp/transport.js';
import { DEFAULT_HEALTH_THRESHOLDS, downAtStart, type UpstreamPolicy } from '../upstream-selection.js';
import { HTTP_COUNTER_NAMES, HttpRelay } from './relay.js';
import { plausibleRequestStart, wholeRequestLength } from './request.js';

/** What each HTTP front end relays to; plain data, so that it crosses to the shard threads. */
export interface HttpSettings {
  kind: 'http';
  /**
   * The backend web servers, `http://host:port` (`--upstream` repeated). With more than one, a
   * pool with health checks and retries (io/http-backend-pool.ts); with one, that server alone,
   * unchecked.
   */
  origins: readonly string[];
  /** One per backend (`--upstream URL,weight=N`, 1 if not given), for the weighted policy. */
  weights: readonly number[];
  /** How a pool picks the backend for a request (`--upstream-policy`). */
  policy: UpstreamPolicy;
  /** A pool's health check (`--health-check-*`); it is also the pool's start-up probe. */
  healthCheck: HttpHealthCheck;
  /**
   * Of a pool, the backends (indices into `origins`) that did not pass the start-up probe: filled
   * in by it, before the relays open, so that they start down until a health probe passes.
   */
  downAtStart?: number[];
  /** How long the backend may take for its headers, and between body chunks, before 504. */
  timeoutMs: number;
  /** Largest request body relayed (`--max-body-size`); bigger ones get 413. 0: no limit. */
  maxBodyBytes: number;
}

/** The HTTP pool's default health check: the shared thresholds, `GET /`. */
export const DEFAULT_HTTP_HEALTH_CHECK: HttpHealthCheck = { path: '/', ...DEFAULT_HEALTH_THRESHOLDS };

/** How long the start-up probe waits for the backend. */
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
  const pooled = settings.origins.length > 1;
  // A pool's counters go on with each backend's own, named by its place in --upstream.
  const counterNames = pooled ? [...HTTP_COUNTER_NAMES, ...backendCounterNames(settings.origins.length)] : HTTP_COUNTER_NAMES;
  return {
    ...HTTP_PROTOCOL,
    counterNames,
    probe: (log) => (pooled ? probeBackends(settings, log) : probeHttpBackend(settings.origins[0]!, PROBE_TIMEOUT_MS)),
    open: <C>(): Relay<C> => {
      const counts = new Float64Array(counterNames.length);
      const backend = pooled
        ? new HttpBackendPool(settings.origins, {
            timeoutMs: settings.timeoutMs,
            counts,
            firstBackendCounter: HTTP_COUNTER_NAMES.length,
            downAtStart: settings.downAtStart ?? [],
            healthCheck: settings.healthCheck,
            policy: settings.policy,
            weights: settings.weights,
            // Once per change and relay (each shard worker has its own pool and health checks).
            onStateChange: (line) => console.error(`stateless-tcp http: ${line}`),
          })
        : new UndiciBackend(settings.origins[0]!, settings.timeoutMs);
      return new HttpRelay<C>({
        backend,
        upstreams: pooled ? (backend as HttpBackendPool) : null,
        counts,
        now: Date.now,
        maxBodyBytes: settings.maxBodyBytes,
      });
    },
  };
}

/**
 * A pool's start-up check, its health probe once to each backend: at least one must pass. Each
 * that does not gets one line and starts down (`downAtStart`), up once a health probe passes;
 * none passing is one line, the failure.
 */
async function probeBackends(settings: HttpSettings, log?: (line: string) => void): Promise<string | null> {
  const { path } = settings.healthCheck;
  const problems = await Promise.all(settings.origins.map((origin) => probeHttpHealth(origin, path, PROBE_TIMEOUT_MS)));
  const fix = 'start a backend or correct --upstream (or --health-check-path)';
  if (problems.every((p) => p !== null)) return `no backend passed the health check: ${problems.join('; ')}: ${fix}`;
  settings.downAtStart = downAtStart(problems, log);
  return null;
}
