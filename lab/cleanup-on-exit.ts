/**
 * Process-wide cleanup of labs still open when the process ends: synchronously on the 'exit'
 * event (which also fires after an uncaught exception or unhandled rejection), and on
 * SIGINT/SIGTERM (clean up, then exit 130/143). The hooks are installed only while some lab is
 * open, so a process without labs keeps Node's default signal behaviour.
 */
import { constants as osConstants } from 'node:os';

/** What the hooks need of a lab. */
export interface Closable {
  close(): Promise<void>;
  /** The 'exit' path: only synchronous calls work there. */
  closeSync(): void;
}

const open = new Set<Closable>();
let hooksInstalled = false;
let signalled = false;
/** Whatever happens during cleanup after a signal, exit within this time ('exit' then cleans up synchronously). */
const SIGNAL_CLEANUP_LIMIT_MS = 15_000;

/** From now until `forgetOnExit`, `lab` is closed if the process ends. */
export function closeOnExit(lab: Closable): void {
  open.add(lab);
  installHooks();
}

/** `lab` has closed itself. */
export function forgetOnExit(lab: Closable): void {
  open.delete(lab);
  if (open.size === 0) removeHooks();
}

function onProcessExit(): void {
  for (const lab of open) lab.closeSync();
}

function onSignal(signal: NodeJS.Signals): void {
  const status = 128 + osConstants.signals[signal];
  if (signalled) process.exit(status); // a second signal: stop waiting, the 'exit' hook cleans up
  signalled = true;
  setTimeout(() => process.exit(status), SIGNAL_CLEANUP_LIMIT_MS).unref();
  void Promise.allSettled([...open].map((lab) => lab.close())).then(() => process.exit(status));
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', onProcessExit);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

function removeHooks(): void {
  if (!hooksInstalled || signalled) return;
  hooksInstalled = false;
  process.off('exit', onProcessExit);
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
}
