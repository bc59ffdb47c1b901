// The deployment files under deploy/: the systemd units (parsed and checked key by key,
// then by systemd-analyze where it is installed), the Dockerfile, .dockerignore and the
// compose example (checked statically; no image is built and nothing is started here).
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import { afterAll, describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const UNITS = join(ROOT, "deploy/systemd");
const DOCKER = join(ROOT, "deploy/docker");

interface Daemon {
  name: string;
  config: string;
  /** the least TimeoutStopSec that covers the daemon's own clean stop, in seconds */
  minStopSec: number;
  /** runs as root (the server: its agents manage the host) */
  root?: boolean;
  /** reloads on SIGHUP; the other daemons log that they do not and run on */
  reload?: boolean;
  /** keeps no state: no StateDirectory */
  stateless?: boolean;
  killMode?: string;
}

const DAEMONS: Daemon[] = [
  // the supervisor gives nats-server 10 s after SIGTERM before SIGKILL
  { name: "broker", config: "broker.conf", minStopSec: 20, reload: true, killMode: "mixed" },
  // running actions finish within their DDL timeouts
  { name: "server", config: "server.conf", minStopSec: 60, root: true, reload: true, killMode: "process" },
  { name: "aaa", config: "aaa.json", minStopSec: 15 },
  // nodes in progress get 30 s to finish
  { name: "provisioner", config: "provisioner.yaml", minStopSec: 40 },
  // copy lanes stop within 5 s
  { name: "replicator", config: "replicator.yaml", minStopSec: 15 },
  { name: "receiver", config: "receiver.yaml", minStopSec: 15 },
  { name: "federation", config: "federation.yaml", minStopSec: 15, stateless: true },
];

/** section → key → every value assigned, in order (repeated keys accumulate, as in systemd). */
type Unit = Map<string, Map<string, string[]>>;

/** A unit file as systemd reads it: sections, `key=value`, comments, backslash continuations. */
function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: Map<string, string[]> | undefined;
  let pending = "";
  for (const raw of text.split("\n")) {
    const line = pending + raw.trim();
    pending = "";
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    if (line.endsWith("\\")) {
      pending = `${line.slice(0, -1)} `;
      continue;
    }
    const header = /^\[([^\]]+)\]$/.exec(line);
    if (header) {
      const name = header[1] as string;
      section = unit.get(name) ?? new Map<string, string[]>();
      unit.set(name, section);
      continue;
    }
    const eq = line.indexOf("=");
    if (!section || eq < 0) throw new Error(`not a unit file line: ${line}`);
    const key = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim();
    section.set(key, [...(section.get(key) ?? []), value]);
  }
  return unit;
}

function values(unit: Unit, section: string, key: string): string[] | undefined {
  return unit.get(section)?.get(key);
}

/** The one value of a key set once (undefined when unset). */
function one(unit: Unit, section: string, key: string): string | undefined {
  const v = values(unit, section, key);
  if (v === undefined) return undefined;
  expect(v, `${section}/${key} is set once`).toHaveLength(1);
  return v[0];
}

/** The space-separated words of every assignment of a list setting. */
function words(unit: Unit, section: string, key: string): string[] {
  return (values(unit, section, key) ?? []).flatMap((v) => v.split(/\s+/).filter(Boolean));
}

/** systemd time spans as these units write them: 30s, 2min, 1min 30s, or bare seconds. */
function seconds(span: string | undefined): number {
  if (span === undefined) return NaN;
  let total = 0;
  for (const part of span.split(/\s+/)) {
    const m = /^(\d+)(s|sec|min|m)?$/.exec(part);
    if (!m) return NaN;
    total += Number(m[1]) * (m[2] === "min" || m[2] === "m" ? 60 : 1);
  }
  return total;
}

const unitFile = (d: Daemon) => join(UNITS, `chorus-${d.name}.service`);
const loadUnit = (d: Daemon) => parseUnit(readFileSync(unitFile(d), "utf8"));

