import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  machineStates,
  runMachines,
  signCommand,
  validateCommand,
  validateMachines,
} from "../../../src/apps/cli/machine.js";
import { verifyMachineSpec } from "../../../src/services/machines/index.js";
import { Emulator, emulatedIdentity } from "../../../src/apps/emulator/index.js";
import { Client } from "../../../src/client/index.js";
import { chorus, chorusAsync } from "../../helpers/cli.js";
import { startSecureFleet, type SecureFleet } from "../../helpers/fleet.js";

const quiet = pino({ level: "silent" });

// A machine that fails an exec check, remediates, and comes back: two states drawn below.
const FLAKY = `name: flaky
version: 1.0.0
initial_state: healthy
transitions:
  - name: broke
    from: [healthy]
    destination: broken
  - name: fixed
    from: [broken]
    destination: healthy
watchers:
  - name: check
    type: exec
    state_match: [healthy]
    interval: 1s
    fail_transition: broke
    properties:
      command: "test -f fixed"
  - name: fix
    type: exec
    state_match: [broken]
    interval: 1s
    success_transition: fixed
    properties:
      command: "touch fixed"
`;

const BROKEN = `name: broken
version: 1.0.0
initial_state: a1
transitions:
  - name: go
    from: [a1]
    destination: b1
watchers:
  - name: w
    type: exec
    interval: 1s
    properties:
      timeout: 3x
`;

describe("chorus machine validate and graph", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "chorus-machine-cli-"));
    mkdirSync(join(dir, "flaky"));
    writeFileSync(join(dir, "flaky", "machine.yaml"), FLAKY);
    mkdirSync(join(dir, "broken"));
    writeFileSync(join(dir, "broken", "machine.yaml"), BROKEN);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("accepts a good machine (file or its directory), exit 0", () => {
    let out = "";
    expect(validateCommand(join(dir, "flaky"), (s) => (out += s))).toBe(0);
    expect(out).toBe(
      `${join(dir, "flaky", "machine.yaml")}: flaky 1.0.0 is valid: 2 transitions, 2 watchers, initial state healthy\n`,
    );
    expect(validateCommand(join(dir, "flaky", "machine.yaml"), () => {})).toBe(0);
  });

  it("checks every machine of a store, naming the bad file and key; exit 1", () => {
    let out = "";
    let err = "";
    const code = validateCommand(
      dir,
      (s) => (out += s),
      (s) => (err += s),
    );
    expect(code).toBe(1);
    expect(out).toContain("flaky 1.0.0 is valid");
    expect(err).toContain(`${join(dir, "broken", "machine.yaml")}: watchers[0]`);
    expect(err.split("\n").filter(Boolean)).toHaveLength(1);
    const r = validateMachines(dir);
    expect(r.ok.map((x) => x.manifest.name)).toEqual(["flaky"]);
  });

  it("says what is wrong with a path that has no machine", () => {
    expect(() => validateMachines(join(dir, "nosuch"))).toThrow(/nosuch: does not exist/);
    const empty = join(dir, "empty");
    mkdirSync(empty, { recursive: true });
    expect(() => validateMachines(empty)).toThrow(/no machine.yaml/);
  });

  it("the chorus binary validates with exit codes and draws the graph as Mermaid and DOT", () => {
    const bad = chorus(["machine", "validate", dir]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain(join(dir, "broken", "machine.yaml"));
    const good = chorus(["machine", "validate", join(dir, "flaky")]);
    expect(good.status).toBe(0);
    const mermaid = chorus(["machine", "graph", join(dir, "flaky")]);
    expect(mermaid.status).toBe(0);
    expect(mermaid.stdout).toContain("stateDiagram-v2");
    expect(mermaid.stdout).toContain("[*] --> healthy");
    expect(mermaid.stdout).toContain("healthy --> broken : broke");
    const dot = chorus(["machine", "graph", "--format", "dot", join(dir, "flaky", "machine.yaml")]);
    expect(dot.status).toBe(0);
    expect(dot.stdout).toMatch(/digraph/);
    expect(dot.stdout).toMatch(/healthy.*->.*broken/);
    const refused = chorus(["machine", "graph", join(dir, "broken")]);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain("chorus machine graph:");
  });
});

