/**
 * The DNS pool's health check: the shared thresholds (upstream-selection.ts) and the question
 * its probes ask (io/upstream-pool.ts sends them).
 */
import { DEFAULT_HEALTH_THRESHOLDS, type HealthThresholds } from '../upstream-selection.js';

/** The health check (`--health-check-*`): its probe, and the runs that change an upstream's state. */
export interface HealthCheckSettings extends HealthThresholds {
  /** The probe's question (dnsdist `checkName`, `checkType`): `. SOA` by default. */
  name: string;
  /** Its QTYPE as a number (6: SOA). */
  type: number;
}

export const DEFAULT_HEALTH_CHECK: HealthCheckSettings = { name: '.', type: 6, ...DEFAULT_HEALTH_THRESHOLDS };
