// `npm run bench`: every scenario measures its raw-NATS baseline first, then Chorus,
// in the same run; prints median/min/max and the ratio; writes bench/results/latest.json
// and rewrites docs/performance.md. Not part of the tests.
import { execFileSync } from "node:child_process";
import { generateKeyPairSync, sign, verify } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, readFileSync, existsSync } from "node:fs";
import { createServer } from "node:net";
import { availableParallelism, cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";
import { protocol } from "../dist/index.js";
import { ed25519 } from "../dist/core/security/index.js";
import { loadavg, rawConnect, rawCredentials, startSecuredBroker } from "./lib.js";
import * as S from "./scenarios.js";
import { renderDoc } from "./report.js";

const ALL = ["ping", "replies", "inventory", "direct", "memory", "startup"];
const { values: opt } = parseArgs({
  options: {
    runs: { type: "string" },
    scenario: { type: "string", default: ALL.join(",") },
    quick: { type: "boolean", default: false },
    "no-doc": { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});
if (opt.help) {
  console.log(`usage: npm run bench -- [--runs N] [--scenario ${ALL.join(",")}] [--quick] [--no-doc]`);
  process.exit(0);
}
const quick = opt.quick;
const runs = Number(opt.runs ?? (quick ? 2 : 5));
const scen = new Set(opt.scenario.split(",").map((s) => s.trim()));
for (const s of scen) if (!ALL.includes(s)) throw new Error(`unknown scenario ${s} (${ALL.join(", ")})`);
const pingSizes = quick ? [1_000, 10_000] : [1_000, 10_000, 50_000];
const fleetN = quick ? 2_000 : 10_000;
const replyM = quick ? 2_000 : 10_000;
const memSizes = quick ? [10_000] : [10_000, 50_000];

const HERE = fileURLToPath(new URL(".", import.meta.url));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function natsServerVersion() {
  try {
    return execFileSync(process.env.NATS_SERVER || "nats-server", ["--version"])
      .toString()
      .trim();
  } catch {
    return "unknown";
  }
}

const fmt = (x, unit) => {
  if (!Number.isFinite(x)) return "n/a";
  const d = unit === "KiB/node" || (unit === "MiB" && x < 100) ? 1 : 0;
  return x.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d });
};

function print(r) {
  const c = r.chorus;
  const b = r.baseline;
  const ratio = Number.isFinite(r.ratio) ? ` ratio ${r.ratio.toFixed(2)}x` : "";
  console.log(
    `${r.name}: chorus median ${fmt(c.median, r.unit)} ${r.unit} (min ${fmt(c.min, r.unit)}, max ${fmt(c.max, r.unit)}, n=${c.n}); ` +
      `baseline median ${fmt(b.median, r.unit)} (min ${fmt(b.min, r.unit)}, max ${fmt(b.max, r.unit)});${ratio}${r.note ? ` — ${r.note}` : ""}`,
  );
}

/** ed25519 sign and verify per second on one thread, right now: the CPU ceiling under the current load. */
function cryptoCalibration() {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const data = Buffer.alloc(600, 7);
  const sig = sign(null, data, privateKey);
  const rate = (fn) => {
    let n = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < 400) {
      for (let i = 0; i < 50; i++) fn();
      n += 50;
    }
    return Math.round((n * 1000) / (performance.now() - t0));
  };
  const ours = ed25519.generate();
  const oursSig = ed25519.sign(ours.key, data);
  const oursPub = ed25519.verifyingKey(ours.publicRaw);
  return {
    signPerS: rate(() => sign(null, data, privateKey)),
    verifyPerS: rate(() => verify(null, data, publicKey, sig)),
    // what Chorus itself signs and verifies with (libsodium unless unavailable)
    backend: ed25519.name,
    backendSignPerS: rate(() => ed25519.sign(ours.key, data)),
    backendVerifyPerS: rate(() => ed25519.verify(oursPub, data, oursSig)),
  };
}

async function main() {
  const started = new Date();
  const env = {
    date: started.toISOString(),
    cores: availableParallelism(),
    cpu: cpus()[0]?.model ?? "unknown",
    node: process.version,
    natsServer: natsServerVersion(),
    natsJs: JSON.parse(
      readFileSync(new URL("../node_modules/@nats-io/transport-node/package.json", import.meta.url)),
    ).version,
    loadBefore: loadavg(),
    cryptoBefore: cryptoCalibration(),
    command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`,
    runs,
  };
  console.log(`env: ${JSON.stringify(env)}`);
  const dir = mkdtempSync(join(tmpdir(), "chorus-bench-"));
  const { setup, broker } = await startSecuredBroker(dir, await freePort());
  const clientCred = rawCredentials(setup.clientConfig, "client");
  const emuCred = rawCredentials(setup.emulatorConfig, "server");
  const client = await S.Client.fromConfigFile(setup.clientConfig, { logger: S.quiet });
  const callerId = client.callerId;
  const replyPrefix = protocol.replyPrefix(client.collective, callerId);
  const ctx = {
    setup,
    runs,
    client,
    clientCred,
    emuCred,
    replyPrefix,
    seq: 0,
    memCache: {},
    collective: client.collective,
    brokerPid: broker.pid,
    cores: availableParallelism(),
    serverConfig: Object.values(setup.serverConfigs)[0],
    serverIdentity: Object.keys(setup.serverConfigs)[0],
    rawClient: await rawConnect(clientCred, "raw-client", { inboxPrefix: replyPrefix }),
  };
  const results = [];
  const record = (r) => {
    for (const x of [r].flat()) {
      print(x);
      results.push(x);
    }
  };
  try {
    // A failing scenario is recorded and the others still run, so one hang does not cost the table.
    const attempt = async (name, fn) => {
      try {
        record(await fn());
      } catch (err) {
        console.error(`${name} failed: ${err?.stack ?? err}`);
        results.push({ name, failed: String(err?.message ?? err) });
      }
    };
    if (scen.has("ping")) for (const N of pingSizes) await attempt(`ping ${N}`, () => S.ping(ctx, N));
    if (scen.has("replies")) await attempt("replies", () => S.replies(ctx, replyM));
    const cd = new Set(["inventory", "direct"].filter((s) => scen.has(s)));
    if (cd.size) await attempt([...cd].join(" + "), () => S.inventoryAndDirect(ctx, fleetN, cd));
    if (scen.has("memory")) await attempt("memory", () => S.memory(ctx, memSizes));
    if (scen.has("startup")) await attempt("startup", () => S.startup(ctx));
  } finally {
    await ctx.rawClient.close().catch(() => undefined);
    await client.close().catch(() => undefined);
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  env.loadAfter = loadavg();
  env.cryptoAfter = cryptoCalibration();
  env.seconds = Math.round((Date.now() - started.getTime()) / 1000);
  mkdirSync(join(HERE, "results"), { recursive: true });
  const out = { env, results };
  writeFileSync(join(HERE, "results", "latest.json"), `${JSON.stringify(out, null, 2)}\n`);
  if (!opt["no-doc"]) {
    const docPath = join(HERE, "..", "docs", "performance.md");
    const previous = existsSync(docPath) ? readFileSync(docPath, "utf8") : "";
    writeFileSync(docPath, renderDoc(out, previous));
    console.log(`wrote bench/results/latest.json and docs/performance.md (${env.seconds} s)`);
  } else {
    console.log(`wrote bench/results/latest.json (${env.seconds} s)`);
  }
}

// Exit explicitly: a finished run must not linger on a handle someone left open.
main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
