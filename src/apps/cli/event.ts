import { Option, type Command } from "commander";
import { ClientError } from "../../client/index.js";
import { plural } from "./render/index.js";
import { MetricsEndpoint } from "../../core/util/index.js";
import {
  LIFECYCLE_TYPES,
  LifecycleTally,
  eventType,
  watchLifecycle,
  type LifecycleEvent,
  type LifecycleFilter,
  type LifecycleType,
} from "../../services/lifecycle/index.js";
import { addConfigOption, withClient } from "./common.js";
import { guarded } from "./errors.js";
import { intArg, secondsArg } from "./flags.js";

interface WatchFlags {
  config?: string;
  type?: LifecycleType;
  component?: string;
  identity?: string;
  json?: boolean;
  count?: number;
  /** ms */
  timeout?: number;
}

interface TallyFlags {
  config?: string;
  component?: string;
  port?: number;
  /** ms */
  interval?: number;
  /** ms */
  timeout?: number;
}

/** One line per event: time, type, identity, component and the type's extras. */
export function formatEvent(ev: LifecycleEvent): string {
  const type = eventType(ev);
  const time = new Date(ev.timestamp * 1000).toISOString().replace(/\.000Z$/, "Z");
  let extra = "";
  if (type === "startup" || type === "alive") extra = ` version ${ev.version ?? ""}`;
  if (type === "upgraded") extra = ` ${ev.version ?? ""} -> ${ev.new_version ?? ""}`;
  if (type === "governor") extra = ` ${ev.event_type ?? ""} ${ev.governor ?? ""} slot ${ev.sequence ?? 0}`;
  return `${time} [${type}] ${ev.identity} ${ev.component}${extra}`;
}

/** Resolves on ^C (signal), after timeoutMs, or when `done` is called. */
function runUntil(
  signal: AbortSignal,
  timeoutMs: number | undefined,
): { wait: Promise<void>; done: () => void } {
  let done = () => {};
  const wait = new Promise<void>((resolve) => {
    const t = timeoutMs !== undefined ? setTimeout(resolve, timeoutMs) : undefined;
    done = () => {
      clearTimeout(t);
      resolve();
    };
    signal.addEventListener("abort", done, { once: true });
  });
  return { wait, done };
}

async function watch(o: WatchFlags): Promise<void> {
  const filter: LifecycleFilter = {
    ...(o.type && { type: o.type }),
    ...(o.component && { component: o.component }),
    ...(o.identity && { identity: o.identity }),
  };
  const max = o.count;
  const timeoutMs = o.timeout;
  await withClient(o.config, async (client, signal) => {
    const nc = await client.connect();
    const run = runUntil(signal, timeoutMs);
    let seen = 0;
    const sub = watchLifecycle(
      nc,
      filter,
      (ev) => {
        process.stdout.write(`${o.json ? JSON.stringify(ev) : formatEvent(ev)}\n`);
        if (max !== undefined && ++seen >= max) run.done();
      },
      (err, subject) => {
        // A refused subscription ends the watch; a single bad message does not.
        if (/permission/i.test(err.message)) {
          process.stderr.write(`chorus event watch: ${err.message} (the token needs events_viewer)\n`);
          process.exitCode = 1;
          run.done();
        } else process.stderr.write(`chorus event watch: skipped ${subject}: ${err.message}\n`);
      },
    );
    await nc.flush();
    await run.wait;
    sub.unsubscribe();
  });
}

async function tally(o: TallyFlags): Promise<void> {
  const port = o.port;
  const intervalMs = o.interval ?? 60_000;
  const timeoutMs = o.timeout;
  const t = new LifecycleTally({ ...(o.component && { component: o.component }) });
  const http =
    port === undefined
      ? undefined
      : new MetricsEndpoint({
          port,
          registry: t.registry,
          listenError: (err) =>
            new ClientError("usage", `--port: cannot listen on 127.0.0.1:${port}: ${err.message}`),
        });
  if (http) {
    await http.start();
    process.stderr.write(`prometheus metrics on http://127.0.0.1:${http.port}/metrics\n`);
  }
  const print = () => {
    t.expire();
    const rows = t.counts();
    const lines = rows.map((r) => `${String(r.count).padStart(8)}  ${r.component}  ${r.version}`);
    process.stdout.write(
      `${new Date().toISOString()} ${plural(t.size, "node")}\n${lines.join("\n")}${lines.length ? "\n" : ""}`,
    );
  };
  try {
    await withClient(o.config, async (client, signal) => {
      const nc = await client.connect();
      const run = runUntil(signal, timeoutMs);
      const sub = watchLifecycle(
        nc,
        { ...(o.component && { component: o.component }) },
        (ev) => t.observe(ev),
        (err) => {
          if (/permission/i.test(err.message)) {
            process.stderr.write(`chorus event tally: ${err.message} (the token needs events_viewer)\n`);
            process.exitCode = 1;
            run.done();
          } else t.observeBad();
        },
      );
      const timer = setInterval(print, intervalMs);
      await run.wait;
      clearInterval(timer);
      sub.unsubscribe();
      print();
    });
  } finally {
    await http?.stop();
  }
}

/** `chorus event watch|tally`: lifecycle events, live. */
export function register(program: Command): void {
  const event = program.command("event").description("Watch and count Choria lifecycle events");
  const w = event
    .command("watch")
    .description("Print lifecycle events as they happen")
    .addOption(new Option("--type <type>", "only this event type").choices([...LIFECYCLE_TYPES]))
    .option("--component <component>", "only this component (e.g. server)")
    .option("--identity <identity>", "only this identity, or /regex/")
    .option("--json", "print each event's JSON")
    .option("--count <n>", "exit after n events", intArg("--count", { min: 1 }))
    .option("--timeout <seconds>", "exit after this long", secondsArg("--timeout"));
  addConfigOption(w);
  w.action(guarded("event watch", watch));
  const t = event
    .command("tally")
    .description("Count nodes by component and version from startup, alive and shutdown events")
    .option("--component <component>", "only count this component")
    .option(
      "--port <port>",
      "serve Prometheus metrics on 127.0.0.1:<port>/metrics",
      intArg("--port", { min: 0, max: 65535, expected: "a port" }),
    )
    .option("--interval <seconds>", "print the counts this often (default 60)", secondsArg("--interval"))
    .option("--timeout <seconds>", "exit after this long", secondsArg("--timeout"));
  addConfigOption(t);
  t.action(guarded("event tally", tally));
}
