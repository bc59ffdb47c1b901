import {
  appendFileSync,
  chmodSync,
  cpSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Command } from "commander";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { issueClientCredential, makeX509Fleet, type X509Fleet } from "../../../src/apps/setup/index.js";
import { register } from "../../../src/apps/cli/doctor.js";
import { runDoctor, type DoctorCheck, type DoctorReport } from "../../../src/apps/doctor/index.js";
import { BrokerSupervisor, brokerSettings, freeLoopbackPort } from "../../../src/broker/index.js";
import { loadConfig } from "../../../src/core/config/index.js";
import {
  createCA,
  generateKeyPair,
  loadSeedFile,
  orgIssuer,
  writeSeedFile,
} from "../../../src/core/security/index.js";
import { chorusAsync } from "../../helpers/cli.js";
import { startSecureFleet, type SecureFleet } from "../../helpers/fleet.js";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const DAY_MS = 86_400_000;
const TIMEOUT_MS = 3000;

let fleet: SecureFleet;
const copies: string[] = [];

// One TLS, operator-mode broker for the whole file; every broken setup is a copy of
// its dev setup dir (configs name their files relative to themselves).
beforeAll(async () => {
  fleet = await startSecureFleet({ streams: false });
}, 60_000);

afterAll(async () => {
  for (const d of copies) rmSync(d, { recursive: true, force: true });
  await fleet?.stop();
});

/** A copy of the dev setup dir, to break. */
function copy(): string {
  const dir = mkdtempSync(join(tmpdir(), "chorus-doctor-"));
  cpSync(fleet.setup.dir, dir, { recursive: true });
  copies.push(dir);
  return dir;
}

const doctor = (file: string, now?: () => number): Promise<DoctorReport> =>
  runDoctor(file, { timeoutMs: TIMEOUT_MS, ...(now && { now }) });

function check(r: DoctorReport, name: string): DoctorCheck {
  const c = r.checks.find((x) => x.name === name);
  if (!c) throw new Error(`no ${name} check in ${JSON.stringify(r)}`);
  return c;
}

const statuses = (r: DoctorReport) => Object.fromEntries(r.checks.map((c) => [c.name, c.status]));

/** `chorus doctor ARGS` through a commander program with only this command, as launch.ts builds one. */
async function cli(args: string[]): Promise<{ code: number; out: string }> {
  const program = new Command().name("chorus").exitOverride();
  register(program);
  let out = "";
  const write = vi.spyOn(process.stdout, "write").mockImplementation((s: string | Uint8Array) => {
    out += String(s);
    return true;
  });
  const before = process.exitCode;
  try {
    await program.parseAsync(["node", "chorus", "doctor", ...args]);
    return { code: Number(process.exitCode ?? 0), out };
  } finally {
    write.mockRestore();
    process.exitCode = before;
  }
}

