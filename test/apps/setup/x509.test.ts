// `chorus setup dev --security x509` as a user runs it (the built CLI), checked with
// node:crypto, openssl, the project's CA and a real nats-server doing mutual TLS.
import { spawnSync } from "node:child_process";
import { X509Certificate, createPrivateKey } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BrokerSupervisor } from "../../../src/broker/index.js";
import { CertificateAuthority } from "../../../src/core/ca/index.js";
import {
  brokerSettings,
  clientSettings,
  loadConfig,
  serverSettings,
} from "../../../src/core/config/index.js";
import { closeNats, connectNats } from "../../../src/core/connector/index.js";
import { createCA, issueCert } from "../../../src/core/security/index.js";
import {
  DEFAULT_CERTNAME_ALLOW_LIST,
  DEFAULT_PRIVILEGED_USERS,
  SetupError,
  fileSecurityKeys,
  makeX509Fleet,
} from "../../../src/apps/setup/index.js";
import { chorus, type CliResult } from "../../helpers/cli.js";
import { freePort, startNats } from "../../helpers/nats.js";

const SERVER_AUTH = "1.3.6.1.5.5.7.3.1";
const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";
const FILE_KEYS = ["plugin.security.file.certificate", "plugin.security.file.key", "plugin.security.file.ca"];
const hasOpenssl = spawnSync("openssl", ["version"]).status === 0;

/** The value of `key` in a config file, or undefined. */
function confValue(file: string, key: string): string | undefined {
  return loadConfig(file).get(key);
}

/** A config's path value resolved as the config reader does: from the file's directory. */
function confPath(file: string, key: string): string {
  const v = confValue(file, key);
  expect(v, `${file}: ${key}`).toBeDefined();
  return isAbsolute(v as string) ? (v as string) : resolve(dirname(file), v as string);
}

/** The SAN list node prints ("DNS:a, IP Address:1.2.3.4") as {dns, ip}. */
function sans(cert: X509Certificate): { dns: string[]; ip: string[] } {
  const parts = (cert.subjectAltName ?? "").split(", ").filter(Boolean);
  return {
    dns: parts.filter((p) => p.startsWith("DNS:")).map((p) => p.slice(4)),
    ip: parts.filter((p) => p.startsWith("IP Address:")).map((p) => p.slice(11)),
  };
}

