/**
 * Data plugins on a real server (started from its config file, on a real nats-server):
 * the built-in, module and external kinds answer rpcutil#get_data and compound (-S)
 * filters; bad plugins are logged and left out; a class filter against a node whose
 * classes file cannot be read does not match and is counted.
 */
import { chmodSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  broadcastSubject,
  StatusCode,
  type Filter,
  type RpcReplyBody,
} from "../../../src/core/protocol/index.js";
import { Server } from "../../../src/server/index.js";
import { startNats, type TestNats } from "../../helpers/nats.js";
import {
  COLLECTIVE,
  auditedServerConfig,
  buildRequest,
  makeFixture,
  parseReply,
  sleep,
  type Fixture,
} from "../helpers.js";

const ID = "data.example.net";

let fx: Fixture;
let nats: TestNats;
let nc: NatsConnection;
let server: Server;
let conf: string;
let present: string;
let classesFile: string;
const logLines: Record<string, unknown>[] = [];

const dataDdl = (name: string, output: Record<string, string>, timeout = 2) => ({
  metadata: {
    name,
    description: `${name} test plugin`,
    author: "t",
    license: "MIT",
    version: "1",
    url: "",
    timeout,
  },
  query: { prompt: "Query", description: "Query", type: "string", optional: true },
  output: Object.fromEntries(
    Object.entries(output).map(([k, type]) => [k, { description: k, display_as: k, type }]),
  ),
});

beforeAll(async () => {
  fx = makeFixture();
  nats = await startNats();
  nc = await connect({ servers: nats.url });
  fx.serverSecurity(ID);
  const cfgDir = join(fx.dir, "datacfg");
  const modDir = join(cfgDir, "data-modules");
  const extDir = join(cfgDir, "data-external");
  mkdirSync(modDir, { recursive: true });
  mkdirSync(extDir, { recursive: true });

  present = join(fx.dir, "present.txt");
  writeFileSync(present, "some content\n");
  classesFile = join(fx.dir, "classes.txt"); // not written yet: the node's classes are unknown

  // a module plugin: doubles its query
  writeFileSync(
    join(modDir, "double.mjs"),
    `export const ddl = ${JSON.stringify(dataDdl("double", { value: "integer" }))};\n` +
      `export function run(q) { return { value: Number(q) * 2 }; }\n`,
  );
  // a module whose DDL is broken: logged, not loaded
  writeFileSync(
    join(modDir, "brokenmod.mjs"),
    `export const ddl = { metadata: { name: "brokenmod", description: "x" }, output: {} };\nexport function run() { return {}; }\n`,
  );
  // an external plugin: a small node script answering on stdout
  writeFileSync(
    join(extDir, "shout.json"),
    JSON.stringify(dataDdl("shout", { loud: "string", length: "integer" })),
  );
  writeFileSync(
    join(extDir, "shout"),
    `#!${process.execPath}\nlet s = "";\nprocess.stdin.on("data", (d) => (s += d));\n` +
      `process.stdin.on("end", () => { const q = JSON.parse(s).query; console.log(JSON.stringify({ loud: q.toUpperCase(), length: q.length })); });\n`,
  );
  chmodSync(join(extDir, "shout"), 0o755);
  // an external plugin with a bad DDL (timeout is not a number)
  writeFileSync(
    join(extDir, "badext.json"),
    JSON.stringify({
      ...dataDdl("badext", { x: "string" }),
      metadata: { name: "badext", description: "x", timeout: "1m" },
    }),
  );
  writeFileSync(join(extDir, "badext"), `#!/bin/sh\necho '{}'\n`);
  chmodSync(join(extDir, "badext"), 0o755);

  conf = auditedServerConfig(fx, cfgDir, ID, nats.url, "audit.log", [
    `classesfile = ${classesFile}`,
    "plugin.chorus.data.module_dir = data-modules",
    "plugin.chorus.data.external_dir = data-external",
  ]);
  const logger = pino({ level: "info" }, { write: (s: string) => void logLines.push(JSON.parse(s)) });
  server = await Server.fromConfigFile(conf, { logger });
  await server.start();
});

afterAll(async () => {
  await server?.stop();
  await nc?.close();
  await nats?.stop();
  fx?.cleanup();
});

/** Broadcasts a request with `filter`; the reply body, or undefined when the node stays silent. */
async function ask(
  filter: Partial<Filter>,
  action = "ping",
  data: Record<string, unknown> = {},
  waitMs = 1500,
): Promise<RpcReplyBody | undefined> {
  const full: Filter = { fact: [], cf_class: [], agent: [], identity: [], compound: [], ...filter };
  const req = buildRequest({ caller: fx.client, agent: "rpcutil", body: { action, data }, filter: full });
  const got = new Promise<Uint8Array | undefined>((resolve) => {
    const timer = setTimeout(() => resolve(undefined), waitMs);
    nc.subscribe(req.replyTo, {
      max: 1,
      callback: (_e, m) => {
        clearTimeout(timer);
        resolve(m.data);
      },
    });
  });
  await nc.flush();
  nc.publish(broadcastSubject(COLLECTIVE, "rpcutil"), req.bytes);
  const bytes = await got;
  return bytes === undefined ? undefined : parseReply(bytes).body;
}