/** The sandbox every unit but chorus-server has, key by key. */
const SANDBOX: Record<string, string> = {
  ProtectSystem: "strict",
  ProtectHome: "yes",
  PrivateTmp: "yes",
  PrivateDevices: "yes",
  NoNewPrivileges: "yes",
  ProtectKernelTunables: "yes",
  ProtectKernelModules: "yes",
  ProtectKernelLogs: "yes",
  ProtectControlGroups: "yes",
  RestrictNamespaces: "yes",
  RestrictSUIDSGID: "yes",
  LockPersonality: "yes",
  RestrictRealtime: "yes",
  SystemCallArchitectures: "native",
};

/** Settings whose every form would get in the way of a host-managing agent (see the unit's comment). */
const NOT_ON_SERVER = [
  "ProtectSystem",
  "ProtectHome",
  "ReadWritePaths",
  "PrivateTmp",
  "PrivateDevices",
  "NoNewPrivileges",
  "ProtectKernelTunables",
  "ProtectKernelModules",
  "ProtectKernelLogs",
  "ProtectControlGroups",
  "ProtectHostname",
  "ProtectClock",
  "CapabilityBoundingSet",
  "RestrictAddressFamilies",
  "RestrictSUIDSGID",
  "RestrictNamespaces",
];

describe("systemd units (static)", () => {
  it("has one unit per daemon and nothing else", () => {
    const found = readdirSync(UNITS)
      .filter((f) => f.endsWith(".service"))
      .sort();
    expect(found).toEqual(DAEMONS.map((d) => `chorus-${d.name}.service`).sort());
  });

  for (const d of DAEMONS) {
    describe(`chorus-${d.name}.service`, () => {
      const u = loadUnit(d);

      it(`starts \`chorus ${d.name} run\` with /etc/chorus/${d.config}`, () => {
        expect(one(u, "Service", "ExecStart")).toBe(
          `/usr/bin/chorus ${d.name} run --config /etc/chorus/${d.config}`,
        );
        expect(one(u, "Service", "Type")).toBe("exec");
      });

      it("starts after the network is online and is wanted by multi-user.target", () => {
        expect(words(u, "Unit", "Wants")).toContain("network-online.target");
        expect(words(u, "Unit", "After")).toContain("network-online.target");
        expect(one(u, "Install", "WantedBy")).toBe("multi-user.target");
        expect(one(u, "Unit", "Description")).toBeTruthy();
      });

      it("restarts on failure and has time to stop cleanly", () => {
        expect(one(u, "Service", "Restart")).toBe("on-failure");
        expect(seconds(one(u, "Service", "RestartSec"))).toBeGreaterThan(0);
        expect(seconds(one(u, "Service", "TimeoutStopSec"))).toBeGreaterThanOrEqual(d.minStopSec);
        expect(one(u, "Service", "KillMode")).toBe(d.killMode);
      });

      it(d.reload ? "reloads with SIGHUP" : "has no ExecReload (it does not reload)", () => {
        expect(one(u, "Service", "ExecReload")).toBe(d.reload ? "/bin/kill -HUP $MAINPID" : undefined);
      });

      it("keeps its state and logs under /var/lib/chorus/<name> and /var/log/chorus/<name>", () => {
        expect(one(u, "Service", "StateDirectory")).toBe(d.stateless ? undefined : `chorus/${d.name}`);
        expect(one(u, "Service", "LogsDirectory")).toBe(`chorus/${d.name}`);
      });

      it("keeps the restrictions that cost nothing even to a host-managing process", () => {
        expect(one(u, "Service", "LockPersonality")).toBe("yes");
        expect(one(u, "Service", "RestrictRealtime")).toBe("yes");
        expect(one(u, "Service", "SystemCallArchitectures")).toBe("native");
        // V8 compiles to writable code pages: MemoryDenyWriteExecute would kill node
        expect(values(u, "Service", "MemoryDenyWriteExecute")).toBeUndefined();
      });

      if (d.root) {
        it("runs as root with a sandbox that leaves host management possible, and says why", () => {
          expect(one(u, "Service", "User")).toBe("root");
          for (const key of NOT_ON_SERVER) expect(values(u, "Service", key), key).toBeUndefined();
          const text = readFileSync(unitFile(d), "utf8");
          expect(text).toMatch(/manage the host/);
          expect(text).toMatch(/mount/);
        });
      } else {
        it("runs as the dedicated user chorus", () => {
          expect(one(u, "Service", "User")).toBe("chorus");
          expect(one(u, "Service", "Group")).toBe("chorus");
          expect(values(u, "Service", "DynamicUser")).toBeUndefined();
        });

        it("is sandboxed: read-only system, no home, private /tmp, no privileges", () => {
          for (const [key, want] of Object.entries(SANDBOX)) expect(one(u, "Service", key), key).toBe(want);
        });

        it("may write only its state and log directories", () => {
          const want = [`/var/log/chorus/${d.name}`, ...(d.stateless ? [] : [`/var/lib/chorus/${d.name}`])];
          expect(words(u, "Service", "ReadWritePaths").sort()).toEqual(want.sort());
          expect(values(u, "Service", "ReadOnlyPaths")).toBeUndefined();
        });

        it("has no capabilities and only Unix and IP sockets", () => {
          expect(values(u, "Service", "CapabilityBoundingSet")).toEqual([""]);
          expect(values(u, "Service", "AmbientCapabilities")).toEqual([""]);
          expect(words(u, "Service", "RestrictAddressFamilies").sort()).toEqual([
            "AF_INET",
            "AF_INET6",
            "AF_UNIX",
          ]);
        });
      }
    });
  }

  it("gives the broker's runtime files a directory that `chorus broker status` can find", () => {
    const u = loadUnit(DAEMONS[0] as Daemon);
    expect(one(u, "Service", "RuntimeDirectory")).toBe("chorus/broker");
    // 50 000 connections by default: nats-server needs a descriptor each
    expect(Number(one(u, "Service", "LimitNOFILE"))).toBeGreaterThanOrEqual(50_000);
  });
});

