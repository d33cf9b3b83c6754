/**
 * `--config FILE`: every command-line option can come from a file, YAML or JSON (JSON is YAML),
 * as an object of option names — the long option without its dashes, e.g. `listen`,
 * `cookie-secret-file` (or `cookieSecretFile`) — to values: a string or number, true/false for
 * switches, a list for options that repeat (`listen`). The command line wins over the file.
 * Values go through the same checks as on the command line.
 */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError, type Command } from 'commander';
import { parse } from 'yaml';

/** Thrown with a one-line message naming the file, the option and the fix. */
export class ConfigError extends Error {}

export function applyConfigFile(command: Command, file: string): void {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read --config ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  let data: unknown;
  try {
    data = parse(text);
  } catch (error) {
    throw new ConfigError(`--config ${file} is not YAML or JSON: ${(error as Error).message.split('\n')[0]}`);
  }
  if (data === null || data === undefined) return; // an empty file
  if (typeof data !== 'object' || Array.isArray(data))
    throw new ConfigError(`--config ${file} must hold an object of option names to values`);

  for (const [key, value] of Object.entries(data as Record<string, unknown>)) {
    const option = command.options.find((o) => o.long === `--${key}` || o.attributeName() === key);
    if (option === undefined || option.long === '--config') {
      throw new ConfigError(`--config ${file}: unknown option "${key}" (see ${command.name()} --help for the names)`);
    }
    const name = option.attributeName();
    if (command.getOptionValueSource(name) === 'cli') continue;
    const where = `--config ${file}: ${key}`;
    let parsed: unknown;
    if (option.isBoolean()) {
      if (typeof value !== 'boolean') throw new ConfigError(`${where} takes true or false`);
      parsed = value;
    } else {
      const values = Array.isArray(value) ? value : [value];
      for (const v of values) {
        if (typeof v !== 'string' && typeof v !== 'number')
          throw new ConfigError(`${where} takes ${Array.isArray(value) ? 'a list of values' : 'a value'}, not ${JSON.stringify(v)}`);
        try {
          parsed = option.parseArg === undefined ? String(v) : option.parseArg(String(v), parsed);
        } catch (error) {
          if (error instanceof InvalidArgumentError) throw new ConfigError(`${where}: ${error.message}`);
          throw error;
        }
      }
    }
    command.setOptionValueWithSource(name, parsed, 'config');
  }
}
