/**
 * "1 reply", "2 replies": a count and its noun, the one way the CLI writes them.
 * `many` defaults to `one` + "s"; irregular plurals pass it.
 */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** The line discover, ping and req print (to stderr) when they exit 1 because nothing matched. */
export function nothingMatched(command: string): string {
  return `chorus ${command}: no nodes matched the filter\n`;
}

/**
 * The exit code after ^C cut a command short: 128 + SIGINT, what a shell reports for a
 * process killed by ^C, so scripts see the run as incomplete whatever was printed.
 */
export const INTERRUPTED_EXIT = 130;

/** The line printed to stderr after ^C (stdout stays parseable), e.g. "showing the 3 nodes found so far". */
export function interruptedNote(command: string, detail: string): string {
  return `chorus ${command}: interrupted (^C): ${detail}\n`;
}