describe("chorus setup dev --security x509", () => {
  let dir: string;
  let out: CliResult;
  let ms: number;

  beforeAll(() => {
    dir = join(mkdtempSync(join(tmpdir(), "chorus-x509-")), "fleet");
    const t = Date.now();
    out = chorus(
      [
        "setup",
        "dev",
        "--security",
        "x509",
        "--dir",
        dir,
        "--port",
        "14777",
        "--server",
        "node1.mcollective",
        "node2.mcollective",
        "--user",
        "alice",
        "bob",
      ],
      {},
      60_000,
    );
    ms = Date.now() - t;
  }, 70_000);
  afterAll(() => rmSync(dirname(dir), { recursive: true, force: true }));

  it("exits 0 and prints what it wrote and the commands to run next", () => {
    expect(out.stderr).toBe("");
    expect(out.status).toBe(0);
    expect(out.stdout).toContain(`x509 (protocol v1) dev setup written to ${dir}`);
    for (const line of [
      `chorus broker run --config ${dir}/broker.conf`,
      `chorus server run --config ${dir}/server-node1.mcollective.conf`,
      `chorus server run --config ${dir}/server-node2.mcollective.conf`,
      `chorus emulate --config ${dir}/emulator.conf`,
      `export CHORUS_CONFIG=${dir}/client.conf; chorus ping   (caller choria=alice.mcollective)`,
      `chorus ping --config ${dir}/client-bob.conf   (caller choria=bob.mcollective)`,
      `chorus ca list --dir ${dir}/ca`,
    ])
      expect(out.stdout).toContain(line);
    // RSA key generation is most of it; a regression to something slow shows here
    expect(ms).toBeLessThan(30_000);
  });

  it("every certificate is RSA, chains to the CA, names its holder and allows only its TLS use", async () => {
    const want: Record<string, { cn: string; dns: string[]; ip?: string[]; eku: string[] }> = {
      broker: {
        cn: "broker.mcollective",
        dns: ["broker.mcollective", "localhost"],
        ip: ["127.0.0.1", "0:0:0:0:0:0:0:1"],
        eku: [SERVER_AUTH, CLIENT_AUTH],
      },
      "node1.mcollective": { cn: "node1.mcollective", dns: ["node1.mcollective"], eku: [CLIENT_AUTH] },
      "node2.mcollective": { cn: "node2.mcollective", dns: ["node2.mcollective"], eku: [CLIENT_AUTH] },
      "alice.mcollective": { cn: "alice.mcollective", dns: ["alice.mcollective"], eku: [CLIENT_AUTH] },
      "bob.mcollective": { cn: "bob.mcollective", dns: ["bob.mcollective"], eku: [CLIENT_AUTH] },
      "aaa.privileged.mcollective": {
        cn: "aaa.privileged.mcollective",
        dns: ["aaa.privileged.mcollective"],
        eku: [CLIENT_AUTH],
      },
      "emulator.mcollective": {
        cn: "emulator.mcollective",
        dns: ["emulator.mcollective"],
        eku: [CLIENT_AUTH],
      },
    };
    const tls = join(dir, "tls");
    // the trust file holds the intermediate then the root, as the v1 pubcert check needs both
    const chain =
      readFileSync(join(tls, "ca.pem"), "utf8").match(
        /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g,
      ) ?? [];
    expect(chain).toHaveLength(2);
    const [inter, root] = chain.map((p) => new X509Certificate(p)) as [X509Certificate, X509Certificate];
    expect(inter.ca && root.ca).toBe(true);
    expect(inter.verify(root.publicKey) && root.verify(root.publicKey)).toBe(true);
    const authority = await CertificateAuthority.open(join(dir, "ca"));
    expect(authority.algorithm).toBe("rsa");
    expect(await authority.list()).toHaveLength(Object.keys(want).length);

    for (const [base, w] of Object.entries(want)) {
      const certFile = join(tls, `${base}.pem`);
      const keyFile = join(tls, `${base}.key`);
      const cert = new X509Certificate(readFileSync(certFile));
      expect(cert.subject, base).toBe(`CN=${w.cn}`);
      expect(cert.ca).toBe(false);
      expect(
        cert.checkIssued(inter) && cert.verify(inter.publicKey),
        `${base} signed by the intermediate`,
      ).toBe(true);
      expect(cert.publicKey.asymmetricKeyType).toBe("rsa");
      expect(cert.publicKey.asymmetricKeyDetails?.modulusLength).toBeGreaterThanOrEqual(2048);
      expect(sans(cert)).toEqual({ dns: w.dns, ip: w.ip ?? [] });
      expect([...(cert.keyUsage ?? [])].sort()).toEqual([...w.eku].sort());
      // validity as setup dev's TLS certificates: a year
      const days = (Date.parse(cert.validTo) - Date.now()) / 86_400_000;
      expect(days).toBeGreaterThan(364);
      expect(days).toBeLessThan(366);
      expect(statSync(keyFile).mode & 0o777, `${keyFile} mode`).toBe(0o600);
      expect(readFileSync(keyFile, "utf8")).toMatch(/^-----BEGIN RSA PRIVATE KEY-----/);
      expect(cert.checkPrivateKey(createPrivateKey(readFileSync(keyFile)))).toBe(true);
      // issued and recorded by the project's CA, so `chorus ca revoke` can withdraw it
      const v = await authority.verifyChain(readFileSync(certFile, "utf8"));
      expect(v.valid, `${base}: ${JSON.stringify(v)}`).toBe(true);
      if (hasOpenssl) {
        const r = spawnSync("openssl", ["verify", "-CAfile", join(tls, "ca.pem"), certFile], {
          encoding: "utf8",
        });
        expect(r.stdout.trim(), r.stderr).toBe(`${certFile}: OK`);
      }
    }
    for (const k of ["root.key", "intermediate.key"])
      expect(statSync(join(dir, "ca", k)).mode & 0o777).toBe(0o600);
  });

  it("writes the configs setup dev names, with the contract's keys and paths that exist", () => {
    const files = readdirSync(dir)
      .filter((f) => f.endsWith(".conf"))
      .sort();
    expect(files).toEqual([
      "broker.conf",
      "client-bob.conf",
      "client.conf",
      "emulator.conf",
      "privileged.conf",
      "server-node1.mcollective.conf",
      "server-node2.mcollective.conf",
    ]);
    const cn = (file: string) =>
      new X509Certificate(readFileSync(confPath(file, "plugin.security.file.certificate"))).subject.slice(3);
    for (const f of files) {
      const file = join(dir, f);
      expect(confValue(file, "plugin.security.provider"), f).toBe("file");
      for (const k of FILE_KEYS) expect(existsSync(confPath(file, k)), `${f}: ${k}`).toBe(true);
      expect(confPath(file, "plugin.security.file.ca")).toBe(join(dir, "tls", "ca.pem"));
      // nothing of the v2 provider: a v1 part proves itself with its certificate alone
      expect(readFileSync(file, "utf8")).not.toMatch(/plugin\.security\.(choria|issuer)\./);
      // identity is the certificate's name (a v1 node's must be; a client's caller id is made from it)
      expect(confValue(file, "identity"), f).toBe(cn(file));
    }
    const broker = join(dir, "broker.conf");
    expect(confValue(broker, "plugin.choria.network.client_port")).toBe("14777");
    expect(confValue(broker, "plugin.choria.network.listen_address")).toBe("127.0.0.1");
    expect(confValue(broker, "plugin.choria.network.nats_trust_file")).toBeUndefined();
    for (const f of files.filter((x) => x !== "broker.conf")) {
      const file = join(dir, f);
      expect(confValue(file, "plugin.choria.middleware_hosts"), f).toBe("tls://127.0.0.1:14777");
      expect(confValue(file, "main_collective")).toBe("mcollective");
    }
    for (const f of ["server-node1.mcollective.conf", "server-node2.mcollective.conf", "emulator.conf"]) {
      const file = join(dir, f);
      expect(confValue(file, "plugin.choria.security.certname_whitelist")).toBe(
        DEFAULT_CERTNAME_ALLOW_LIST.join(","),
      );
      expect(confValue(file, "plugin.choria.security.privileged_users")).toBe(
        DEFAULT_PRIVILEGED_USERS.join(","),
      );
    }
    // and Chorus' own readers take them as the file provider on protocol v1
    const b = brokerSettings(loadConfig(broker));
    expect([b.securityProvider, b.certFile, b.caFile]).toEqual([
      "file",
      join(dir, "tls", "broker.pem"),
      join(dir, "tls", "ca.pem"),
    ]);
    const c = clientSettings(loadConfig(join(dir, "client.conf")));
    expect([c.securityProvider, c.protocols, c.x509?.certFile]).toEqual([
      "file",
      [1],
      join(dir, "tls", "alice.mcollective.pem"),
    ]);
    for (const f of ["server-node1.mcollective.conf", "emulator.conf"]) {
      const s = serverSettings(loadConfig(join(dir, f)));
      expect(s.protocols).toEqual([1]);
      expect(s.x509?.allowList).toEqual([...DEFAULT_CERTNAME_ALLOW_LIST]);
      expect(s.x509?.privilegedUsers).toEqual([...DEFAULT_PRIVILEGED_USERS]);
    }
    expect(cn(join(dir, "client.conf"))).toBe("alice.mcollective");
    expect(cn(join(dir, "privileged.conf"))).toMatch(/\.privileged\.mcollective$/);
    expect(existsSync(confPath(join(dir, "server-node1.mcollective.conf"), "plugin.yaml"))).toBe(true);
  });

  it("the certificates do mutual TLS with a real nats-server: a client from the CA is in, others are not", async () => {
    const tls = join(dir, "tls");
    const nats = await startNats(
      [
        "tls {",
        `  cert_file: "${tls}/broker.pem"`,
        `  key_file: "${tls}/broker.key"`,
        `  ca_file: "${tls}/ca.pem"`,
        "  verify: true",
        "}",
      ].join("\n"),
    );
    const foreign = mkdtempSync(join(tmpdir(), "chorus-x509-foreign-"));
    try {
      const url = `tls://127.0.0.1:${nats.port}`;
      const base = { servers: [url], caFile: join(tls, "ca.pem"), reconnect: false, timeoutMs: 5000 };
      for (const who of ["alice.mcollective", "node1.mcollective", "emulator.mcollective", "broker"]) {
        const nc = await connectNats({
          ...base,
          name: who,
          certFile: join(tls, `${who}.pem`),
          keyFile: join(tls, `${who}.key`),
        });
        await nc.flush();
        await closeNats(nc);
      }
      // a certificate from another CA, with an allowed name, and no certificate at all
      const other = await createCA("Another CA", 1);
      const mallory = await issueCert(other, "mallory.mcollective", {}, 1, "client");
      writeFileSync(join(foreign, "m.pem"), mallory.certPem);
      writeFileSync(join(foreign, "m.key"), mallory.keyPem, { mode: 0o600 });
      await expect(
        connectNats({
          ...base,
          name: "mallory",
          certFile: join(foreign, "m.pem"),
          keyFile: join(foreign, "m.key"),
        }).then((nc) => nc.flush().finally(() => closeNats(nc))),
      ).rejects.toThrow();
      await expect(
        connectNats({ ...base, name: "anonymous" }).then((nc) => nc.flush().finally(() => closeNats(nc))),
      ).rejects.toThrow();
    } finally {
      rmSync(foreign, { recursive: true, force: true });
      await nats.stop();
    }
  }, 30_000);
});

