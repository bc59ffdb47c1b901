// AAA throughput: signed requests per second through the signer (in-process call and
// HTTP), and logins per second at bcrypt cost 10 (fresh and through the credential
// cache), against the same-run raw baseline of ed25519 sign+verify on the same cores.
// Not part of the tests. Run: bench/aaa.sh [--seconds 3] [--runs 3] [--concurrency 32]
// The HTTP load comes from this process too (loopback, plain HTTP), so the HTTP figure
// includes the client's own cost on the same two cores.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { Agent, request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import bcrypt from "bcrypt";
import { encodeMessage, encodeRequest, newRequestId, nowNanos } from "../src/core/protocol/index.js";
import {
  createChainIssuer,
  createClientToken,
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
  const config = (cache: string) => ({
    site: "bench",
    loglevel: "error",
    authenticator: "userlist",
    authorizer: "actionlist",
    signer: "basicjwt",
    auditors: ["logfile"],
    port: 0,
    listen_address: "127.0.0.1",
    logfile_auditor: { logfile: join(dir, "audit.log"), rotate_bytes: 64 * 1024 * 1024, keep: 1 },
    basicjwt_signer: {
      signing_certificate: orgKp.publicHex,
      signing_token: "signer.jwt",
      signing_seed: "signer.seed",
      max_validity: "2h",
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
  const url = `http://127.0.0.1:${svc.port}/choria/v1`;
  const post = async (path: string, body: unknown) => {
    const r = await fetch(`${url}/${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const j = (await r.json()) as Record<string, string>;
    if (r.status !== 200) throw new Error(`${path}: ${r.status} ${JSON.stringify(j)}`);
    return j;
  };
  // node:http with keep-alive: fetch's own cost per call is larger than the signer's
  const agent = new Agent({ keepAlive: true, maxSockets: CONC });
  const rawPost = (path: string, body: string) =>
    new Promise<void>((resolve, reject) => {
      const r = httpRequest(
        `${url}/${path}`,
        { method: "POST", agent, headers: { "content-type": "application/json" } },
        (res) => {
          res.resume();
          res.on("end", () =>
            res.statusCode === 200 ? resolve() : reject(new Error(`${path}: ${res.statusCode}`)),
          );
        },
      );
      r.on("error", reject);
      r.end(body);
    });
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

  // Requests are built and signed by the "client" before each timed run, so the rates
  // below are the signer's own cost (and HTTP's), not the client's.
  const POOL = 60_000;
  const presign = () =>
    Array.from({ length: POOL }, () => {
      const req = request();
      return { req, sig: sign(userKp.seedHex, req).toString("hex") };
    });
  const rows: Record<string, number[]> = { raw: [], inproc: [], http: [], loginCached: [] };
  for (let run = 0; run < RUNS; run++) {
    // raw: one ed25519 sign and one verify, serially, as a baseline of the crypto involved
    const payload = request();
    rows.raw!.push(
      await rate(() => {
        const s = sign(delegatorKp.seedHex, payload);
        if (!verify(delegatorKp.publicHex, payload, s)) throw new Error("verify failed");
      }, 1),
    );
    let pool = presign();
    let next = 0;
    rows.inproc!.push(
      await rate(async () => {
        const { req, sig } = pool[next++ % POOL]!;
        const out = await signer.sign({ token, signature: sig, request: req });
        if (!out.ok) throw new Error(out.reason);
      }),
    );
    pool = presign();
    next = 0;
    rows.http!.push(
      await rate(async () => {
        const { req, sig } = pool[next++ % POOL]!;
        await rawPost("sign", JSON.stringify({ token, signature: sig, request: req.toString("base64") }));
      }),
    );
    rows.loginCached!.push(await rate(async () => void (await post("login", loginBody())), 8));
  }
  agent.destroy();
  await svc.stop();

  // fresh logins: the credential cache off, so every login runs bcrypt at cost 10
  writeFileSync(file, JSON.stringify(config("0s")));
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
  rmSync(dir, { recursive: true, force: true });

  const raw = median(rows.raw!);
  const fmt = (x: number) => Math.round(x).toLocaleString("en");
  console.log(`AAA bench: ${RUNS} runs x ${SECONDS} s, concurrency ${CONC}, medians (min-max)`);
  const line = (name: string, xs: number[], base?: number) =>
    console.log(
      `${name.padEnd(44)} ${fmt(median(xs)).padStart(9)}/s  (${fmt(Math.min(...xs))}-${fmt(Math.max(...xs))})` +
        (base ? `  ratio to raw ${(median(xs) / base).toFixed(3)}` : ""),
    );
  line("raw ed25519 sign+verify (baseline, 1 core)", rows.raw!);
  line("signer, in-process (actionlist, file audit)", rows.inproc!, raw);
  line("signer over HTTP (client in this process)", rows.http!, raw);
  line("login, credential cache (bcrypt cost 10)", rows.loginCached!);
  line("login, fresh bcrypt cost 10", loginFresh);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