const getData = async (source: string, query?: string): Promise<RpcReplyBody> => {
  const r = await ask({}, "get_data", { source, ...(query !== undefined && { query }) });
  expect(r, `no reply to get_data ${source}`).toBeDefined();
  return r as RpcReplyBody;
};

const compound = (expr: string): Partial<Filter> => ({ compound: [[{ expr }]] });

describe("data plugins on a running server", () => {
  it("loads built-in, module and external plugins once per server; bad DDLs are logged and left out", async () => {
    expect(server.data.names()).toEqual([
      "choria",
      "double",
      "fstat",
      "machine_state",
      "scout",
      "shout",
      "sysctl",
    ]);
    const inv = await ask({}, "inventory");
    expect(inv?.data).toMatchObject({
      data_plugins: ["choria", "double", "fstat", "machine_state", "scout", "shout", "sysctl"],
    });
    const refused = logLines.filter((l) => String(l["msg"]).startsWith("data plugin not loaded"));
    expect(refused.map((l) => String(l["file"]).split("/").pop()).sort()).toEqual([
      "badext.json",
      "brokenmod.mjs",
    ]);
    expect(refused.find((l) => String(l["file"]).endsWith("badext.json"))?.["msg"]).toMatch(
      /timeout must be a number/,
    );
    // and the server keeps answering
    expect((await ask({}))?.statuscode).toBe(StatusCode.OK);
  });

  it("rpcutil#get_data answers each kind", async () => {
    expect((await getData("fstat", present)).data).toMatchObject({ present: 1, size: 13, type: "file" });
    expect((await getData("choria")).data).toMatchObject({ configfile: conf, agents_count: 3 });
    expect((await getData("double", "21")).data).toEqual({ value: 42 });
    expect((await getData("shout", "hello")).data).toEqual({ loud: "HELLO", length: 5 });
    const unknown = await getData("brokenmod");
    expect(unknown.statuscode).toBe(StatusCode.Aborted);
    expect(unknown.statusmsg).toMatch(/Unknown data plugin brokenmod/);
  });

  it("a compound filter calls fstat on the node: matches when size > 0, not when the file is missing", async () => {
    const before = server.stats.filtered;
    expect(await ask(compound(`fstat("${present}").size > 0`))).toMatchObject({ statuscode: StatusCode.OK });
    expect(
      await ask(compound(`fstat("${join(fx.dir, "missing.txt")}").size > 0`), "ping", {}, 500),
    ).toBeUndefined();
    expect(server.stats.filtered - before).toBe(1);
  });

  it("compound filters call module and external plugins", async () => {
    expect(await ask(compound(`double("21").value == 42`))).toBeDefined();
    expect(await ask(compound(`double("21").value == 43`), "ping", {}, 500)).toBeUndefined();
    expect(await ask(compound(`shout("abc").loud == "ABC" && shout("abc").length == 3`))).toBeDefined();
    expect(await ask(compound(`shout("abc").loud == "abc"`), "ping", {}, 500)).toBeUndefined();
  });

  it("a data plugin that fails or does not exist makes the filter not match, and is logged", async () => {
    expect(await ask(compound(`nosuch("x").a == 1`), "ping", {}, 500)).toBeUndefined();
    // fstat refuses an empty file name
    expect(await ask(compound(`fstat("").size == 0`), "ping", {}, 500)).toBeUndefined();
    expect(
      logLines.some((l) =>
        /data plugin failed in a filter: unknown data plugin nosuch/.test(String(l["msg"])),
      ),
    ).toBe(true);
    expect(
      logLines.some((l) =>
        /data plugin failed in a filter: fstat requires a file name/.test(String(l["msg"])),
      ),
    ).toBe(true);
    expect((await ask({}))?.statuscode).toBe(StatusCode.OK);
  });

  it("a class filter does not match while the classes file is missing, and is counted; the file is read live", async () => {
    const before = server.stats;
    expect(await ask({ cf_class: ["web"] }, "ping", {}, 500)).toBeUndefined();
    const after = server.stats;
    expect(after.dropped.classes_unknown - before.dropped.classes_unknown).toBe(1);
    expect(after.filtered - before.filtered).toBe(1);
    // a request the identity filter sends elsewhere is not this node's concern: not counted
    expect(await ask({ cf_class: ["web"], identity: ["other.example"] }, "ping", {}, 300)).toBeUndefined();
    expect(server.stats.dropped.classes_unknown).toBe(after.dropped.classes_unknown);
    // requests without a class filter are not affected
    expect(await ask({ identity: [ID] })).toBeDefined();
    // the file appears (a Puppet run): the next request sees it, as go-choria reads it per request
    writeFileSync(classesFile, "base\nweb\n");
    expect(await ask({ cf_class: ["web"] })).toBeDefined();
    expect((await ask({}, "inventory"))?.data).toMatchObject({ classes: ["base", "web"] });
    rmSync(classesFile);
    await sleep(10);
    expect(await ask({ cf_class: ["web"] }, "ping", {}, 500)).toBeUndefined();
  });
});
