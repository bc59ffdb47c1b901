// AAA throughput: signed requests per second through the signer (in-process call, HTTP
// and the aaa_signer RPC agent over a real nats-server), and logins per second at bcrypt
// cost 10 (fresh and through the credential cache), against the same-run raw baseline of
// ed25519 sign+verify on one core. Not part of the tests.
// Run: bench/aaa.sh [--seconds 3] [--runs 3] [--concurrency 32]
// HTTP and RPC load comes from a separate process (bench/aaa-load.ts) with requests
// signed before the clock starts, and, when Debian's wrk is installed, from wrk against
// one signer process and against two sharing the port; all share this machine's cores.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { spawn, spawnSync } from "node:child_process";
import cluster from "node:cluster";
import { fileURLToPath } from "node:url";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import bcrypt from "bcrypt";
import { encodeMessage, encodeRequest, newRequestId, nowNanos } from "../src/core/protocol/index.js";
import { findNatsServer, freeLoopbackPort } from "../src/broker/index.js";
import { connectNats } from "../src/core/connector/index.js";
import {
  createChainIssuer,
  createClientToken,
  createServerToken,
  generateKeyPair,
  orgIssuer,
  sign,
  verify,
  writeSeedFile,
} from "../src/core/security/index.js";
import { AaaService, loadAaaConfig } from "../src/services/aaa/index.js";

const { values: opt } = parseArgs({
  options: {
    seconds: { type: "string", default: "3" },
    runs: { type: "string", default: "3" },
    concurrency: { type: "string", default: "32" },
  },
});
const SECONDS = Number(opt.seconds);
const RUNS = Number(opt.runs);
const CONC = Number(opt.concurrency);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

/** Runs `one` with `conc` in flight for SECONDS; returns completions per second. */
async function rate(one: () => Promise<void> | void, conc = CONC): Promise<number> {
  const end = performance.now() + SECONDS * 1000;
  let n = 0;
  const worker = async () => {
    while (performance.now() < end) {
      await one();
      n++;
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: conc }, worker));
  return (n / (performance.now() - t0)) * 1000;
}

