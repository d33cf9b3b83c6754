/**
 * Running the real `stateless-tcp` command (src/cli.ts: dns or http) inside a lab's server
 * namespace, for integration tests, the demo and benchmarks, and reading its counter summary.
 */
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Lab } from './lab.js';

/** The compiled CLI (dist/src/cli.js), found from this file's place in dist/lab/. */
export const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
/** How long the CLI may take to say it is listening. */
const START_TIMEOUT_MS = 20_000;

export interface RunningFrontEnd {
  readonly process: ChildProcess;
  /** Everything the process printed so far (stdout and stderr). */
  output(): string;
  /** SIGTERM; resolves to the process's last line (its counter summary) once it has exited. */
  stop(): Promise<string>;
}

/**
 * `stateless-tcp dns` on the lab's server interface, both addresses, port 53, relaying to unbound;
 * `env` adds to the environment (e.g. STATELESS_TCP_TEST_HOOKS).
 */
export function startFrontEnd(lab: Lab, extraArgs: readonly string[] = [], env: NodeJS.ProcessEnv = {}): Promise<RunningFrontEnd> {
  return startCli(lab, ['dns', '--upstream', `${lab.upstream.v4.address}:${lab.upstream.v4.port}`, ...listenArgs(lab, 53), ...extraArgs], env);
}

/** `stateless-tcp http` on the lab's server interface, both addresses, port 80, relaying to `origin`. */
export function startHttpFrontEnd(lab: Lab, origin: string, extraArgs: readonly string[] = []): Promise<RunningFrontEnd> {
  return startCli(lab, ['http', '--upstream', origin, ...listenArgs(lab, 80), ...extraArgs]);
}

function listenArgs(lab: Lab, port: number): string[] {
  return ['--interface', lab.serverInterface, '--listen', `${lab.serverV4}:${port}`, '--listen', `[${lab.serverV6}]:${port}`];
}

/** The CLI with any arguments, in the server namespace; resolves once it says it is listening. */
export async function startCli(lab: Lab, args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<RunningFrontEnd> {
  const child = lab.spawn('server', [process.execPath, CLI, ...args], { env: { ...process.env, ...env } });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  // Usually one or two seconds (a Node thread per shard plus the capture thread), but several
  // times that while other tests load a small machine.
  await lab.waitForLine(child, /listening on/, START_TIMEOUT_MS);
  return {
    process: child,
    output: () => output,
    async stop() {
      await lab.stop(child);
      return output.trimEnd().split('\n').at(-1) ?? '';
    },
  };
}

/**
 * A counter from the front end's stop summary (`name=value` pairs after "stopped on …"), 0 when
 * absent (zeros are left out).
 */
export function summaryCounter(summary: string, name: string): number {
  return Number(new RegExp(`(?:^|\\s)${name.replaceAll('.', '\\.')}=(\\d+)`).exec(summary)?.[1] ?? 0);
}