describe("chorus setup dev --security: bad input and the default", () => {
  let root: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), "chorus-x509-bad-"));
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it("refuses an unknown --security value, naming the choices, and writes nothing", () => {
    const dir = join(root, "unknown");
    const r = chorus(["setup", "dev", "--security", "puppet", "--dir", dir]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^chorus setup dev: .*'puppet'.*choria, x509/);
    expect(existsSync(dir)).toBe(false);
  });

  it("refuses flags x509 cannot honour, and names that nodes would refuse, before writing anything", () => {
    const dir = join(root, "flags");
    for (const [args, why] of [
      [["--aaa"], /--security x509 does not take --aaa/],
      [["--brokers", "3"], /does not take --brokers/],
      [["--caller", "choria=me"], /does not take --caller .*use --user/],
      [
        ["--server", "web1.example.net"],
        /server identity "web1.example.net" does not match plugin\.choria\.security\.certname_whitelist/,
      ],
      [["--user", "bad name"], /user "bad name" is not a usable name/],
    ] as const) {
      const r = chorus(["setup", "dev", "--security", "x509", "--dir", dir, ...args]);
      expect(r.status, args.join(" ")).toBe(1);
      expect(r.stderr).toMatch(why);
      expect(r.stderr.split("\n").filter(Boolean)).toHaveLength(1);
      expect(existsSync(dir)).toBe(false);
    }
    const r = chorus(["setup", "dev", "--user", "alice", "--dir", dir]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/--user needs --security x509/);
  });

  it("keeps a non-empty directory unless --force, then replaces its own CA", () => {
    const dir = join(root, "busy");
    mkdirSync(dir);
    writeFileSync(join(dir, "keep.txt"), "mine\n");
    const refused = chorus(["setup", "dev", "--security", "x509", "--dir", dir]);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/is not empty: choose another --dir or pass --force/);
    expect(readdirSync(dir)).toEqual(["keep.txt"]);

    const first = chorus(["setup", "dev", "--security", "x509", "--dir", dir, "--force"], {}, 60_000);
    expect(first.stderr).toBe("");
    expect(first.status).toBe(0);
    const ca1 = readFileSync(join(dir, "tls", "ca.pem"), "utf8");
    // a second --force run makes a new CA over the old one, and everything agrees with it
    const second = chorus(["setup", "dev", "--security", "x509", "--dir", dir, "--force"], {}, 60_000);
    expect(second.stderr).toBe("");
    expect(second.status).toBe(0);
    const ca2 = readFileSync(join(dir, "tls", "ca.pem"), "utf8");
    expect(ca2).not.toBe(ca1);
    const inter = new X509Certificate(ca2);
    expect(new X509Certificate(readFileSync(join(dir, "tls", "broker.pem"))).verify(inter.publicKey)).toBe(
      true,
    );
    expect(readFileSync(join(dir, "ca", "chain.pem"), "utf8")).toBe(ca2);
    expect(readFileSync(join(dir, "keep.txt"), "utf8")).toBe("mine\n");
  }, 130_000);

  it("without --security (or with choria) it is today's v2 setup", () => {
    const dir = join(root, "v2");
    const r = chorus(["setup", "dev", "--dir", dir, "--security", "choria"], {}, 60_000);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`dev setup written to ${dir}`);
    expect(r.stdout).not.toContain("x509 (protocol v1)");
    expect(confValue(join(dir, "client.conf"), "plugin.security.provider")).toBe("choria");
    expect(existsSync(join(dir, "credentials", "client.seed"))).toBe(true);
    expect(existsSync(join(dir, "server-node1.example.net.conf"))).toBe(true);
    expect(existsSync(join(dir, "ca"))).toBe(false);
  }, 70_000);
});

