import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  ConfigError,
  brokerSettings,
  clientSettings,
  loadConfig,
  parseConfig,
  parseDuration,
  serverSettings,
} from "../../../src/core/config/index.js";

const PUB = "a".repeat(64);

function base(extra = ""): string {
  return [
    "plugin.security.choria.seed_file = /etc/chorus/seed",
    "plugin.security.choria.token_file = /etc/chorus/token",
    "plugin.security.issuer.names = choria",
    `plugin.security.issuer.choria.public = ${PUB}`,
    extra,
  ].join("\n");
}

function errorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

describe("parseConfig", () => {
  it("skips comments and blank lines, trims, later keys override", () => {
    const cfg = parseConfig(
      [
        "# comment",
        "; also a comment",
        "",
        "  identity =  node1  ",
        "a=1",
        "   # indented comment",
        "a = 2",
        "url = x=y",
      ].join("\n"),
      "f.cfg",
    );
    expect(cfg.get("identity")).toBe("node1");
    expect(cfg.get("a")).toBe("2");
    expect(cfg.line("a")).toBe(7);
    expect(cfg.get("url")).toBe("x=y");
    expect(cfg.keys().sort()).toEqual(["a", "identity", "url"]);
    expect(cfg.has("missing")).toBe(false);
    expect(cfg.file).toBe("f.cfg");
  });

  it("keeps unknown keys and empty values", () => {
    const cfg = parseConfig("plugin.something.odd = hello\nempty =\n", "f");
    expect(cfg.get("plugin.something.odd")).toBe("hello");
    expect(cfg.get("empty")).toBe("");
    expect(cfg.string("empty", "d")).toBe("d");
  });

  it("rejects a line without '=' naming file and line", () => {
    const err = errorOf(() => parseConfig("a = 1\n\nnot a setting\n", "x.cfg"));
    expect(err.message).toMatch(/^x\.cfg:3: expected "key = value"/);
    expect(err.line).toBe(3);
    expect(err.code).toBe("config");
  });

  it("handles CRLF line endings", () => {
    expect(parseConfig("a = 1\r\nb = 2\r\n", "f").get("a")).toBe("1");
  });
});

describe("typed accessors", () => {
  const cfg = parseConfig(
    [
      "i = 42",
      "neg = -3",
      "bad_int = 4x",
      "l = a, b ,,c",
      "d1 = 2s",
      "d2 = 500ms",
      "d3 = 1m30s",
      "d4 = 5",
      "d5 = soon",
      "b_bad = maybe",
    ].join("\n"),
    "t.cfg",
  );

  it("int", () => {
    expect(cfg.int("i")).toBe(42);
    expect(cfg.int("neg")).toBe(-3);
    expect(cfg.int("nope", 7)).toBe(7);
    expect(errorOf(() => cfg.int("bad_int")).message).toBe('t.cfg:3: bad_int: "4x" is not an integer');
    expect(errorOf(() => cfg.int("nope")).message).toBe("t.cfg: nope is required");
  });

  it("list", () => {
    expect(cfg.list("l")).toEqual(["a", "b", "c"]);
    expect(cfg.list("none", ["x"])).toEqual(["x"]);
  });

  it("duration", () => {
    expect(cfg.duration("d1")).toBe(2000);
    expect(cfg.duration("d2")).toBe(500);
    expect(cfg.duration("d3")).toBe(90_000);
    expect(cfg.duration("d4")).toBe(5000);
    expect(cfg.duration("d4", undefined, "ms")).toBe(5);
    expect(cfg.duration("none", 123)).toBe(123);
    expect(errorOf(() => cfg.duration("d5")).message).toMatch(/^t\.cfg:9: d5: "soon" is not a duration/);
    expect(parseDuration("1h")).toBe(3_600_000);
    expect(parseDuration("1.5s")).toBe(1500);
    expect(parseDuration("")).toBeUndefined();
  });

  it.each([
    ["true", true],
    ["YES", true],
    ["y", true],
    ["1", true],
    ["t", true],
    ["on", true],
    ["false", false],
    ["No", false],
    ["n", false],
    ["0", false],
    ["f", false],
    ["off", false],
  ])("bool %s", (word, want) => {
    expect(parseConfig(`k = ${word}`, "b").bool("k")).toBe(want);
  });

  it("bool errors name file and line", () => {
    const err = errorOf(() => cfg.bool("b_bad"));
    expect(err.message).toMatch(/^t\.cfg:10: b_bad: "maybe" is not a boolean/);
    expect(cfg.bool("none", true)).toBe(true);
  });
});

