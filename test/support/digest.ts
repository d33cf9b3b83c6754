/** The SHA-256 of `bytes` in hex: what lab tests compare bodies by (a whole body would flood an assertion's message). */
import { createHash } from 'node:crypto';

export const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');
