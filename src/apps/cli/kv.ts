import { readFileSync } from "node:fs";
import type { Command } from "commander";
import type { NatsConnection } from "../../core/connector/index.js";
import {
  bucketStatus,
  createBucket,
  entryView,
  kvOp,
  listBuckets,
  openBucket,
  StreamsError,
  type BucketSummary,
} from "../../services/streams/index.js";
import { addConfigOption, withClient } from "./common.js";
import { guarded } from "./errors.js";
import { intArg, secondsArg } from "./flags.js";
import { plural } from "./render/index.js";

interface KvFlags {
  config?: string;
  json?: boolean;
}

const out = (s: string) => process.stdout.write(s.endsWith("\n") ? s : `${s}\n`);

/** Connects with the client config and hands the raw NATS connection to `fn`. */
async function withNats(o: KvFlags, fn: (nc: NatsConnection, signal: AbortSignal) => Promise<void>) {
  await withClient(o.config, async (client, signal) => fn(await client.connect(), signal));
}

function renderStatus(s: BucketSummary): string {
  return [
    `KV bucket ${s.bucket}`,
    `  values:         ${s.values}`,
    `  bytes:          ${s.bytes}`,
    `  history:        ${s.history}`,
    `  ttl:            ${s.ttlMs > 0 ? `${s.ttlMs / 1000}s` : "none"}`,
    `  replicas:       ${s.replicas}`,
    `  max value size: ${s.maxValueSize}`,
    `  max bytes:      ${s.maxBytes}`,
    `  created:        ${s.created}`,
  ].join("\n");
}

function sub(kv: Command, name: string, desc: string): Command {
  const c = kv.command(name).description(desc);
  addConfigOption(c);
  return c.option("--json", "JSON output");
}

