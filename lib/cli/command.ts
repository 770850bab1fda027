/** What a subcommand of the `express-oci-registry` command is: its flag table, the parsing and help text made from it, and usage errors. */
import { parseArgs } from 'node:util';

/** One `--flag` of a command. */
export interface Flag {
  /** The name without the dashes. */
  name: string;
  /** The value's placeholder in the help (`DIR`, `N`); absent for a switch. */
  value?: string;
  /** One line for `--help`, defaults included. */
  help: string;
}

/** The parsed flags: strings for flags with a value, `true` for switches given. */
export type FlagValues = Readonly<Record<string, string | boolean | undefined>>;

/** A subcommand: `express-oci-registry <name> …`. */
export interface Command {
  /** One line for the command list. */
  summary: string;
  /**
   * Runs with the words after the command's name and resolves to the exit status, or to
   * undefined while the command goes on (a server). Errors it throws exit 1 with their message.
   */
  main(argv: string[]): Promise<number | undefined>;
}

/** A command described by a table of flags, which gives its parsing and its `--help`. */
export interface FlagCommand {
  /** One line for the command list. */
  summary: string;
  /** More for `--help`, after the summary. */
  description?: string;
  flags: readonly Flag[];
  /** Runs with the parsed flags; it may go on after it resolves (a server). Throws {@link UsageError} for flags that do not fit together. */
  run(values: FlagValues): Promise<void>;
}

/** Flags the command cannot run with; the command exits with status 2 and says why. */
export class UsageError extends Error {}

/** The flag every command takes. */
const HELP: Flag = { name: 'help', help: 'print this help and exit' };

/** Parses `argv` against `flags` (and `--help`); an unknown flag, a missing value or a stray argument is a {@link UsageError}. */
export function parseFlags(flags: readonly Flag[], argv: string[]): FlagValues {
  const options = Object.fromEntries([...flags, HELP].map((flag) => [flag.name, { type: flag.value ? ('string' as const) : ('boolean' as const) }]));
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) throw new UsageError((error as Error).message);
    throw error;
  }
}

/**
 * The {@link Command} of a flag table: `--help` prints the help and exits 0; an unknown flag, a
 * bad value or flags that do not fit together print what is wrong and exit 2.
 */
export function flagCommand(program: string, name: string, command: FlagCommand): Command {
  return {
    summary: command.summary,
    async main(argv) {
      try {
        const values = parseFlags(command.flags, argv);
        if (values.help) {
          process.stdout.write(helpText(program, name, command));
          return 0;
        }
        await command.run(values);
        return undefined;
      } catch (error) {
        if (!(error instanceof UsageError)) throw error;
        process.stderr.write(`${program} ${name}: ${error.message}\nRun '${program} ${name} --help' for the flags.\n`);
        return 2;
      }
    },
  };
}

/** The help of `<program> <name>`: the summary and one line per flag. */
export function helpText(program: string, name: string, command: FlagCommand): string {
  const rows = [...command.flags, HELP].map((flag) => [`--${flag.name}${flag.value ? ` ${flag.value}` : ''}`, flag.help]);
  const width = Math.max(...rows.map(([left]) => left.length));
  const about = command.description ? [command.summary, command.description] : [command.summary];
  return [`usage: ${program} ${name} [flags]`, '', ...about, '', ...rows.map(([left, help]) => `  ${left.padEnd(width)}  ${help}`), ''].join('\n');
}

/** A flag's value as an integer in `[min, max]`, or undefined when the flag is absent. */
export function integerFlag(values: FlagValues, name: string, min: number, max: number): number | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (typeof raw !== 'string' || !/^\d+$/.test(raw) || value < min || value > max) {
    throw new UsageError(`--${name} must be a whole number from ${min} to ${max}, not '${String(raw)}'`);
  }
  return value;
}

/** A flag's string value, or undefined when the flag is absent. */
export function stringFlag(values: FlagValues, name: string): string | undefined {
  const raw = values[name];
  return typeof raw === 'string' ? raw : undefined;
}