describe("loadConfig", () => {
  it("reads a file", () => {
    const dir = mkdtempSync(join(tmpdir(), "chorus-cfg-"));
    try {
      const f = join(dir, "server.conf");
      writeFileSync(f, "identity = n1\n");
      const cfg = loadConfig(f);
      expect(cfg.get("identity")).toBe("n1");
      expect(cfg.file).toBe(f);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("missing file is a ConfigError naming the path", () => {
    const err = errorOf(() => loadConfig("/nonexistent/chorus.conf"));
    expect(err.message).toBe("/nonexistent/chorus.conf: cannot read configuration: no such file");
  });
});

describe("serverSettings", () => {
  it("applies Choria defaults", () => {
    const s = serverSettings(parseConfig(base(), "/etc/chorus/server.conf"));
    expect(s.identity).toBe(hostname());
    expect(s.collectives).toEqual(["mcollective"]);
    expect(s.mainCollective).toBe("mcollective");
    expect(s.discoveryTimeoutMs).toBe(2000);
    expect(s.windowedTimeoutMs).toBe(300);
    expect(s.rpcAuthorization).toBe(true);
    expect(s.rpcAuthProvider).toBe("action_policy");
    expect(s.securityProvider).toBe("choria");
    expect(s.natsJwtFile).toBe("/etc/chorus/token.nats");
    expect(s.issuers).toEqual([PUB]);
    expect(s.middlewareHosts).toEqual(["nats://127.0.0.1:4222"]);
    expect(s.statsPort).toBeUndefined();
    expect(s.factsFiles).toEqual([]);
    expect(s.libdir).toEqual([]);
    expect(s.logLevel).toBe("info");
    expect(s.configDir).toBe("/etc/chorus");
  });

  it("reads explicit values", () => {
    const s = serverSettings(
      parseConfig(
        base(
          [
            "identity = web1.example.net",
            "collectives = alpha, beta",
            "main_collective = beta",
            "plugin.choria.middleware_hosts = b1:4222, tls://b2:4222",
            "plugin.choria.stats_port = 8222",
            "plugin.yaml = facts.yaml:/etc/other.yaml",
            "classesfile = classes.txt",
            "libdir = /usr/share/chorus",
            "discovery_timeout = 5",
            "plugin.choria.discovery.broadcast.windowed_timeout = 1s",
            "rpcauthorization = no",
            "plugin.security.choria.nats_jwt_file = /x/nats.jwt",
            "plugin.security.choria.ca = ca.pem",
            "loglevel = warning",
          ].join("\n"),
        ),
        "/etc/chorus/server.conf",
      ),
    );
    expect(s.identity).toBe("web1.example.net");
    expect(s.collectives).toEqual(["alpha", "beta"]);
    expect(s.mainCollective).toBe("beta");
    expect(s.middlewareHosts).toEqual(["nats://b1:4222", "tls://b2:4222"]);
    expect(s.statsPort).toBe(8222);
    expect(s.factsFiles).toEqual(["/etc/chorus/facts.yaml", "/etc/other.yaml"]);
    expect(s.classesFile).toBe("/etc/chorus/classes.txt");
    expect(s.libdir).toEqual(["/usr/share/chorus"]);
    expect(s.discoveryTimeoutMs).toBe(5000);
    expect(s.windowedTimeoutMs).toBe(1000);
    expect(s.rpcAuthorization).toBe(false);
    expect(s.natsJwtFile).toBe("/x/nats.jwt");
    expect(s.caFile).toBe("/etc/chorus/ca.pem");
    expect(s.logLevel).toBe("warn");
  });

  it("main_collective defaults to the first collective", () => {
    const s = serverSettings(parseConfig(base("collectives = one,two"), "f"));
    expect(s.mainCollective).toBe("one");
  });

  it("refuses other security providers", () => {
    const err = errorOf(() =>
      serverSettings(parseConfig(base("plugin.security.provider = puppet"), "s.cfg")),
    );
    expect(err.message).toMatch(/^s\.cfg:5: plugin\.security\.provider "puppet" is not supported/);
  });

  it("refuses a main_collective outside collectives", () => {
    const err = errorOf(() =>
      serverSettings(parseConfig(base("collectives = a\nmain_collective = b"), "s.cfg")),
    );
    expect(err.message).toMatch(/main_collective "b" is not one of collectives/);
  });

  it("requires a seed file and issuers", () => {
    expect(
      errorOf(() => serverSettings(parseConfig("plugin.security.choria.token_file = t", "s.cfg"))).message,
    ).toBe("s.cfg: plugin.security.choria.seed_file is required");
    const noIssuer = "plugin.security.choria.seed_file = s\nplugin.security.choria.token_file = t";
    expect(errorOf(() => serverSettings(parseConfig(noIssuer, "s.cfg"))).message).toMatch(
      /no trusted issuers/,
    );
    // clients may run without trusted issuers (they only verify replies when asked)
    expect(clientSettings(parseConfig(noIssuer, "c.cfg")).issuers).toEqual([]);
  });

  it("checks issuer keys", () => {
    const cfg = parseConfig(base("plugin.security.issuer.choria.public = nothex"), "s.cfg");
    expect(errorOf(() => serverSettings(cfg)).message).toMatch(/^s\.cfg:5: .*64 character hex/);
    const missing = parseConfig(base("plugin.security.issuer.names = choria, other"), "s.cfg");
    expect(errorOf(() => serverSettings(missing)).message).toMatch(/issuer "other" is listed/);
  });

  it("reports bad booleans with file and line", () => {
    const err = errorOf(() => serverSettings(parseConfig(base("rpcauthorization = perhaps"), "s.cfg")));
    expect(err.message).toMatch(/^s\.cfg:5: rpcauthorization: "perhaps" is not a boolean/);
  });
});

describe("clientSettings", () => {
  it("applies defaults", () => {
    const s = clientSettings(parseConfig(base(), "c.cfg"));
    expect(s.discoveryMethod).toBe("broadcast");
    expect(s.discoveryTimeoutMs).toBe(2000);
    expect(s.mainCollective).toBe("mcollective");
  });
});

describe("brokerSettings", () => {
  it("requires broker_network", () => {
    expect(errorOf(() => brokerSettings(parseConfig("", "b.cfg"))).message).toMatch(
      /plugin\.choria\.broker_network must be true/,
    );
  });

  it("defaults to loopback and Choria limits", () => {
    const s = brokerSettings(parseConfig("plugin.choria.broker_network = true", "/etc/chorus/broker.conf"));
    expect(s.listenAddress).toBe("127.0.0.1");
    expect(s.clientPort).toBe(4222);
    expect(s.peerPort).toBe(0);
    expect(s.peers).toEqual([]);
    expect(s.maxConnections).toBe(50_000);
    expect(s.writeDeadlineMs).toBe(10_000);
    expect(s.statsPort).toBeUndefined();
    expect(s.storeDir).toBeUndefined();
    expect(s.certFile).toBeUndefined();
    expect(s.monitorPort).toBe(0);
  });

  it("reads network keys", () => {
    const s = brokerSettings(
      parseConfig(
        [
          "plugin.choria.broker_network = yes",
          "plugin.choria.network.listen_address = 0.0.0.0",
          "plugin.choria.network.client_port = 14222",
          "plugin.choria.network.peer_port = 5222",
          "plugin.choria.network.peers = nats://b1:5222, b2:5222",
          "plugin.choria.network.system.user = system",
          "plugin.choria.network.system.password = s3cret",
          "plugin.choria.network.stream.store = streams",
          "plugin.choria.stats_port = 8222",
          "plugin.security.choria.certificate = broker.pem",
          "plugin.security.choria.key = broker.key",
          "plugin.security.choria.ca = ca.pem",
          "plugin.choria.network.nats_trust_file = nats-trust.json",
          "plugin.choria.network.nats_server = nats-server",
          "plugin.choria.network.write_deadline = 5s",
        ].join("\n"),
        "/etc/chorus/broker.conf",
      ),
    );
    expect(s.listenAddress).toBe("0.0.0.0");
    expect(s.clientPort).toBe(14222);
    expect(s.peerPort).toBe(5222);
    expect(s.peers).toEqual(["nats://b1:5222", "nats://b2:5222"]);
    expect(s.systemUser).toBe("system");
    expect(s.systemPassword).toBe("s3cret");
    expect(s.storeDir).toBe("/etc/chorus/streams");
    expect(s.statsPort).toBe(8222);
    expect(s.certFile).toBe("/etc/chorus/broker.pem");
    expect(s.keyFile).toBe("/etc/chorus/broker.key");
    expect(s.caFile).toBe("/etc/chorus/ca.pem");
    expect(s.natsTrustFile).toBe("/etc/chorus/nats-trust.json");
    expect(s.natsServerBinary).toBe("nats-server");
    expect(s.writeDeadlineMs).toBe(5000);
  });

  it("validates ports, peers and pairs", () => {
    const b = "plugin.choria.broker_network = true\n";
    expect(
      errorOf(() => brokerSettings(parseConfig(`${b}plugin.choria.network.client_port = 70000`, "b")))
        .message,
    ).toMatch(/^b:2: .*not a valid port/);
    expect(
      errorOf(() => brokerSettings(parseConfig(`${b}plugin.choria.network.peers = b1:5222`, "b"))).message,
    ).toMatch(/needs plugin\.choria\.network\.peer_port/);
    expect(
      errorOf(() =>
        brokerSettings(
          parseConfig(`${b}plugin.choria.network.peer_port=1\nplugin.choria.network.peers = http://x:1`, "b"),
        ),
      ).message,
    ).toMatch(/must use nats:\/\//);
    expect(
      errorOf(() => brokerSettings(parseConfig(`${b}plugin.security.choria.certificate = c.pem`, "b")))
        .message,
    ).toMatch(/must be set together/);
    expect(
      errorOf(() => brokerSettings(parseConfig(`${b}plugin.choria.network.system.user = s`, "b"))).message,
    ).toMatch(/must be set together/);
  });
});