/** `chorus kv ...`: Choria Streams key-value buckets. */
export function register(program: Command): void {
  const kv = program.command("kv").description("Key-value buckets on Choria Streams");

  sub(kv, "add", "Create a bucket (Choria defaults: history 5, replicas 1, max value 10240)")
    .argument("<bucket>")
    .option("--history <n>", "values kept per key", intArg("--history"), 5)
    .option("--replicas <n>", "data replicas", intArg("--replicas"), 1)
    .option("--max-value-size <bytes>", "largest value", intArg("--max-value-size"), 10240)
    .option("--max-bucket-size <bytes>", "bucket size limit (-1 unlimited)", intArg("--max-bucket-size"), -1)
    .option("--ttl <seconds>", "expire values after this long", secondsArg("--ttl"))
    .option("--description <text>")
    .action(
      guarded(
        "kv add",
        async (
          bucket: string,
          o: KvFlags & {
            history: number;
            replicas: number;
            maxValueSize: number;
            maxBucketSize: number;
            /** ms */
            ttl?: number;
            description?: string;
          },
        ) => {
          const ttlMs = o.ttl;
          await withNats(o, async (nc) => {
            await createBucket(nc, bucket, {
              history: o.history,
              replicas: o.replicas,
              maxValueSize: o.maxValueSize,
              maxBytes: o.maxBucketSize,
              ...(ttlMs !== undefined && { ttlMs }),
              ...(o.description && { description: o.description }),
            });
            const s = await bucketStatus(nc, bucket);
            out(o.json ? JSON.stringify(s, null, 2) : renderStatus(s));
          });
        },
      ),
    );

  sub(kv, "put", "Store a value (VALUE, or - for stdin, or @FILE)")
    .argument("<bucket>")
    .argument("<key>")
    .argument("<value>")
    .action(
      guarded("kv put", async (bucket: string, key: string, value: string, o: KvFlags) => {
        const data =
          value === "-" ? readFileSync(0) : value.startsWith("@") ? readFileSync(value.slice(1)) : value;
        await withNats(o, async (nc) => {
          const b = await openBucket(nc, bucket);
          const rev = await kvOp(`put ${bucket} ${key}`, () => b.put(key, data));
          out(o.json ? JSON.stringify({ key, revision: rev }) : `${key} = revision ${rev}`);
        });
      }),
    );

  sub(kv, "get", "Show a value")
    .argument("<bucket>")
    .argument("<key>")
    .option("--raw", "print only the value")
    .action(
      guarded("kv get", async (bucket: string, key: string, o: KvFlags & { raw?: boolean }) => {
        await withNats(o, async (nc) => {
          const b = await openBucket(nc, bucket);
          const e = await kvOp(`get ${bucket} ${key}`, () => b.get(key));
          if (!e || e.operation !== "PUT") {
            throw new StreamsError("not_found", `key ${key} is not in bucket ${bucket}`);
          }
          if (o.raw) process.stdout.write(Buffer.from(e.value));
          else if (o.json) out(JSON.stringify(entryView(e), null, 2));
          else out(`${key} revision ${e.revision} created ${e.created.toISOString()}\n\n${e.string()}`);
        });
      }),
    );

  sub(kv, "del", "Delete a key (history is kept)")
    .alias("rm")
    .argument("<bucket>")
    .argument("<key>")
    .action(
      guarded("kv del", async (bucket: string, key: string, o: KvFlags) => {
        await withNats(o, async (nc) => {
          const b = await openBucket(nc, bucket);
          await kvOp(`del ${bucket} ${key}`, () => b.delete(key));
          out(o.json ? JSON.stringify({ key, deleted: true }) : `deleted ${key}`);
        });
      }),
    );

  sub(kv, "purge", "Delete a key and all its history")
    .argument("<bucket>")
    .argument("<key>")
    .action(
      guarded("kv purge", async (bucket: string, key: string, o: KvFlags) => {
        await withNats(o, async (nc) => {
          const b = await openBucket(nc, bucket);
          await kvOp(`purge ${bucket} ${key}`, () => b.purge(key));
          out(o.json ? JSON.stringify({ key, purged: true }) : `purged ${key}`);
        });
      }),
    );

  sub(kv, "history", "Show the stored values of a key")
    .argument("<bucket>")
    .argument("<key>")
    .action(
      guarded("kv history", async (bucket: string, key: string, o: KvFlags) => {
        await withNats(o, async (nc) => {
          const b = await openBucket(nc, bucket);
          const it = await kvOp(`history ${bucket} ${key}`, () => b.history({ key }));
          const rows = [];
          for await (const e of it) rows.push(entryView(e));
          if (o.json) out(JSON.stringify(rows, null, 2));
          else for (const r of rows) out(`${r.revision}\t${r.operation}\t${r.created}\t${r.value}`);
        });
      }),
    );

  sub(kv, "keys", "List the keys in a bucket")
    .argument("<bucket>")
    .argument("[filter]", "key filter with * and > wildcards")
    .action(
      guarded("kv keys", async (bucket: string, filter: string | undefined, o: KvFlags) => {
        await withNats(o, async (nc) => {
          const b = await openBucket(nc, bucket);
          const it = await kvOp(`keys ${bucket}`, () => b.keys(filter));
          const keys: string[] = [];
          for await (const k of it) keys.push(k);
          keys.sort();
          out(o.json ? JSON.stringify(keys) : keys.join("\n"));
        });
      }),
    );

  sub(kv, "watch", "Show changes as they happen (^C to stop)")
    .argument("<bucket>")
    .argument("[key]", "key or wildcard (default: all)")
    .option("--updates-only", "skip the current values")
    .action(
      guarded(
        "kv watch",
        async (bucket: string, key: string | undefined, o: KvFlags & { updatesOnly?: boolean }) => {
          await withNats(o, async (nc, signal) => {
            const b = await openBucket(nc, bucket);
            const it = await kvOp(`watch ${bucket}`, () =>
              b.watch({ ...(key && { key }), ...(o.updatesOnly && { include: "updates" as const }) }),
            );
            signal.addEventListener("abort", () => it.stop());
            for await (const e of it) {
              const v = entryView(e);
              out(
                o.json
                  ? JSON.stringify(v)
                  : `[${v.created}] ${v.operation} ${bucket} > ${v.key} (rev ${v.revision})${
                      v.operation === "PUT" ? `: ${v.value}` : ""
                    }`,
              );
            }
          });
        },
      ),
    );

  sub(kv, "status", "Show a bucket's settings and size")
    .argument("<bucket>")
    .action(
      guarded("kv status", async (bucket: string, o: KvFlags) => {
        await withNats(o, async (nc) => {
          const s = await bucketStatus(nc, bucket);
          out(o.json ? JSON.stringify(s, null, 2) : renderStatus(s));
        });
      }),
    );

  sub(kv, "list", "List buckets")
    .alias("ls")
    .action(
      guarded("kv list", async (o: KvFlags) => {
        await withNats(o, async (nc) => {
          const all = await listBuckets(nc);
          if (o.json) out(JSON.stringify(all, null, 2));
          else if (all.length === 0) out("no KV buckets");
          else
            for (const s of all)
              out(
                `${s.bucket}\t${plural(s.values, "value")}\t${plural(s.bytes, "byte")}\thistory ${s.history}`,
              );
        });
      }),
    );
}