describe("makeX509Fleet (the embeddable API)", () => {
  it("returns every path, takes its own rules, and refuses a privileged name outside them", async () => {
    const dir = mkdtempSync(join(tmpdir(), "chorus-x509-api-"));
    try {
      await expect(makeX509Fleet({ dir: join(dir, "a"), privileged: "aaa.mcollective" })).rejects.toThrow(
        /privileged name "aaa.mcollective" does not match plugin\.choria\.security\.privileged_users/,
      );
      await expect(makeX509Fleet({ dir: join(dir, "a"), nodes: [] })).rejects.toBeInstanceOf(SetupError);
      await expect(makeX509Fleet({ dir: join(dir, "a"), nodes: ["emulator.mcollective"] })).rejects.toThrow(
        /"emulator.mcollective" is used twice/,
      );
      await expect(
        makeX509Fleet({ dir: join(dir, "a"), nodes: ["bob.mcollective"], users: ["bob"] }),
      ).rejects.toThrow(/"bob.mcollective" is used twice/);
      expect(existsSync(join(dir, "a"))).toBe(false);
      await expect(makeX509Fleet({ dir: join(dir, "a"), allowList: ["("] })).rejects.toThrow(
        /does not compile/,
      );

      const f = await makeX509Fleet({
        dir: join(dir, "b"),
        collective: "lab",
        nodes: ["db1.lab.choria"],
        users: ["carol"],
        privileged: "signer.privileged.choria",
        allowList: ["\\.choria$", "\\.mcollective$"],
        brokerPort: await freePort(),
        streams: false,
      });
      expect(f.collective).toBe("lab");
      expect(f.brokerUrl).toMatch(/^tls:\/\/127\.0\.0\.1:\d+$/);
      expect(f.clients.carol?.callerId).toBe("choria=carol.mcollective");
      expect(f.clientConfig).toBe(f.clients.carol?.config);
      expect(f.privileged.callerId).toBe("choria=signer.privileged.choria");
      expect(f.servers["db1.lab.choria"]?.config).toBe(f.serverConfigs["db1.lab.choria"]);
      for (const p of [
        f.caFile,
        f.brokerConfig,
        f.clientConfig,
        f.emulatorConfig,
        f.privileged.config,
        ...Object.values(f.serverConfigs),
        ...[
          f.broker,
          f.emulator,
          f.privileged,
          ...Object.values(f.servers),
          ...Object.values(f.clients),
        ].flatMap((c) => [c.certFile, c.keyFile]),
      ])
        expect(existsSync(p), p).toBe(true);
      expect(confValue(f.brokerConfig, "plugin.choria.network.stream.store")).toBeUndefined();
      expect(
        confValue(f.serverConfigs["db1.lab.choria"] as string, "plugin.choria.security.certname_whitelist"),
      ).toBe("\\.choria$,\\.mcollective$");
      // the keys a mixed-fleet client adds to its v2 config, relative to that config's directory
      expect(fileSecurityKeys(f.clients.carol!, f.caFile, join(f.dir, "sub"))).toEqual({
        "plugin.security.file.certificate": "../tls/carol.mcollective.pem",
        "plugin.security.file.key": "../tls/carol.mcollective.key",
        "plugin.security.file.ca": "../tls/ca.pem",
      });

      // broker.conf is what `chorus broker run` takes: a pure v1 broker, certificate required
      const broker = new BrokerSupervisor({
        settings: brokerSettings(loadConfig(f.brokerConfig)),
        logger: () => undefined,
      });
      await broker.start();
      try {
        const base = { servers: [f.brokerUrl], caFile: f.caFile, reconnect: false, timeoutMs: 5000 };
        const carol = f.clients.carol!;
        const nc = await connectNats({
          ...base,
          name: "carol",
          certFile: carol.certFile,
          keyFile: carol.keyFile,
        });
        await nc.flush();
        await closeNats(nc);
        await expect(
          connectNats({ ...base, name: "anonymous" }).then((c) => c.flush().finally(() => closeNats(c))),
        ).rejects.toThrow();
      } finally {
        await broker.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