describe("chorus machine sign", () => {
  it("signs a list of machines into a spec that verifies with the seed's public key only", () => {
    const dir = mkdtempSync(join(tmpdir(), "chorus-machine-sign-"));
    try {
      writeFileSync(join(dir, "key.seed"), "11".repeat(32));
      writeFileSync(join(dir, "other.seed"), "22".repeat(32));
      const list = [
        {
          name: "flaky",
          source: "https://example.net/flaky.tgz",
          checksum: "a".repeat(64),
          verify_checksum: "b".repeat(64),
        },
      ];
      writeFileSync(join(dir, "list.json"), JSON.stringify(list));
      let spec = "";
      signCommand(join(dir, "list.json"), { seed: join(dir, "key.seed") }, (s) => (spec += s));
      let pub = "";
      signCommand("", { seed: join(dir, "key.seed"), publicKey: true }, (s) => (pub += s));
      expect(pub.trim()).toMatch(/^[0-9a-f]{64}$/);
      expect(verifyMachineSpec(spec.trim(), [pub.trim()]).map((m) => m.name)).toEqual(["flaky"]);
      let other = "";
      signCommand("", { seed: join(dir, "other.seed"), publicKey: true }, (s) => (other += s));
      expect(() => verifyMachineSpec(spec.trim(), [other.trim()])).toThrow(/machine spec/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("chorus machine run", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "chorus-machine-run-"));
    mkdirSync(join(dir, "flaky"));
    writeFileSync(join(dir, "flaky", "machine.yaml"), FLAKY);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("runs the machines in this process and prints their transitions until stopped; exit 0", async () => {
    rmSync(join(dir, "flaky", "fixed"), { force: true });
    const ac = new AbortController();
    let out = "";
    let err = "";
    const done = runMachines(
      dir,
      { identity: "test.example" },
      ac.signal,
      (s) => {
        out += s;
        // broke, then fixed: the machine remediated itself
        if (out.includes("broken -> healthy")) ac.abort();
      },
      (s) => (err += s),
    );
    const timer = setTimeout(() => ac.abort(), 10_000);
    const code = await done;
    clearTimeout(timer);
    expect(code).toBe(0);
    expect(err).toContain("running 1 machine as test.example: flaky");
    expect(out).toMatch(/flaky: healthy -> broken \(broke, /);
    expect(out).toMatch(/flaky: broken -> healthy \(fixed, /);
  });

  it("runs one machine from its own directory too", async () => {
    writeFileSync(join(dir, "flaky", "fixed"), "");
    const ac = new AbortController();
    let err = "";
    const timer = setTimeout(() => ac.abort(), 300);
    const code = await runMachines(
      join(dir, "flaky"),
      {},
      ac.signal,
      () => {},
      (s) => (err += s),
    );
    clearTimeout(timer);
    expect(code).toBe(0);
    expect(err).toContain(": flaky; Ctrl-C to stop");
  });

  it.each(["SIGTERM", "SIGINT"] as const)(
    "the chorus binary stops cleanly on %s with exit 0",
    async (sig) => {
      rmSync(join(dir, "flaky", "fixed"), { force: true });
      const r = await chorusAsync(
        ["machine", "run", dir, "--identity", "bin.example"],
        {},
        15_000,
        "",
        (out, child) => {
          if (out.includes("broken -> healthy")) child.kill(sig);
        },
      );
      expect(r.stdout).toContain("flaky: broken -> healthy");
      expect(r.status).toBe(0);
    },
  );
});

describe("chorus machine watch", () => {
  let fleet: SecureFleet;
  let emulator: Emulator;
  beforeAll(async () => {
    fleet = await startSecureFleet();
    emulator = Emulator.fromConfigFile(fleet.setup.emulatorConfig, {
      nodes: 3,
      logger: quiet,
      machines: { scoutChecks: 1 },
    });
    await emulator.start();
  }, 60_000);
  afterAll(async () => {
    await emulator?.stop();
    await fleet?.stop();
  });

  it("prints the transitions nodes publish, one line each, and their CloudEvents with --json", async () => {
    const env = { CHORUS_CONFIG: fleet.setup.clientConfig };
    const node = emulatedIdentity(2);
    let stop = false;
    // keep moving the check until the watcher has seen enough
    const poke = (async () => {
      while (!stop) {
        // not spawnSync: the emulator in this process must answer the request
        await chorusAsync(["scout", "trigger", "check_1", "-I", node], env);
        await new Promise((r) => setTimeout(r, 300));
      }
    })();
    const [text, json] = await Promise.all([
      chorusAsync(["machine", "watch", "--transitions", "--count", "2", "--timeout", "20"], env, 25_000),
      chorusAsync(
        ["machine", "watch", "--json", "--count", "3", "--identity", node, "--timeout", "20"],
        env,
        25_000,
      ),
    ]);
    stop = true;
    await poke;
    expect(text.status).toBe(0);
    const lines = text.stdout.trim().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(
      new RegExp(`^\\d\\d:\\d\\d:\\d\\d ${node.replace(/\./g, "\\.")} check_1: \\S+ -> \\S+ \\(`),
    );
    const events = json.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { type: string; data: { identity: string } });
    expect(events).toHaveLength(3);
    expect(events.every((e) => e.data.identity === node)).toBe(true);
    expect(events.map((e) => e.type)).toContain("io.choria.machine.v1.transition");
    expect(events.some((e) => e.type === "io.choria.machine.watcher.nagios.v1.state")).toBe(true);
  }, 40_000);

  it("states lists each node's machines and states (choria_util#machine_states)", async () => {
    const client = await Client.fromConfigFile(fleet.setup.clientConfig, { logger: quiet });
    try {
      let out = "";
      const code = await machineStates(
        client,
        { discoveryWindow: true },
        new AbortController().signal,
        (s) => (out += s),
      );
      expect(code).toBe(0);
      expect(out).toMatch(/^NODE\s+MACHINE\s+VERSION\s+STATE\n/);
      expect(out).toMatch(
        new RegExp(
          `${emulatedIdentity(1).replace(/\./g, "\\.")}\\s+check_1\\s+1\\.0\\.0\\s+\\S+ \\(scout\\)`,
        ),
      );
      expect(out).toContain("3 machines on 3 nodes\n");
    } finally {
      await client.close();
    }
  });
});
