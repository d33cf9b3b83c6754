/**
 * `--config FILE` (config.ts) applied to a commander command shaped like the CLI's: YAML or JSON,
 * option names with or without dashes, lists for options that repeat, the same argument checks
 * as on the command line, the command line winning; and the one-line ConfigError for each way a
 * file can be wrong.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Command, InvalidArgumentError } from 'commander';
import { applyConfigFile, ConfigError } from '../../src/config.js';
import { parseEndpoint, type Endpoint } from '../../src/endpoint.js';

/** As cli.ts: each --listen adds one endpoint; a bad one is commander's InvalidArgumentError. */
function endpointArgument(value: string, previous: Endpoint[] = []): Endpoint[] {
  try {
    return [...previous, parseEndpoint(value)];
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

function positiveInteger(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`"${value}" is not a positive integer`);
  return n;
}

/** A command with the kinds of option the CLI has, after parsing `argv` (the command line). */
function parsed(argv: string[] = []): Command {
  const command = new Command('stcp')
    .exitOverride()
    .option('--config <file>', 'options file')
    .option('-i, --interface <name>', 'interface')
    .option('-l, --listen <addr:port>', 'repeats', endpointArgument)
    .option('--cookie-secret-file <file>', 'a path')
    .option('--workers <n>', 'threads', positiveInteger, 4)
    .option('--close-after-response', 'a switch', false)
    .option('--log-level <level>', 'a word', 'info');
  command.parse(argv, { from: 'user' });
  return command;
}

const dir = mkdtempSync(join(tmpdir(), 'stcp-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;

function file(text: string, extension = 'yaml'): string {
  const path = join(dir, `config-${files++}.${extension}`);
  writeFileSync(path, text);
  return path;
}

/** The ConfigError applying `text` gives; asserts it is one line. */
function errorFor(text: string, extension = 'yaml', argv: string[] = []): { path: string; message: string } {
  const path = file(text, extension);
  const command = parsed(argv);
  try {
    applyConfigFile(command, path);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `${String(error)} is a ConfigError`);
    assert.ok(!error.message.includes('\n'), `one line: ${error.message}`);
    return { path, message: error.message };
  }
  assert.fail(`no error for ${JSON.stringify(text)}`);
}

describe('applyConfigFile', () => {
  it('sets options from YAML: dashed and camelCase names, numbers, switches, lists', () => {
    const command = parsed();
    applyConfigFile(
      command,
      file(
        [
          'interface: veth0',
          'listen:',
          '  - 198.18.0.2:53',
          '  - "[2001:2::2]:53"',
          'cookieSecretFile: /etc/stcp/secret',
          'workers: 2',
          'close-after-response: true',
        ].join('\n'),
      ),
    );
    assert.deepEqual(command.opts(), {
      interface: 'veth0',
      listen: [
        { address: '198.18.0.2', port: 53, family: 4 },
        { address: '2001:2::2', port: 53, family: 6 },
      ],
      cookieSecretFile: '/etc/stcp/secret',
      workers: 2,
      closeAfterResponse: true,
      logLevel: 'info',
    });
    for (const name of ['interface', 'listen', 'cookieSecretFile', 'workers', 'closeAfterResponse']) {
      assert.equal(command.getOptionValueSource(name), 'config', name);
    }
    assert.equal(command.getOptionValueSource('logLevel'), 'default');
  });

  it('reads JSON, and a single value for an option that repeats', () => {
    const command = parsed();
    applyConfigFile(
      command,
      file(JSON.stringify({ listen: '198.18.0.2:53', 'log-level': 'debug', workers: '3', 'close-after-response': false }), 'json'),
    );
    assert.deepEqual(command.opts().listen, [{ address: '198.18.0.2', port: 53, family: 4 }]);
    assert.equal(command.opts().logLevel, 'debug');
    assert.equal(command.opts().workers, 3);
    assert.equal(command.opts().closeAfterResponse, false);
  });

  it('turns numbers into strings for options that take text', () => {
    const command = parsed();
    applyConfigFile(command, file('interface: 42\ncookie-secret-file: 7'));
    assert.equal(command.opts().interface, '42');
    assert.equal(command.opts().cookieSecretFile, '7');
  });

  it('lets the command line win over the file, option by option', () => {
    const command = parsed(['--workers', '8', '--listen', '[::1]:53']);
    applyConfigFile(command, file('workers: 2\nlisten: [198.18.0.2:53, 198.18.0.3:53]\ninterface: veth0'));
    assert.equal(command.opts().workers, 8);
    assert.deepEqual(command.opts().listen, [{ address: '::1', port: 53, family: 6 }]);
    assert.equal(command.getOptionValueSource('workers'), 'cli');
    assert.equal(command.opts().interface, 'veth0');
  });

  it('changes nothing for an empty file or one holding only a comment', () => {
    for (const text of ['', '# nothing yet\n', '---\n']) {
      const command = parsed();
      applyConfigFile(command, file(text));
      assert.deepEqual(command.opts(), { workers: 4, closeAfterResponse: false, logLevel: 'info' });
    }
  });

  it('says when the file cannot be read', () => {
    const missing = join(dir, 'missing.yaml');
    assert.throws(
      () => applyConfigFile(parsed(), missing),
      (error: Error) => error instanceof ConfigError && error.message === `cannot read --config ${missing}: ENOENT`,
    );
    assert.throws(
      () => applyConfigFile(parsed(), dir),
      (error: Error) => error instanceof ConfigError && error.message === `cannot read --config ${dir}: EISDIR`,
    );
  });

  it('says when the file is not YAML, in one line', () => {
    const { path, message } = errorFor('listen: [198.18.0.2:53\nworkers: 2\n');
    assert.match(message, new RegExp(`^--config ${path} is not YAML or JSON: \\S`));
    const json = errorFor('{"workers": 2,,}', 'json');
    assert.match(json.message, new RegExp(`^--config ${json.path} is not YAML or JSON: \\S`));
  });

  it('wants an object of option names', () => {
    for (const text of ['- listen\n- workers\n', '"veth0"\n', '42\n', 'true\n']) {
      const { path, message } = errorFor(text);
      assert.equal(message, `--config ${path} must hold an object of option names to values`, text);
    }
  });

  it('names an unknown option, and refuses config itself', () => {
    let { path, message } = errorFor('workers: 2\nthreads: 4\n');
    assert.equal(message, `--config ${path}: unknown option "threads" (see stcp --help for the names)`);
    ({ path, message } = errorFor('config: other.yaml\n'));
    assert.equal(message, `--config ${path}: unknown option "config" (see stcp --help for the names)`);
    ({ path, message } = errorFor('--workers: 2\n'));
    assert.equal(message, `--config ${path}: unknown option "--workers" (see stcp --help for the names)`);
  });

  it('wants true or false for a switch', () => {
    for (const value of ['yes', '1', '"true"', 'on']) {
      const { path, message } = errorFor(`close-after-response: ${value}\n`);
      assert.equal(message, `--config ${path}: close-after-response takes true or false`, value);
    }
  });

  it('wants a value or a list of values, not an object or null', () => {
    let { path, message } = errorFor('workers:\n  n: 2\n');
    assert.equal(message, `--config ${path}: workers takes a value, not {"n":2}`);
    ({ path, message } = errorFor('listen:\n  - 198.18.0.2:53\n  - [a, b]\n'));
    assert.equal(message, `--config ${path}: listen takes a list of values, not ["a","b"]`);
    ({ path, message } = errorFor('interface:\n'));
    assert.equal(message, `--config ${path}: interface takes a value, not null`);
  });

  it("puts each value through the option's own check, naming the option", () => {
    let { path, message } = errorFor('workers: 0\n');
    assert.equal(message, `--config ${path}: workers: "0" is not a positive integer`);
    ({ path, message } = errorFor('listen: [198.18.0.2:53, "2001:2::2:53"]\n'));
    assert.equal(message, `--config ${path}: listen: "2001:2::2:53" is not ADDR:PORT (write IPv6 addresses in brackets: [2001:2::2]:53)`);
    ({ path, message } = errorFor('listen: localhost:53\n'));
    assert.equal(message, `--config ${path}: listen: "localhost" in "localhost:53" is not an IP address`);
  });

  it('skips, unchecked, the value the file gives for an option the command line gives', () => {
    const command = parsed(['--workers', '8']);
    applyConfigFile(command, file('workers: 0\n'));
    assert.equal(command.opts().workers, 8);
  });
});
