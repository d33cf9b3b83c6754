/**
 * Where the SYN cookie secret comes from: a file (`--cookie-secret-file`, re-read on SIGHUP to
 * rotate it), the environment (`STATELESS_TCP_COOKIE_SECRET`), or, for a lone instance, random.
 * Instances that should answer each other's connections share it. And the routing key, which is
 * always random.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { SECRET_BYTES } from '../tcp/cookie.js';
import { ROUTING_KEY_BYTES } from '../wire/flow-hash.js';

export const SECRET_ENVIRONMENT_VARIABLE = 'STATELESS_TCP_COOKIE_SECRET';

const FORMAT = `${SECRET_BYTES * 2} hexadecimal digits (e.g. from \`openssl rand -hex ${SECRET_BYTES}\`)`;

export interface CookieSecret {
  secret: Uint8Array;
  /** Where it came from, for the start-up line. */
  source: string;
}

/** Reads the secret; throws an Error with a one-line message naming the fix. */
export function loadCookieSecret(file: string | undefined, environment: NodeJS.ProcessEnv = process.env): CookieSecret {
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      throw new Error(`cannot read the cookie secret file ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    return { secret: parseSecret(text, `the cookie secret file ${file}`), source: `file ${file}` };
  }
  const fromEnvironment = environment[SECRET_ENVIRONMENT_VARIABLE];
  if (fromEnvironment !== undefined) {
    return { secret: parseSecret(fromEnvironment, SECRET_ENVIRONMENT_VARIABLE), source: SECRET_ENVIRONMENT_VARIABLE };
  }
  return { secret: randomBytes(SECRET_BYTES), source: 'random (this instance only)' };
}

function parseSecret(text: string, where: string): Uint8Array {
  const hex = text.replace(/\s+/g, '');
  if (!new RegExp(`^[0-9a-fA-F]{${SECRET_BYTES * 2}}$`).test(hex)) throw new Error(`${where} must hold ${FORMAT}`);
  return Buffer.from(hex, 'hex');
}

/**
 * The key of the flow hash (wire/flow-hash.ts), drawn once per process and kept for its life:
 * the capture thread and every shard worker must route alike, whatever SIGHUP does to the cookie
 * secret. Instances need not share it: ECMP or anycast picks the instance, each routes inside.
 */
export function randomRoutingKey(): Uint8Array {
  return randomBytes(ROUTING_KEY_BYTES);
}