function request(): Buffer {
  return encodeRequest({
    message: encodeMessage(JSON.stringify({ agent: "rpcutil", action: "ping", data: {} })),
    id: newRequestId(),
    sender: "bench.example",
    caller: "up=alice",
    collective: "mcollective",
    agent: "rpcutil",
    ttl: 60,
    time: nowNanos(),
  });
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "chorus-bench-aaa-"));
  const orgKp = generateKeyPair();
  const org = orgIssuer(orgKp);
  const chainKp = generateKeyPair();
  const chain = createChainIssuer(org, chainKp, 3600, { callerid: "aaa=login" });
  writeSeedFile(join(dir, "login.seed"), chainKp);
  writeFileSync(join(dir, "login.jwt"), chain.token as string);
  const delegatorKp = generateKeyPair();
  writeSeedFile(join(dir, "signer.seed"), delegatorKp);
  writeFileSync(
    join(dir, "signer.jwt"),
    createClientToken(
      {
        callerid: "aaa=signer",
        publicKeyHex: delegatorKp.publicHex,
        validityS: 3600,
        permissions: { authentication_delegator: true },
      },
      org,
    ),
  );
  const password = "bench-secret";
  writeFileSync(
    join(dir, "users.json"),
    JSON.stringify([
      {
        username: "alice",
        password: bcrypt.hashSync(password, 10),
        acls: ["rpcutil.*"],
        broker_permissions: { signed_fleet_management: true },
      },
    ]),
  );

  // a real nats-server for the RPC path, and the embedded node's and asker's credentials
  const natsPort = await freeLoopbackPort();
  const nats = spawn(findNatsServer(), ["-a", "127.0.0.1", "-p", String(natsPort)], { stdio: "ignore" });
  const natsUrl = `nats://127.0.0.1:${natsPort}`;
  for (let i = 0; ; i++) {
    try {
      const nc = await connectNats({ servers: [natsUrl], name: "bench-probe", reconnect: false });
      await nc.close();
      break;
    } catch (err) {
      if (i > 50) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const nodeKp = generateKeyPair();
  writeSeedFile(join(dir, "node.seed"), nodeKp);
  writeFileSync(
    join(dir, "node.jwt"),
    createServerToken(
      {
        identity: "aaa.bench",
        collectives: ["mcollective"],
        publicKeyHex: nodeKp.publicHex,
        validityS: 3600,
      },
      org,
    ),
  );
  writeFileSync(
    join(dir, "node.conf"),
    [
      "identity = aaa.bench",
      "collectives = mcollective",
      `plugin.choria.middleware_hosts = ${natsUrl}`,
      "plugin.security.provider = choria",
      "plugin.security.choria.seed_file = node.seed",
      "plugin.security.choria.token_file = node.jwt",
      "plugin.security.issuer.names = bench",
      `plugin.security.issuer.bench.public = ${orgKp.publicHex}`,
      "loglevel = error",
    ].join("\n"),
  );
  const askerKp = generateKeyPair();
  writeSeedFile(join(dir, "asker.seed"), askerKp);
  writeFileSync(
    join(dir, "asker.jwt"),
    createClientToken(
      {
        callerid: "up=asker",
        publicKeyHex: askerKp.publicHex,
        validityS: 3600,
        permissions: { signed_fleet_management: true },
      },
      org,
    ),
  );

  const config = (cache: string) => ({
    site: "bench",
    loglevel: "error",
    authenticator: "userlist",
    authorizer: "actionlist",
    signer: "basicjwt",
    auditors: ["logfile"],
    port: 0,
    listen_address: "127.0.0.1",
    choria_config: "node.conf",
    logfile_auditor: { logfile: join(dir, "audit.log"), rotate_bytes: 64 * 1024 * 1024, keep: 1 },
    basicjwt_signer: {
      signing_certificate: orgKp.publicHex,
      signing_token: "signer.jwt",
      signing_seed: "signer.seed",
      max_validity: "2h",
      choria_service: true,
    },
    userlist_authenticator: {
      users_file: "users.json",
      validity: "1h",
      signing_key: "login.seed",
      signing_token: "login.jwt",
      credential_cache: cache,
      // the bench logs in as fast as it can from one address
      max_failures_per_user: 1000,
    },
  });
  const file = join(dir, "aaa.json");
  writeFileSync(file, JSON.stringify(config("1m")));
  const svc = new AaaService(loadAaaConfig(file));
  await svc.start();
  let url = `http://127.0.0.1:${svc.port}`;
  const post = async (path: string, body: unknown) => {
    const r = await fetch(`${url}/choria/v1/${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const j = (await r.json()) as Record<string, string>;
    if (r.status !== 200) throw new Error(`${path}: ${r.status} ${JSON.stringify(j)}`);
    return j;
  };
  const userKp = generateKeyPair();
  const loginBody = () => {
    const ts = String(Math.floor(Date.now() / 1000));
    return {
      username: "alice",
      password,
      timestamp: ts,
      public_key: userKp.publicHex,
      signature: sign(userKp.seedHex, Buffer.from(`${ts}:alice:${password}`)).toString("hex"),
    };
  };
  const token = (await post("login", loginBody())).token as string;
  const signer = svc.signer;
  if (!signer) throw new Error("signer did not start");

  const loadScript = fileURLToPath(new URL("./aaa-load.js", import.meta.url));
  const load = (mode: "http" | "rpc", conc: number) =>
    new Promise<number>((resolve, reject) => {
      const child = spawn(
        process.execPath,
        [
          loadScript,
          JSON.stringify({
            mode,
            seconds: SECONDS,
            conc,
            token,
            seedHex: userKp.seedHex,
            url,
            natsUrl,
            askerSeedFile: join(dir, "asker.seed"),
            askerTokenFile: join(dir, "asker.jwt"),
            issuer: orgKp.publicHex,
          }),
        ],
        { stdio: ["ignore", "pipe", "inherit"] },
      );
      let out = "";
      child.stdout.on("data", (d: Buffer) => (out += d.toString()));
      child.once("exit", (code) =>
        code === 0
          ? resolve((JSON.parse(out) as { rate: number }).rate)
          : reject(new Error(`aaa-load ${mode}: ${code}`)),
      );
    });

  // Requests are signed by the "client" before each timed run, so the in-process rate is
  // the signer's own cost.
  const POOL = 60_000;
  const presign = () =>
    Array.from({ length: POOL }, () => {
      const req = request();
      return { req, sig: sign(userKp.seedHex, req).toString("hex") };
    });
  // wrk (C, from Debian's package) as the HTTP client: one pre-signed request re-sent,
  // so the client's share of the two cores is as small as it gets
  const wrk = spawnSync("wrk", ["--version"]).error ? undefined : "wrk";
  const wrkRate = async (): Promise<number> => {
    const req = request();
    const body = JSON.stringify({
      token,
      signature: sign(userKp.seedHex, req).toString("hex"),
      request: req.toString("base64"),
    });
    const script = join(dir, "sign.lua");
    writeFileSync(
      script,
      `wrk.method = "POST"\nwrk.body = ${JSON.stringify(body)}\nwrk.headers["Content-Type"] = "application/json"\n`,
    );
    // async: the service answering wrk runs in this process
    const r = await new Promise<{ stdout: string; stderr: string }>((resolve, reject) => {
      const child = spawn("wrk", [
        "-t1",
        `-c${CONC}`,
        `-d${SECONDS}s`,
        "-s",
        script,
        `${url}/choria/v1/sign`,
      ]);
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      child.once("error", reject);
      child.once("exit", () => resolve({ stdout, stderr }));
    });
    if (/Non-2xx/.test(r.stdout)) throw new Error(`wrk: refused requests\n${r.stdout}`);
    const m = /Requests\/sec:\s+([\d.]+)/.exec(r.stdout);
    if (!m) throw new Error(`wrk: no rate in\n${r.stdout}${r.stderr}`);
    return Number(m[1]);
  };
  const rows: Record<string, number[]> = {
    raw: [],
    inproc: [],
    http: [],
    wrk: [],
    rpc: [],
    loginCached: [],
  };
  for (let run = 0; run < RUNS; run++) {
    // raw: one ed25519 sign and one verify, serially, as a baseline of the crypto involved
    const payload = request();
    rows.raw!.push(
      await rate(() => {
        const s = sign(delegatorKp.seedHex, payload);
        if (!verify(delegatorKp.publicHex, payload, s)) throw new Error("verify failed");
      }, 1),
    );
    const pool = presign();
    let next = 0;
    rows.inproc!.push(
      await rate(async () => {
        const { req, sig } = pool[next++ % POOL]!;
        const out = await signer.sign({ token, signature: sig, request: req });
        if (!out.ok) throw new Error(out.reason);
      }),
    );
    rows.http!.push(await load("http", CONC));
    if (wrk) rows.wrk!.push(await wrkRate());
    rows.rpc!.push(await load("rpc", CONC));
    rows.loginCached!.push(await rate(async () => void (await post("login", loginBody())), 8));
  }
  await svc.stop();

  // Signing keeps no state between requests, so signers scale out: N processes on one
  // port (node:cluster hands connections round-robin), wrk as the client.
  const clusterRates: number[] = [];
  if (wrk) {
    const clusterPort = await freeLoopbackPort();
    const clusterFile = join(dir, "aaa-cluster.json");
    writeFileSync(
      clusterFile,
      JSON.stringify({
        ...config("1m"),
        port: clusterPort,
        choria_config: undefined,
        basicjwt_signer: { ...config("1m").basicjwt_signer, choria_service: false },
      }),
    );
    cluster.setupPrimary({ exec: fileURLToPath(import.meta.url), args: [] });
    const workers = Array.from({ length: 2 }, () => cluster.fork({ AAA_BENCH_CONFIG: clusterFile }));
    await Promise.all(workers.map((w) => new Promise((r) => w.once("message", r))));
    const base = url;
    url = `http://127.0.0.1:${clusterPort}`;
    for (let run = 0; run < RUNS; run++) clusterRates.push(await wrkRate());
    url = base;
    await Promise.all(
      workers.map(
        (w) =>
          new Promise((r) => {
            w.once("exit", r);
            w.disconnect();
          }),
      ),
    );
  }

  // fresh logins: the credential cache off, so every login runs bcrypt at cost 10
  writeFileSync(
    file,
    JSON.stringify({
      ...config("0s"),
      basicjwt_signer: { ...config("0s").basicjwt_signer, choria_service: false },
    }),
  );
  const fresh = new AaaService(loadAaaConfig(file));
  await fresh.start();
  const freshUrl = `http://127.0.0.1:${fresh.port}/choria/v1/login`;
  const loginFresh: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    loginFresh.push(
      await rate(async () => {
        const r = await fetch(freshUrl, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(loginBody()),
        });
        if (r.status !== 200) throw new Error(`login ${r.status}`);
        await r.arrayBuffer();
      }, 8),
    );
  }
  await fresh.stop();
  nats.kill();
  rmSync(dir, { recursive: true, force: true });

  const raw = median(rows.raw!);
  const fmt = (x: number) => Math.round(x).toLocaleString("en");
  console.log(`AAA bench: ${RUNS} runs x ${SECONDS} s, concurrency ${CONC}, medians (min-max)`);
  const line = (name: string, xs: number[], base?: number) =>
    console.log(
      `${name.padEnd(46)} ${fmt(median(xs)).padStart(9)}/s  (${fmt(Math.min(...xs))}-${fmt(Math.max(...xs))})` +
        (base ? `  ratio to raw ${(median(xs) / base).toFixed(3)}` : ""),
    );
  line("raw ed25519 sign+verify (baseline, 1 core)", rows.raw!);
  line("signer, in-process (actionlist, file audit)", rows.inproc!, raw);
  line("signer over HTTP (load from another process)", rows.http!, raw);
  if (rows.wrk!.length > 0) line("signer over HTTP (load from wrk)", rows.wrk!, raw);
  else console.log("signer over HTTP (load from wrk): skipped, wrk is not installed (apt-get install wrk)");
  if (clusterRates.length > 0) line("signer over HTTP, 2 processes (load from wrk)", clusterRates, raw);
  line("signer over RPC, aaa_signer via nats-server", rows.rpc!, raw);
  line("login, credential cache (bcrypt cost 10)", rows.loginCached!);
  line("login, fresh bcrypt cost 10", loginFresh);
}

/** A cluster worker: one more signer process on the shared port. */
async function worker(): Promise<void> {
  const svc = new AaaService(loadAaaConfig(process.env.AAA_BENCH_CONFIG as string));
  await svc.start();
  process.send?.("ready");
  process.on("disconnect", () => void svc.stop().then(() => process.exit(0)));
}

(cluster.isWorker ? worker() : main()).catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
