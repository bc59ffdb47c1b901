import type { Command } from "commander";
import { Replicator, loadReplicatorConfig, type StreamConfig } from "../../services/replicator/index.js";
import { runDaemon } from "./daemon.js";
import { guarded } from "./errors.js";

function describe(s: StreamConfig): string {
  const mode = s.target_initiated
    ? "target-initiated, ordered"
    : s.parallel
      ? `parallel by ${s.parallel.header !== undefined ? `header ${s.parallel.header}` : `subject token ${s.parallel.subjectToken}`}, ${s.parallel.workers} keys at once`
      : "ordered";
  const lines = [
    `${s.name}: ${s.stream} on ${s.source.servers.join(",")} -> ${s.target_stream} on ${s.target.servers.join(",")}`,
    `  mode: ${mode}; start: ${s.start.kind}${s.maxAgeMs !== undefined ? `; max_age ${s.maxAgeMs / 1000}s` : ""}`,
  ];
  if (s.sampling) {
    const by =
      s.sampling.inspect_field ??
      s.sampling.inspect_header ??
      `subject token ${s.sampling.inspect_subject_token}`;
    lines.push(
      `  sampling by ${by}: one copy per ${s.sampling.inspectDurationMs / 1000}s, warn after ${s.sampling.warnDurationMs / 1000}s` +
        (s.advisory
          ? `; advisories to ${s.advisory.subject}${s.advisory.reliable ? " (reliable)" : ""}`
          : ""),
    );
  }
  if (s.leader_election_name !== undefined) lines.push(`  leader election as ${s.leader_election_name}`);
  return lines.join("\n");
}

/** `chorus replicator run|validate`. */
export function register(program: Command): void {
  const replicator = program
    .command("replicator")
    .description("Stream replicator: copies JetStream streams between brokers (cell to centre)");
  replicator
    .command("run")
    .description("Copy the configured streams until stopped")
    .requiredOption("--config <file>", "replicator configuration file (YAML or JSON, Choria's keys)")
    .action(async (opts: { config: string }) => {
      await runDaemon("replicator", () => Replicator.fromFile(opts.config));
    });
  replicator
    .command("validate")
    .description("Check a replicator configuration and show what it would copy")
    .requiredOption("--config <file>", "replicator configuration file")
    .action(
      guarded("replicator validate", (opts: { config: string }) => {
        const c = loadReplicatorConfig(opts.config);
        process.stdout.write(`replicator ${c.name}: ${c.streams.length} stream(s)\n`);
        for (const s of c.streams) process.stdout.write(`${describe(s)}\n`);
      }),
    );
}
