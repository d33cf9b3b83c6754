/**
 * Builds a lab for trying things by hand, prints how to use it, and tears it down on SIGINT/SIGTERM
 * or after `--for SECONDS` (default and maximum: one hour, so a forgotten lab never lingers).
 *
 *   node dist/lab/open-lab.js [--for SECONDS] [--mtu BYTES] [--no-unbound]
 */
import { parseArgs } from 'node:util';
import { type Lab, createLab } from './lab.js';
import { LAB_ZONE } from './zone.js';

const MAX_SECONDS = 3600;

function usageError(message: string): never {
  console.error(`lab: ${message}\nusage: node dist/lab/open-lab.js [--for SECONDS (1-${MAX_SECONDS})] [--mtu BYTES] [--no-unbound]`);
  process.exit(2);
}

function positiveInteger(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value <= 0) usageError(`--${name} takes a positive integer, not "${text}"`);
  return value;
}

function describe(lab: Lab, seconds: number): string {
  const client = `ip netns exec ${lab.clientNamespace}`;
  const server = `ip netns exec ${lab.serverNamespace}`;
  const { v4, v6 } = lab.upstream;
  return [
    `client namespace ${lab.clientNamespace}: ${lab.clientInterface} ${lab.clientV4}, ${lab.clientV6}`,
    `server namespace ${lab.serverNamespace}: ${lab.serverInterface} ${lab.serverV4}, ${lab.serverV6}`,
    `mtu ${lab.mtu}; temp dir ${lab.tempDir}`,
    lab.unbound === null
      ? `no unbound (upstream address ${v4.address}:${v4.port} is free in the server namespace)`
      : `unbound (pid ${lab.unbound.pid}) on ${v4.address}@${v4.port} and ${v6.address}@${v6.port} in the server namespace, zone ${LAB_ZONE.apex}`,
    '',
    'try:',
    `  ${server} dig @${v4.address} -p ${v4.port} ${LAB_ZONE.www.name} A`,
    `  ${server} dig +tcp @${v6.address} -p ${v6.port} ${LAB_ZONE.big.name} TXT`,
    `  ${server} node dist/src/cli.js dns -i ${lab.serverInterface} -l ${lab.serverV4}:53 -l [${lab.serverV6}]:53 -u ${v4.address}:${v4.port}`,
    `  ${client} dig +tcp @${lab.serverV4} ${LAB_ZONE.www.name}`,
    `  ${client} kdig +tcp @${lab.serverV6} ${LAB_ZONE.big.name} TXT`,
    `  ${server} tcpdump -n -i ${lab.serverInterface}`,
    '',
    `tearing down on Ctrl-C, SIGTERM or in ${seconds} s`,
  ].join('\n');
}

async function main(): Promise<void> {
  const parse = () =>
    parseArgs({
      options: { for: { type: 'string' }, mtu: { type: 'string' }, 'no-unbound': { type: 'boolean' } },
      strict: true,
    }).values;
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse();
  } catch (error) {
    usageError(error instanceof Error ? error.message : String(error));
  }
  const seconds = positiveInteger('for', parsed.for, MAX_SECONDS);
  if (seconds > MAX_SECONDS) usageError(`--for is at most ${MAX_SECONDS} seconds`);
  const mtu = positiveInteger('mtu', parsed.mtu, 1500);

  const setupStart = performance.now();
  const lab = await createLab({ mtu, unbound: parsed['no-unbound'] !== true });
  console.log(`lab ready in ${Math.round(performance.now() - setupStart)} ms\n${describe(lab, seconds)}`);

  // The lab also tears itself down on these signals and exits 128+signal; listening here only
  // lets this script report how long the teardown took.
  const ending = await new Promise<{ reason: string; status: number }>((resolve) => {
    setTimeout(() => resolve({ reason: `${seconds} s elapsed`, status: 0 }), seconds * 1000);
    process.once('SIGINT', () => resolve({ reason: 'SIGINT', status: 130 }));
    process.once('SIGTERM', () => resolve({ reason: 'SIGTERM', status: 143 }));
  });
  const teardownStart = performance.now();
  await lab.close();
  console.log(`${ending.reason}: lab removed in ${Math.round(performance.now() - teardownStart)} ms`);
  process.exit(ending.status);
}

main().catch((error: unknown) => {
  console.error(`lab: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
