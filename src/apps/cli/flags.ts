import { InvalidArgumentError, Option } from "commander";

/**
 * A flag or argument value a parser refused. Its message is the whole complaint
 * (`--nodes: "x" is not a positive integer`): the program prints it as
 * `chorus <command>: <message>`, exit 1, like every other usage error (launch.ts).
 */
export class FlagError extends InvalidArgumentError {
  /** The most recent one: commander hands only its text on to Command.error(). */
  static last: FlagError | undefined;

  constructor(message: string) {
    super(message);
    FlagError.last = this;
  }
}

export interface IntRule {
  /** smallest value allowed (default: none) */
  min?: number;
  /** largest value allowed (default: none) */
  max?: number;
  /** what the value must be, for the error (default from min: "a positive whole number" for 1, "a whole number" for 0, else "an integer") */
  expected?: string;
}

/** Commander's argParser for a whole-number flag or argument named `name` ("": the error names only the value). */
export function intArg(name: string, rule: IntRule = {}): (value: string) => number {
  const expected =
    rule.expected ??
    (rule.min === 1 ? "a positive whole number" : rule.min === 0 ? "a whole number" : "an integer");
  return (value) => {
    const n = value.trim() === "" ? NaN : Number(value);
    if (!Number.isInteger(n) || n < (rule.min ?? -Infinity) || n > (rule.max ?? Infinity))
      throw new FlagError(`${name ? `${name}: ` : ""}"${value}" is not ${expected}`);
    return n;
  };
}

/**
 * Commander's argParser for a duration in seconds (decimals allowed), as milliseconds;
 * positive unless `zero` allows 0 too.
 */
export function secondsArg(name: string, o: { zero?: boolean } = {}): (value: string) => number {
  return (value) => {
    const n = value.trim() === "" ? NaN : Number(value);
    if (!Number.isFinite(n) || n < 0 || (n === 0 && !o.zero))
      throw new FlagError(`${name}: "${value}" is not a ${o.zero ? "" : "positive "}number of seconds`);
    return Math.round(n * 1000);
  };
}

/**
 * A `--flag <seconds>` option whose value is milliseconds (secondsArg), defaulting to
 * `dflt` seconds; help shows the default in seconds, as the user writes it.
 */
export function secondsOption(flags: string, description: string, dflt: number): Option {
  const o = new Option(flags, description);
  return o.argParser(secondsArg(o.long ?? flags)).default(Math.round(dflt * 1000), String(dflt));
}
