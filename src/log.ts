/**
 * Structured logs (pino): one JSON line per significant event — start, secret rotation, a shard
 * worker's death and restart, a slow start, stop with its counters — on stdout. Nothing per
 * packet. `--log-level` chooses how much (default info).
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export function createLogger(kind: string, level: string): Logger {
  return pino({
    name: `stateless-tcp ${kind}`,
    level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}