describe("a healthy dev setup", () => {
  it("client: every check passes; the clock is skipped with the reason", async () => {
    const r = await doctor(fleet.setup.clientConfig);
    expect(r.role).toBe("client");
    expect(r.ok).toBe(true);
    expect(statuses(r)).toEqual({
      config: "ok",
      tls: "ok",
      seed: "ok",
      token: "ok",
      "nats-jwt": "ok",
      clock: "skipped",
      broker: "ok",
    });
    expect(check(r, "config").detail).toMatch(/role client: no plugin.choria.broker_network = true/);
    expect(check(r, "clock").detail).toMatch(/no time source: the config names no AAA service/);
    expect(check(r, "token").detail).toMatch(/signed by a trusted issuer \(dev\)/);
    expect(check(r, "broker").detail).toMatch(/flush round trip [\d.]+ ms/);
  });

  it("server and broker configs are recognised; the broker's clock is read from its /varz", async () => {
    const server = await doctor(Object.values(fleet.setup.serverConfigs)[0] as string);
    expect(server.role).toBe("server");
    expect(check(server, "config").detail).toMatch(/identity node1.example.net with server keys/);
    expect(server.checks.filter((c) => c.status !== "ok").map((c) => c.name)).toEqual(["clock"]);

    const broker = await doctor(fleet.setup.brokerConfig);
    expect(broker.role).toBe("broker");
    expect(check(broker, "config").detail).toMatch(/plugin.choria.broker_network = true/);
    expect(statuses(broker)).toEqual({
      config: "ok",
      tls: "ok",
      seed: "ok",
      token: "ok",
      "nats-jwt": "ok",
      clock: "ok",
      broker: "ok",
    });
    expect(check(broker, "tls").detail).toMatch(/matches its key, signed by the CA/);
    expect(check(broker, "nats-jwt").detail).toMatch(/of the CHORIA account/);
    expect(check(broker, "clock").detail).toMatch(/the broker \(http:\/\/127\.0\.0\.1:\d+\/varz\)/);
  });

  it("the CLI prints one line per check and exits 0; --json prints the report", async () => {
    const text = await cli(["--config", fleet.setup.clientConfig, "--timeout", "3"]);
    expect(text.code).toBe(0);
    const lines = text.out.split("\n");
    for (const name of ["config", "tls", "seed", "token", "nats-jwt", "broker"])
      expect(lines.some((l) => new RegExp(`^OK\\s+${name}\\s`).test(l))).toBe(true);
    expect(lines.some((l) => /^SKIP\s+clock\s+no time source/.test(l))).toBe(true);
    expect(text.out).toMatch(/No check failed \(1 skipped\)/);

    const json = await cli(["--config", fleet.setup.clientConfig, "--json"]);
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.out) as DoctorReport;
    const direct = await doctor(fleet.setup.clientConfig);
    expect({ ...parsed, checks: parsed.checks.map((c) => c.name + c.status) }).toEqual({
      ...direct,
      checks: direct.checks.map((c) => c.name + c.status),
    });
    expect(parsed.checks.find((c) => c.name === "token")?.detail).toBe(check(direct, "token").detail);
  });

  it("clock skew against the broker: warns above 5 s, fails above 60 s, and says why clocks matter", async () => {
    const ahead = (ms: number) => () => Date.now() + ms;
    const warn = check(await doctor(fleet.setup.brokerConfig, ahead(10_000)), "clock");
    expect(warn.status).toBe("warn");
    expect(warn.detail).toMatch(/this host's clock is 1\d(\.\d)? s ahead of the broker/);
    const fail = await doctor(fleet.setup.brokerConfig, ahead(120_000));
    expect(check(fail, "clock").status).toBe("fail");
    expect(check(fail, "clock").fix).toMatch(/tokens' validity .* replay window/);
    expect(fail.ok).toBe(false);
  });

  it("clock skew against the AAA service's HTTP Date when the config names one", async () => {
    const port = await freeLoopbackPort();
    const aaa: Server = createServer((_req, res) => res.writeHead(404).end());
    await new Promise<void>((resolve) => aaa.listen(port, "127.0.0.1", resolve));
    try {
      const dir = copy();
      appendFileSync(
        join(dir, "client.conf"),
        `plugin.login.aaasvc.login.url = http://127.0.0.1:${port}/choria/v1/login\n`,
      );
      const ok = check(await doctor(join(dir, "client.conf")), "clock");
      expect(ok.status).toBe("ok");
      expect(ok.detail).toMatch(
        /the AAA service \(http:\/\/127\.0\.0\.1:\d+\/choria\/v1\/login, HTTP Date\)/,
      );
      const behind = check(await doctor(join(dir, "client.conf"), () => Date.now() - 30_000), "clock");
      expect(behind.status).toBe("warn");
      expect(behind.detail).toMatch(/behind the AAA service/);
    } finally {
      await new Promise((resolve) => aaa.close(resolve));
    }
  });
});

describe("problems, each in its own copy of the setup", () => {
  it("a seed readable by others is a warning with the chmod to run; warnings do not fail", async () => {
    const dir = copy();
    const seed = join(dir, "credentials", "client.seed");
    chmodSync(seed, 0o644);
    const r = await doctor(join(dir, "client.conf"));
    expect(check(r, "seed")).toMatchObject({ status: "warn", fix: `chmod 600 ${seed}` });
    expect(check(r, "seed").detail).toMatch(
      /mode 0644: group or others on this host can read the private key/,
    );
    expect(r.ok).toBe(true);
    expect((await cli(["--config", join(dir, "client.conf")])).code).toBe(0);
  });

  it("a token replaced by garbage fails with what is wrong; the connection is not tried", async () => {
    const dir = copy();
    writeFileSync(join(dir, "credentials", "client.jwt"), "this is not a token\n");
    const r = await doctor(join(dir, "client.conf"));
    expect(check(r, "token")).toMatchObject({ status: "fail" });
    expect(check(r, "token").detail).toMatch(
      /client\.jwt does not hold a JWT: token is not a three part JWT/,
    );
    expect(check(r, "token").fix).toMatch(/plugin.security.choria.token_file/);
    expect(check(r, "broker")).toMatchObject({ status: "skipped" });
    expect(check(r, "broker").detail).toMatch(/credential does not load/);
    expect(r.ok).toBe(false);
    const out = await cli(["--config", join(dir, "client.conf")]);
    expect(out.code).toBe(1);
    expect(out.out).toMatch(/^FAIL\s+token\s+.*\n\s+fix: issue a new token/m);
  });

  it("an expired credential fails the token and NATS JWT checks, and the broker refuses it", async () => {
    const dir = copy();
    const trust = JSON.parse(readFileSync(join(dir, "nats-trust.json"), "utf8")) as {
      choriaAccountPublic: string;
    };
    const issuer = orgIssuer(loadSeedFile(join(dir, "issuer.seed")));
    // issued 31 days ago, valid for 30: a real token with a validity in the past
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(Date.now() - 31 * DAY_MS);
    try {
      await issueClientCredential(
        { issuer, trust },
        {
          seedFile: join(dir, "credentials", "client.seed"),
          tokenFile: join(dir, "credentials", "client.jwt"),
        },
        { callerid: "choria=expired", validityS: 30 * 86_400, permissions: { fleet_management: true } },
      );
    } finally {
      vi.useRealTimers();
    }
    const r = await doctor(join(dir, "client.conf"));
    expect(check(r, "token").status).toBe("fail");
    expect(check(r, "token").detail).toMatch(/the token expired at .* ago\)/);
    expect(check(r, "nats-jwt").status).toBe("fail");
    expect(check(r, "nats-jwt").detail).toMatch(/the NATS user JWT expired at/);
    expect(check(r, "broker").status).toBe("fail");
    expect(check(r, "broker").detail).toMatch(
      /the broker refused the credential \(Authorization Violation\)/,
    );
    expect(check(r, "broker").fix).toMatch(/not issued for this broker's account .* has expired/);

    // a good token looked at from 40 days on is expired too
    const later = await doctor(fleet.setup.clientConfig, () => Date.now() + 40 * DAY_MS);
    expect(check(later, "token").status).toBe("fail");
    expect(check(later, "token").detail).toMatch(/the token expired at/);
    // and within 7 days of its end, a warning
    const soon = await doctor(fleet.setup.clientConfig, () => Date.now() + 25 * DAY_MS);
    expect(check(soon, "token").status).toBe("warn");
    expect(check(soon, "token").fix).toMatch(/renew it before then/);
  });

  it("a CA swapped for another CA: the client's connection fails TLS, the broker's certificate does not chain", async () => {
    const dir = copy();
    const other = await createCA("Some other CA", 30);
    writeFileSync(join(dir, "tls", "ca.pem"), other.certPem);

    const client = await doctor(join(dir, "client.conf"));
    expect(check(client, "tls").status).toBe("ok"); // a CA on its own is fine
    const b = check(client, "broker");
    expect(b.status).toBe("fail");
    expect(b.detail).toMatch(/TLS: the broker's certificate is not signed by the CA in .*ca\.pem/);
    expect(b.fix).toMatch(/set plugin\.security\.choria\.ca to the CA that signed the broker's certificate/);

    const broker = await doctor(join(dir, "broker.conf"));
    const tls = check(broker, "tls");
    expect(tls.status).toBe("fail");
    expect(tls.detail).toMatch(/certificate "CN=broker.chorus.local" .* is not signed by the CA in/);
    expect(tls.fix).toMatch(/plugin\.security\.choria\.ca/);
  });

  it("no broker on the configured port: the connection fails, naming the key with the host:port", async () => {
    const dir = copy();
    const port = await freeLoopbackPort();
    appendFileSync(join(dir, "client.conf"), `plugin.choria.middleware_hosts = tls://127.0.0.1:${port}\n`);
    const r = await doctor(join(dir, "client.conf"));
    const b = check(r, "broker");
    expect(b.status).toBe("fail");
    expect(b.detail).toBe(`tls://127.0.0.1:${port}: connection refused`);
    expect(b.fix).toMatch(/is the broker running\? check the host:port in plugin\.choria\.middleware_hosts/);
    expect((await cli(["--config", join(dir, "client.conf")])).code).toBe(1);

    // one of two brokers down is a warning: the client fails over to the other
    appendFileSync(
      join(dir, "client.conf"),
      `plugin.choria.middleware_hosts = ${fleet.setup.brokerUrl},tls://127.0.0.1:${port}\n`,
    );
    const half = check(await doctor(join(dir, "client.conf")), "broker");
    expect(half.status).toBe("warn");
    expect(half.detail).toMatch(/connection refused \(the others answer\)/);
  });

  it("a config that does not exist fails, and the CLI exits 1 with the report", async () => {
    const missing = join(tmpdir(), "chorus-doctor-no-such-dir", "client.conf");
    const r = await doctor(missing);
    expect(check(r, "config")).toMatchObject({ status: "fail" });
    expect(check(r, "config").detail).toMatch(/cannot read configuration: no such file/);
    expect(r.checks.slice(1).every((c) => c.status === "skipped")).toBe(true);
    expect(r.ok).toBe(false);
    const out = await cli(["--config", missing, "--json"]);
    expect(out.code).toBe(1);
    expect(JSON.parse(out.out)).toEqual(r);
  });

  it("malformed and missing inputs are failed checks with details, never exceptions", async () => {
    const cases: Array<[string, (dir: string) => void, string, string, RegExp]> = [
      [
        "garbage config",
        (d) => writeFileSync(join(d, "client.conf"), "this is not a config\n"),
        "client.conf",
        "config",
        /client\.conf:1: expected "key = value"/,
      ],
      [
        "config whose settings do not load",
        (d) => appendFileSync(join(d, "client.conf"), "plugin.security.choria.certificate = tls/x.pem\n"),
        "client.conf",
        "config",
        /must be set together/,
      ],
      [
        "missing seed",
        (d) => rmSync(join(d, "credentials", "client.seed")),
        "client.conf",
        "seed",
        /client\.seed does not exist/,
      ],
      [
        "garbage seed",
        (d) => writeFileSync(join(d, "credentials", "client.seed"), "zz", { mode: 0o600 }),
        "client.conf",
        "seed",
        /does not hold a 32 byte hex ed25519 seed/,
      ],
      [
        "missing token",
        (d) => rmSync(join(d, "credentials", "client.jwt")),
        "client.conf",
        "token",
        /client\.jwt does not exist/,
      ],
      [
        "seed of another key",
        (d) => writeSeedFile(join(d, "credentials", "client.seed"), generateKeyPair()),
        "client.conf",
        "token",
        /the token is for public key [0-9a-f]{64}, the seed in .* is for [0-9a-f]{64}/,
      ],
      [
        "a client token in a server config",
        (d) =>
          appendFileSync(
            join(d, "server-node1.example.net.conf"),
            "plugin.security.choria.token_file = credentials/client.jwt\n",
          ),
        "server-node1.example.net.conf",
        "token",
        /is a client token for .*; a server needs a choria_server token/,
      ],
      [
        "an untrusted issuer",
        (d) =>
          appendFileSync(
            join(d, "client.conf"),
            `plugin.security.issuer.dev.public = ${generateKeyPair().publicHex}\n`,
          ),
        "client.conf",
        "token",
        /does not verify against the trusted issuers \(dev\)/,
      ],
      [
        "garbage NATS JWT",
        (d) => writeFileSync(join(d, "credentials", "client.jwt.nats"), "a.b.c\n"),
        "client.conf",
        "nats-jwt",
        /is not a valid NATS JWT/,
      ],
      [
        "NATS JWT of another user",
        (d) =>
          cpSync(join(d, "credentials", "admin-client.jwt.nats"), join(d, "credentials", "client.jwt.nats")),
        "client.conf",
        "nats-jwt",
        /is for NATS user U[A-Z0-9]+, the seed's key is U[A-Z0-9]+/,
      ],
      [
        "missing CA",
        (d) => rmSync(join(d, "tls", "ca.pem")),
        "client.conf",
        "tls",
        /CA .*ca\.pem does not exist/,
      ],
      [
        "garbage certificate",
        (d) => writeFileSync(join(d, "tls", "broker.pem"), "junk\n"),
        "broker.conf",
        "tls",
        /broker\.pem holds no PEM certificate/,
      ],
      [
        "garbage key",
        (d) => writeFileSync(join(d, "tls", "broker.key"), "junk\n", { mode: 0o600 }),
        "broker.conf",
        "tls",
        /broker\.key is not a readable private key/,
      ],
      [
        "certificate and key that do not match",
        (d) => cpSync(join(d, "tls", "ca.key"), join(d, "tls", "broker.key")),
        "broker.conf",
        "tls",
        /is not for the key in .*broker\.key/,
      ],
    ];
    for (const [what, breakIt, conf, name, detail] of cases) {
      const dir = copy();
      breakIt(dir);
      const r = await doctor(join(dir, conf));
      const c = check(r, name);
      expect({ what, status: c.status }).toEqual({ what, status: "fail" });
      expect(c.detail, what).toMatch(detail);
      expect(c.fix, what).toBeTruthy();
      expect(r.ok, what).toBe(false);
    }
  });
});

// The same through bin/chorus.js once launch.ts registers the command (the lead does).
const LAUNCH = join(ROOT, "dist/apps/cli/launch.js");
const registered = existsSync(LAUNCH) && readFileSync(LAUNCH, "utf8").includes("./doctor.js");

describe.skipIf(!registered)("bin/chorus.js doctor", () => {
  beforeAll(() => {
    const newest = (dir: string) =>
      Math.max(...readdirSync(join(ROOT, dir)).map((f) => statSync(join(ROOT, dir, f)).mtimeMs));
    const built = join(ROOT, "dist/apps/cli/doctor.js");
    const src = Math.max(newest("src/apps/doctor"), statSync(join(ROOT, "src/apps/cli/doctor.ts")).mtimeMs);
    if (!existsSync(built) || statSync(built).mtimeMs < src || newest("dist/apps/doctor") < src)
      throw new Error(
        "dist/ is older than src/apps/doctor: run `npm run build` first (this test runs bin/chorus.js)",
      );
  });

  it("exits 0 for a healthy config and 1 for a missing one", async () => {
    const good = await chorusAsync(["doctor", "--config", fleet.setup.clientConfig]);
    expect(good.status, good.stderr).toBe(0);
    expect(good.stdout).toMatch(/^OK\s+broker\s+tls:\/\//m);
    const bad = await chorusAsync(["doctor", "--config", join(tmpdir(), "chorus-doctor-none.conf")]);
    expect(bad.status).toBe(1);
    expect(bad.stdout).toMatch(/^FAIL\s+config\s+/m);
  });
});

describe("chorus doctor on an x509 (protocol v1) configuration", () => {
  let v1: X509Fleet;
  let broker: BrokerSupervisor;
  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), "chorus-doctor-x509-"));
    v1 = await makeX509Fleet({ dir, users: ["alice"], brokerPort: await freeLoopbackPort(), streams: false });
    broker = new BrokerSupervisor({ settings: brokerSettings(loadConfig(v1.brokerConfig)) });
    await broker.start();
  }, 60_000);
  afterAll(async () => {
    await broker?.stop();
    if (v1) rmSync(v1.dir, { recursive: true, force: true });
  });

  it("checks the certificate instead of a seed and token, and connects with it", async () => {
    const r = await runDoctor(v1.clientConfig, { timeoutMs: TIMEOUT_MS });
    const by = (n: string) => r.checks.find((c) => c.name === n) as DoctorCheck;
    expect(by("x509").status).toBe("ok");
    expect(by("x509").detail).toContain("alice.mcollective passes the allow-list");
    for (const n of ["seed", "token", "nats-jwt"]) expect(by(n).status).toBe("skipped");
    expect(by("broker").status).toBe("ok");
    expect(by("broker").detail).toContain("client certificate");
    expect(r.ok).toBe(true);
    const server = await runDoctor(Object.values(v1.serverConfigs)[0] as string, { timeoutMs: TIMEOUT_MS });
    expect(server.ok, JSON.stringify(server.checks)).toBe(true);
  });

  it("a key that is not the certificate's fails the x509 check with the fix", async () => {
    const conf = join(v1.dir, "mismatched.conf");
    const text = readFileSync(v1.clientConfig, "utf8").replace(
      /^plugin\.security\.file\.key = .*$/m,
      `plugin.security.file.key = ${v1.privileged.keyFile}`,
    );
    writeFileSync(conf, text);
    const r = await runDoctor(conf, { timeoutMs: TIMEOUT_MS });
    const x = r.checks.find((c) => c.name === "x509") as DoctorCheck;
    expect(x.status).toBe("fail");
    expect(JSON.stringify(x)).toMatch(/does not belong to certificate/);
    expect(r.ok).toBe(false);
  });
});
