#!/usr/bin/env node
/** The `express-oci-registry` command: the table of its subcommands and the dispatch to one of them. */
import { flagCommand, type Command } from './command';
import { gcCommand } from './gc';
import { serveCommand } from './serve-command';

const PROGRAM = 'express-oci-registry';

/** Every subcommand, by name. */
const COMMANDS: Readonly<Record<string, Command>> = {
  serve: flagCommand(PROGRAM, 'serve', serveCommand),
  gc: { summary: 'run one garbage collection over a folder or an S3 bucket, beside running servers', main: (argv) => gcCommand(argv) },
};

function overview(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((name) => name.length));
  const rows = Object.entries(COMMANDS).map(([name, command]) => `  ${name.padEnd(width)}  ${command.summary}`);
  return [`usage: ${PROGRAM} <command> [flags]`, '', 'commands:', ...rows, '', `${PROGRAM} <command> --help lists the flags of one.`, ''].join('\n');
}

/** Runs `argv` (the arguments after the program); resolves to the exit status, or undefined while a command keeps running (a server). */
export async function main(argv: string[]): Promise<number | undefined> {
  const [name, ...rest] = argv;
  if (name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(overview());
    return 0;
  }
  const command = name === undefined ? undefined : Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!command) {
    process.stderr.write(`${PROGRAM}: ${name === undefined ? 'no command given' : `unknown command '${name}'`}\n\n${overview()}`);
    return 2;
  }
  try {
    return await command.main(rest);
  } catch (error) {
    process.stderr.write(`${PROGRAM} ${name}: ${(error as Error).message}\n`);
    return 1;
  }
}

if (require.main === module) {
  void main(process.argv.slice(2)).then((status) => {
    if (status !== undefined) process.exitCode = status;
  });
}
