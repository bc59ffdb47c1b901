import { existsSync, readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { Option, type Command } from "commander";
import {
  Client,
  ClientError,
  DISCOVERY_METHODS,
  type ClientLogger,
  type RequestOptions,
} from "../../client/index.js";
import { buildFilter } from "../../core/filter/index.js";
import type { Filter } from "../../core/protocol/index.js";
import { ChorusError } from "../../core/protocol/index.js";
import { lineLogger } from "../../core/util/index.js";
import { secondsArg } from "./flags.js";

/** Filter flags shared by req, ping and discover (Choria's -I -F -C -A -W). */
export interface FilterFlags {
  identity?: string[];
  fact?: string[];
  class?: string[];
  agent?: string[];
  with?: string[];
  select?: string[];
}

export interface DiscoveryFlags extends FilterFlags {
  config?: string;
  dm?: string;
  do?: string[];
  nodes?: string;
  /** ms */
  discoveryTimeout?: number;
  discoveryWindow?: boolean;
}

/** A repeatable flag's values. No default: commander would print "(default: [])" on every help line. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

export function addConfigOption(cmd: Command): Command {
  return cmd.option("--config <file>", "client config file (default: $CHORUS_CONFIG, then ./chorus.conf)");
}

export function addFilterOptions(cmd: Command): Command {
  return cmd
    .option("-I, --identity <identity>", "match an identity or /regex/ (repeatable, ORed)", collect)
    .option(
      "-F, --fact <fact=value>",
      "match a fact: fact=value, fact=~/re/, fact>10 ... (repeatable)",
      collect,
    )
    .option("-C, --class <class>", "match a class or /regex/ (repeatable)", collect)
    .option("-A, --agent <agent>", "match nodes that have an agent (repeatable)", collect)
    .option("-W, --with <filter>", "combined fact and class filter, space separated (repeatable)", collect)
    .option(
      "-S, --select <expr>",
      "compound filter expression, e.g. \"with('role=web') && facts.cores >= 4\" (repeatable, ANDed)",
      collect,
    );
}

export function addDiscoveryOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option("--dm <method>", "discovery method").choices([...DISCOVERY_METHODS]))
    .option("--do <key=value>", "discovery method option, e.g. file=nodes.json (repeatable)", collect)
    .option("--nodes <file>", "discover from FILE (text, JSON, YAML or earlier results; - for stdin)")
    .option(
      "--discovery-timeout <seconds>",
      "how long broadcast discovery waits",
      secondsArg("--discovery-timeout"),
    )
    .option("--discovery-window", "end discovery 300 ms after the last reply");
}

/** A filter from CLI flags; bad filters surface as FilterError naming the input. */
export function filterFromFlags(o: FilterFlags): Filter {
  return buildFilter({
    identity: o.identity ?? [],
    facts: o.fact ?? [],
    classes: o.class ?? [],
    agents: o.agent ?? [],
    combined: o.with ?? [],
    compound: o.select ?? [],
  });
}

/** Which nodes a request goes to, and how long it waits, from flags (req, facts, machine, scout). */
export function targetingFromFlags(
  o: DiscoveryFlags & { timeout?: number },
): Pick<
  RequestOptions,
  "filter" | "discoveryMethod" | "discoveryOptions" | "timeoutMs" | "discoveryTimeoutMs" | "discoveryWindowed"
> {
  const { method, options } = discoveryFromFlags(o);
  return {
    filter: filterFromFlags(o),
    ...(method !== undefined && { discoveryMethod: method }),
    discoveryOptions: options,
    ...(o.timeout !== undefined && { timeoutMs: o.timeout }),
    ...(o.discoveryTimeout !== undefined && { discoveryTimeoutMs: o.discoveryTimeout }),
    discoveryWindowed: o.discoveryWindow === true,
  };
}

/** The discovery method and its `--do` options from flags; `--nodes FILE` is flatfile with file=FILE. */
export function discoveryFromFlags(o: DiscoveryFlags): { method?: string; options: Record<string, string> } {
  const options: Record<string, string> = {};
  for (const kv of o.do ?? []) {
    const eq = kv.indexOf("=");
    if (eq <= 0) throw new ClientError("usage", `--do "${kv}" is not of the form key=value`);
    options[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  if (o.nodes !== undefined) {
    if (o.dm !== undefined && o.dm !== "flatfile" && o.dm !== "file" && o.dm !== "results") {
      throw new ClientError("usage", `--nodes reads a file: it cannot be combined with --dm ${o.dm}`);
    }
    options.file = o.nodes;
    return { method: o.dm ?? "flatfile", options };
  }
  return o.dm === undefined ? { options } : { method: o.dm, options };
}

/**
 * Which client config to use: --config, then $CHORUS_CONFIG, then ./chorus.conf.
 * Missing files are reported with how to make one.
 */
export function resolveConfigPath(
  flag: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
  cwd: string = process.cwd(),
): string {
  if (flag) {
    if (!existsSync(flag)) throw new ClientError("usage", `--config: ${flag} does not exist`);
    return flag;
  }
  const fromEnv = env.CHORUS_CONFIG;
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new ClientError("usage", `CHORUS_CONFIG: ${fromEnv} does not exist`);
    return fromEnv;
  }
  const local = resolve(cwd, "chorus.conf");
  if (existsSync(local)) return local;
  throw new ClientError(
    "usage",
    "no client config: pass --config FILE, set CHORUS_CONFIG, or create ./chorus.conf " +
      "(`chorus setup dev` writes a working client.conf)",
  );
}

/** `key=value` action inputs; the value may itself contain '='. */
export function parseKeyValues(args: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const arg of args) {
    const eq = arg.indexOf("=");
    if (eq <= 0) throw new ClientError("usage", `argument "${arg}" is not an input of the form key=value`);
    out[arg.slice(0, eq)] = arg.slice(eq + 1);
  }
  return out;
}

/** Identities from a file, one per line; blank lines and # comments skipped. */
export function readNodesFile(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ClientError("usage", `--nodes: cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  return text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
}

/** Connector and client warnings go to stderr so stdout stays parseable. */
export const stderrLogger: ClientLogger = lineLogger((level, m) => {
  if (level === "warn" || level === "error") process.stderr.write(`chorus: ${m}\n`);
});

/** The file `chorus setup dev` writes beside client.conf for a client with streams_admin. */
export const ADMIN_CLIENT_CONFIG = "admin-client.conf";

/**
 * What to do when the broker refused a Streams operation: the ordinary client has
 * streams_user, so creating or removing buckets and governors is refused.
 */
export function streamsAdminHint(configPath: string): string {
  const admin = resolve(dirname(configPath), ADMIN_CLIENT_CONFIG);
  if (existsSync(admin) && admin !== resolve(configPath)) {
    return `this client may not administer Streams: use the admin client config ${admin} (--config) or a JWT with streams_admin`;
  }
  return `this client may not administer Streams: use a client config whose JWT has streams_admin (\`chorus setup dev\` writes ${ADMIN_CLIENT_CONFIG})`;
}

/**
 * Opens a client from the resolved config, runs `fn`, and always closes it. The
 * first ^C aborts `signal` so the command can print what it has; a second one
 * gets Node's default (exit). A broker permissions refusal (code `denied`, from the
 * Streams services) gains a line saying which credential would be allowed.
 */
export async function withClient<T>(
  configFlag: string | undefined,
  fn: (c: Client, signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const configPath = resolveConfigPath(configFlag);
  const client = await Client.fromConfigFile(configPath, { logger: stderrLogger });
  const ac = new AbortController();
  const onInt = () => ac.abort();
  process.once("SIGINT", onInt);
  try {
    return await fn(client, ac.signal);
  } catch (err) {
    if (err instanceof ChorusError && err.code === "denied") {
      throw new ChorusError("denied", `${err.message}\n  ${streamsAdminHint(configPath)}`, { cause: err });
    }
    throw err;
  } finally {
    process.removeListener("SIGINT", onInt);
    await client.close();
  }
}
