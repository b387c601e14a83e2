/**
 * What every wspipe command shares: exit statuses, the usage error line, option parsing with
 * --help, signal handling, and one-line text output.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** Exit statuses shared by the wspipe commands (as netcat and websocat use them). */
export enum ExitCode {
  Ok = 0,
  /** The connection (or the server) failed, or closed with an error. */
  Failure = 1,
  /** Bad options or arguments. */
  Usage = 2,
}

/** Prints one line, `wspipe CMD: message (see 'wspipe CMD --help')`, on stderr; returns ExitCode.Usage. */
export function usageError(command: string, message: string): ExitCode {
  process.stderr.write(`wspipe ${command}: ${message} (see 'wspipe ${command} --help')\n`);
  return ExitCode.Usage;
}

/**
 * Parses `config` (node:util's parseArgs) for `command`: a usage error (exit status 2) for options
 * it does not know, the help text and exit status 0 for --help; otherwise the parsed values.
 */
export function parseCommand<T extends ParseArgsConfig>(command: string, help: string, config: T): ReturnType<typeof parseArgs<T>> | ExitCode {
  let parsed: ReturnType<typeof parseArgs<T>>;
  try {
    parsed = parseArgs(config);
  } catch (err) {
    return usageError(command, (err as Error).message);
  }
  if ((parsed.values as { help?: boolean }).help === true) {
    process.stdout.write(help);
    return ExitCode.Ok;
  }
  return parsed;
}

/** A text message on one line: its line breaks (CRLF, LF or CR) are written as the two characters "\\n". */
export function oneLine(text: string): string {
  return text.replace(/\r\n|\n|\r/g, '\\n');
}

/** Calls `handler` on SIGINT and SIGTERM; returns a function that removes it. */
export function onSignals(handler: (signal: NodeJS.Signals) => void): () => void {
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    process.removeListener('SIGINT', handler);
    process.removeListener('SIGTERM', handler);
  };
}

const UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/**
 * A positive amount given on the command line: a whole number, with k, m or g (1024, 1024²,
 * 1024³) after it for sizes in bytes (`units`), or "Infinity" where `infinite` allows it.
 * Returns null for anything else (the caller's usage error names the flag).
 */
export function parseAmount(text: string, { units = false, infinite = false }: { units?: boolean; infinite?: boolean } = {}): number | null {
  if (infinite && text === 'Infinity') return Infinity;
  const m = (units ? /^(\d+)([kmg]?)$/i : /^(\d+)()$/).exec(text);
  if (m === null) return null;
  const value = Number(m[1]) * UNITS[m[2]!.toLowerCase()]!;
  return value > 0 && Number.isSafeInteger(value) ? value : null;
}