/** `which`, as the shell finds a command; "" when it is not on PATH. */
function which(cmd: string): string {
  const r = spawnSync("which", [cmd], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : "";
}

const systemdAnalyze = which("systemd-analyze");
const hasSystemdAnalyze = systemdAnalyze !== "";

/** systemd's version number (252 from "systemd 252 (252.38-1~deb12u1)"), 0 if unknown. */
function systemdVersion(): number {
  if (!hasSystemdAnalyze) return 0;
  const out = spawnSync(systemdAnalyze, ["--version"], { encoding: "utf8" }).stdout;
  return Number(/^systemd (\d+)/m.exec(out)?.[1] ?? 0);
}

// CI machines may lack systemd-analyze; the static checks above run everywhere.
describe.skipIf(!hasSystemdAnalyze)("systemd units (systemd-analyze)", () => {
  const dir = mkdtempSync(join(tmpdir(), "chorus-units-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /**
   * A copy of the unit with /usr/bin/chorus (not installed here) replaced by node, the
   * arguments kept: verify checks that every Exec*= binary exists.
   */
  function testCopy(d: Daemon): string {
    const text = readFileSync(unitFile(d), "utf8").replaceAll("/usr/bin/chorus ", `${process.execPath} `);
    expect(text).toContain(`ExecStart=${process.execPath} ${d.name} run`);
    const file = join(dir, `chorus-${d.name}.service`);
    writeFileSync(file, text);
    return file;
  }

  for (const d of DAEMONS) {
    it(`chorus-${d.name}.service passes systemd-analyze verify`, () => {
      const r = spawnSync(systemdAnalyze, ["verify", testCopy(d)], { encoding: "utf8" });
      const output = `${r.stdout}${r.stderr}`;
      expect(output).not.toMatch(/unknown|failed|ignoring|invalid|not executable|bad/i);
      expect(r.status, output).toBe(0);
    });
  }

  // --offline (analyse a unit file without loading it into a running manager) came in systemd 250.
  const offline = systemdVersion() >= 250;

  it.skipIf(!offline)(
    "systemd-analyze security --offline: exposure below 5.0 for every unit but chorus-server",
    () => {
      const exposure = (file: string): number => {
        const r = spawnSync(systemdAnalyze, ["security", "--offline=true", file], { encoding: "utf8" });
        const m = /Overall exposure level for \S+: (\d+(?:\.\d+)?)/.exec(r.stdout);
        expect(m, `${r.stdout}${r.stderr}`).not.toBeNull();
        return Number(m?.[1]);
      };
      const scores: Record<string, number> = {};
      for (const d of DAEMONS) scores[`chorus-${d.name}`] = exposure(testCopy(d));
      // a root service with no sandbox at all, for comparison
      const bare = join(dir, "bare.service");
      writeFileSync(bare, `[Service]\nExecStart=${process.execPath} -e 0\n`);
      const bareScore = exposure(bare);
      console.log("systemd-analyze security exposure:", { ...scores, "bare root unit": bareScore });
      for (const d of DAEMONS) {
        const score = scores[`chorus-${d.name}`] as number;
        if (d.root) expect(score, "chorus-server is still better than no sandbox").toBeLessThan(bareScore);
        else expect(score, `chorus-${d.name}`).toBeLessThan(5.0);
      }
    },
  );
});

/** Dockerfile instructions with continuation lines joined and comments dropped. */
function dockerInstructions(text: string): { op: string; args: string }[] {
  const out: { op: string; args: string }[] = [];
  let acc = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line.startsWith("#") || (line === "" && acc === "")) continue;
    if (line.endsWith("\\")) {
      acc += `${line.slice(0, -1).trim()} `;
      continue;
    }
    const full = (acc + line).trim();
    acc = "";
    if (full === "") continue;
    const m = /^(\S+)\s*(.*)$/.exec(full) as RegExpExecArray;
    out.push({ op: (m[1] as string).toUpperCase(), args: m[2] as string });
  }
  return out;
}

describe("container image (static)", () => {
  const dockerfile = readFileSync(join(DOCKER, "Dockerfile"), "utf8");
  const all = dockerInstructions(dockerfile);
  const lastFrom = all.map((i) => i.op).lastIndexOf("FROM");
  const final = all.slice(lastFrom);
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
    files: string[];
    engines: { node: string };
  };

  it("is built on node:20-bookworm-slim (Node 20 on Debian 12) in every stage", () => {
    const froms = all.filter((i) => i.op === "FROM").map((i) => i.args.split(/\s+/)[0]);
    expect(froms.length).toBeGreaterThan(0);
    for (const f of froms) expect(f).toBe("node:20-bookworm-slim");
    expect(pkg.engines.node).toMatch(/^>=20/);
  });

  it("installs Debian's nats-server with apt, without recommends, and cleans the lists", () => {
    const install = final.find((i) => i.op === "RUN" && /apt-get install .*nats-server/.test(i.args));
    expect(install, "a RUN that installs nats-server in the final stage").toBeDefined();
    expect(install?.args).toMatch(/apt-get update/);
    expect(install?.args).toMatch(/--no-install-recommends/);
    expect(install?.args).toMatch(/-y\b/);
    expect(install?.args).toMatch(/rm -rf \/var\/lib\/apt\/lists\/\*/);
  });

  it("installs production dependencies with npm ci --omit=dev", () => {
    expect(all.some((i) => i.op === "RUN" && /npm ci --omit=dev/.test(i.args))).toBe(true);
  });

  it("copies the whole published package (package.json files) plus package.json and the lockfile", () => {
    const copied = final
      .filter((i) => i.op === "COPY" && !i.args.startsWith("--from"))
      .flatMap((i) => {
        const parts = i.args.split(/\s+/).filter((p) => !p.startsWith("--"));
        return parts.slice(0, -1);
      });
    for (const f of ["package.json", "package-lock.json", ...pkg.files]) expect(copied).toContain(f);
    expect(final.some((i) => i.op === "COPY" && /--from=deps \S*node_modules/.test(i.args))).toBe(true);
  });

  it("runs as the non-root user chorus", () => {
    const users = final.filter((i) => i.op === "USER").map((i) => i.args.trim());
    expect(users.length).toBeGreaterThan(0);
    const user = users[users.length - 1] as string;
    expect(user).toBe("chorus");
    expect(["root", "0", "0:0"]).not.toContain(user);
    expect(final.some((i) => i.op === "RUN" && /useradd .*chorus/.test(i.args))).toBe(true);
  });

  it("has chorus as its entrypoint through /usr/bin/chorus", () => {
    const entry = final.filter((i) => i.op === "ENTRYPOINT");
    expect(entry).toHaveLength(1);
    expect(JSON.parse((entry[0] as { args: string }).args)).toEqual(["chorus"]);
    expect(
      final.some((i) => i.op === "RUN" && /ln -s \S*bin\/chorus\.js \/usr\/bin\/chorus/.test(i.args)),
    ).toBe(true);
  });

  it("checks the broker's health and keeps config and state on volumes", () => {
    const hc = final.filter((i) => i.op === "HEALTHCHECK");
    expect(hc).toHaveLength(1);
    expect(hc[0]?.args).toMatch(
      /CMD \["chorus", "broker", "status", "--config", "\/etc\/chorus\/broker\.conf"\]/,
    );
    const volumes = final.filter((i) => i.op === "VOLUME").flatMap((i) => JSON.parse(i.args) as string[]);
    expect(volumes.sort()).toEqual(["/etc/chorus", "/var/lib/chorus"]);
  });

  it(".dockerignore keeps everything but the built package out of the build context", () => {
    const file = join(ROOT, ".dockerignore");
    expect(existsSync(file)).toBe(true);
    const patterns = readFileSync(file, "utf8")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "" && !l.startsWith("#"));
    // everything out first (node_modules, .git, src, test, ...), then the package back in
    expect(patterns[0]).toBe("*");
    for (const f of ["package.json", "package-lock.json", ...pkg.files])
      expect(patterns.some((p) => p === `!${f}` || p === `!${f}/`)).toBe(true);
    expect(patterns.some((p) => /^!(node_modules|\.git|src|test)\b/.test(p))).toBe(false);
  });

  it("compose.yaml describes one cell on a user-defined network", () => {
    interface Service {
      command: string[];
      volumes: string[];
      networks: string[];
      healthcheck?: unknown;
      depends_on?: Record<string, { condition: string }>;
    }
    const doc = parseYaml(readFileSync(join(DOCKER, "compose.yaml"), "utf8"), { merge: true }) as {
      services: Record<string, Service>;
      networks: Record<string, { driver: string }>;
    };
    const want: Record<string, string> = {
      broker: "broker.conf",
      aaa: "aaa.json",
      provisioner: "provisioner.yaml",
      replicator: "replicator.yaml",
    };
    expect(Object.keys(doc.services).sort()).toEqual(Object.keys(want).sort());
    expect(doc.networks.cell?.driver).toBe("bridge");
    for (const [name, config] of Object.entries(want)) {
      const s = doc.services[name] as Service;
      expect(s.command, name).toEqual([name, "run", "--config", `/etc/chorus/${config}`]);
      expect(s.volumes, name).toContain("./etc:/etc/chorus:ro");
      expect(
        s.volumes.some((v) => v.endsWith(":/var/lib/chorus")),
        name,
      ).toBe(true);
      expect(s.networks, name).toEqual(["cell"]);
      // the image's healthcheck is the broker's: the others bring their own
      if (name === "broker") expect(s.healthcheck).toBeUndefined();
      else {
        expect(s.healthcheck, name).toBeDefined();
        expect(s.depends_on?.broker?.condition, name).toBe("service_healthy");
      }
    }
  });
});
