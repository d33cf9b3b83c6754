import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCookieSecret, SECRET_ENVIRONMENT_VARIABLE } from '../../../src/io/secret.js';

test('the cookie secret comes from the file, else the environment, else is random', () => {
  const dir = mkdtempSync(join(tmpdir(), 'stcp-secret-'));
  try {
    const file = join(dir, 'secret');
    writeFileSync(file, '00112233445566778899aabbccddeeff\n');
    const fromFile = loadCookieSecret(file, { [SECRET_ENVIRONMENT_VARIABLE]: 'ff'.repeat(16) });
    assert.equal(Buffer.from(fromFile.secret).toString('hex'), '00112233445566778899aabbccddeeff');
    assert.equal(fromFile.source, `file ${file}`);

    const fromEnvironment = loadCookieSecret(undefined, { [SECRET_ENVIRONMENT_VARIABLE]: 'AB'.repeat(16) });
    assert.equal(Buffer.from(fromEnvironment.secret).toString('hex'), 'ab'.repeat(16));

    const a = loadCookieSecret(undefined, {});
    const b = loadCookieSecret(undefined, {});
    assert.equal(a.secret.length, 16);
    assert.notDeepEqual(a.secret, b.secret);

    writeFileSync(file, 'not hex at all');
    assert.throws(() => loadCookieSecret(file, {}), /must hold 32 hexadecimal digits \(e\.g\. from `openssl rand -hex 16`\)$/);
    assert.throws(() => loadCookieSecret(join(dir, 'missing'), {}), /^Error: cannot read the cookie secret file .*missing: ENOENT$/);
  } finally {
    rmSync(dir, { recursive: true });
  }
});
