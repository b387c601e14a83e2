#!/usr/bin/env node
/**
 * wspipe: the command line. `wspipe <command> [options]`, one module per command in
 * bin/commands/, each exporting `help: string` and `run(args): Promise<number>` (the exit
 * status). Modules are loaded by name only when their command runs, so a command that is not
 * built does not stop the others.
 *
 * Exit statuses: 0 done, 1 failure (connection, server), 2 usage error.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** What every command module exports. */
export interface Command {
  /** The full help text (`wspipe <command> --help`). */
  help: string;
  /** Runs the command with the arguments after its name; resolves with the exit status. */
  run(args: string[]): Promise<number>;
}

/** The commands: module path (relative to this file) and a one-line summary for the usage. */
const COMMANDS: Readonly<Record<string, { module: string; summary: string }>> = {
  connect: { module: './commands/connect', summary: 'connect to a server: stdin lines become messages, messages go to stdout' },
  listen: { module: './commands/listen', summary: 'serve: echo, stdio, exec a command per connection, or broadcast' },
  proxy: { module: './commands/proxy', summary: 'relay connections to another server, showing or recording the traffic' },
  replay: { module: './commands/replay', summary: 'play a recorded session back (a frame log or a HAR)' },
  bridge: { module: './commands/bridge', summary: 'join a WebSocket and a TCP connection, both ways' },
};

const USAGE = `usage: wspipe <command> [options]

commands:
${Object.entries(COMMANDS)
  .map(([name, { summary }]) => `  ${name.padEnd(9)}${summary}`)
  .join('\n')}

  wspipe <command> --help   help on one command
  wspipe --help             this help
  wspipe --version          the version
`;

/** The version in the package.json above this file (source tree or dist/). */
function version(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    if (fs.existsSync(file)) return (JSON.parse(fs.readFileSync(file, 'utf8')) as { version?: string }).version ?? 'unknown';
    if (path.dirname(dir) === dir) return 'unknown';
  }
}

/** Loads a command module, or returns null when it is not there (not yet built). */
async function load(module: string): Promise<Command | null> {
  try {
    return (await import(module)) as Command;
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND' && (err as Error).message.includes(module);
    if (missing) return null;
    throw err;
  }
}

/** Runs wspipe with `argv` (the arguments after the program name); resolves with the exit status. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (name === '--help' || name === '-h') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (name === '--version' || name === '-V') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  const helpFor = name === 'help' ? args[0] : undefined;
  const entry = Object.hasOwn(COMMANDS, helpFor ?? name ?? '') ? COMMANDS[helpFor ?? name!] : undefined;
  if (entry === undefined) {
    if (name === 'help' && helpFor === undefined) {
      process.stdout.write(USAGE);
      return 0;
    }
    const what = name === undefined ? 'a command is required' : `unknown command '${helpFor ?? name}'`;
    process.stderr.write(`wspipe: ${what} (one of ${Object.keys(COMMANDS).join(', ')}; see 'wspipe --help')\n`);
    return 2;
  }
  const command = await load(entry.module);
  if (command === null) {
    process.stderr.write(`wspipe: the ${helpFor ?? name} command is not available in this build\n`);
    return 2;
  }
  if (helpFor !== undefined) {
    process.stdout.write(command.help);
    return 0;
  }
  return command.run(args);
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (status) => {
      // Exit once stdout is flushed: stdin and servers would otherwise keep the process alive.
      process.stdout.write('', () => process.exit(status));
    },
    (err: Error) => {
      process.stderr.write(`wspipe: ${err.stack ?? err.message}\n`);
      process.exit(1);
    },
  );
}
