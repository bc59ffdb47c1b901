import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  FederationError,
  loadFederationConfig,
  parseFederationConfig,
} from "../../../src/services/federation/index.js";

const dir = mkdtempSync(join(tmpdir(), "chorus-fed-config-"));
const credential = "plugin.security.choria.token_file = c.jwt\nplugin.security.choria.seed_file = c.seed\n";
writeFileSync(join(dir, "fed.conf"), `${credential}plugin.choria.middleware_hosts = nats://127.0.0.1:4222\n`);
writeFileSync(join(dir, "nohosts.conf"), `${credential}identity = x.example.net\n`);
writeFileSync(join(dir, "notoken.conf"), "plugin.choria.middleware_hosts = nats://127.0.0.1:4222\n");
const file = join(dir, "federation.yaml");
const good = {
  cluster: "east",
  identity: "fed-1",
  choria_config: "fed.conf",
  federation: { servers: "tls://fed.example.net:4222" },
  collective: { servers: ["nats://east.example.net:4222", "east2.example.net:4222"] },
  workers: 2,
  monitor_port: 0,
  logfile: "fed.log",
  loglevel: "debug",
};

/** The error a document with `change` applied gives (undefined deletes the key). */
function errorOf(change: Record<string, unknown>): string {
  const doc: Record<string, unknown> = { ...good };
  for (const [k, v] of Object.entries(change)) {
    if (v === undefined) delete doc[k];
    else doc[k] = v;
  }
  try {
    parseFederationConfig(doc, file);
  } catch (err) {
    expect(err).toBeInstanceOf(FederationError);
    expect((err as FederationError).code).toBe("config");
    return (err as Error).message;
  }
  throw new Error(`accepted ${JSON.stringify(change)}`);
}

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("federation broker config", () => {
  it("reads every key; defaults and Choria's hosts keys fill the rest", () => {
    const c = parseFederationConfig(good, file);
    expect(c).toMatchObject({
      cluster: "east",
      identity: "fed-1",
      workers: 2,
      monitor_port: 0,
      loglevel: "debug",
      logfile: join(dir, "fed.log"),
      federation: { servers: ["tls://fed.example.net:4222"], choria_config: join(dir, "fed.conf") },
      collective: { servers: ["nats://east.example.net:4222", "east2.example.net:4222"] },
    });
    const d = parseFederationConfig(
      { choria_config: "fed.conf", federation: { servers: "nats://f:1" } },
      file,
    );
    expect(d).toMatchObject({ cluster: "mcollective", workers: 1, loglevel: "info" });
    // the collective side's servers from the Choria config's middleware_hosts
    expect(d.collective.servers).toEqual(["nats://127.0.0.1:4222"]);
    writeFileSync(file, "cluster: west\nchoria_config: fed.conf\nfederation: { servers: nats://f:1 }\n");
    expect(loadFederationConfig(file).cluster).toBe("west");
  });

  it("every bad value names its key", () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ cluster: "a.b" }, /^cluster: must be a name/],
      [{ cluster: 7 }, /^cluster: /],
      [{ identity: "" }, /^identity: must be a name/],
      [{ identity: ["x"] }, /^identity: /],
      [{ workers: 0 }, /^workers: must be a whole number from 1 to 64/],
      [{ workers: 1.5 }, /^workers: /],
      [{ workers: "2" }, /^workers: /],
      [{ workers: 65 }, /^workers: /],
      [{ monitor_port: 70000 }, /^monitor_port: must be a port number/],
      [{ monitor_port: "80" }, /^monitor_port: /],
      [{ loglevel: "loud" }, /^loglevel: must be one of trace, debug/],
      [{ logfile: "" }, /^logfile: must be a file path/],
      [{ logfile: 3 }, /^logfile: /],
      [{ choria_config: 5 }, /^choria_config: must be a file path/],
      [{ choria_config: "missing.conf" }, /^choria_config: .*missing\.conf/],
      [{ choria_config: undefined }, /^federation\.choria_config: is required/],
      [{ federation: "x" }, /^federation: must be a map/],
      [{ federation: { servers: "http://x:1" } }, /^federation\.servers: "http:\/\/x:1" is not a nats:\/\//],
      [{ federation: { servers: [] } }, /^federation\.servers: names no server/],
      [{ federation: { servers: 4222 } }, /^federation\.servers: must be a URL/],
      [
        { federation: { servers: "nats://f:1", choria_config: "" } },
        /^federation\.choria_config: must be a file path/,
      ],
      [
        { federation: { servers: "nats://f:1", port: 1 } },
        /^federation\.port: is not a federation broker setting/,
      ],
      [
        { federation: {} },
        /^federation\.servers: is required \(.*fed\.conf sets no plugin\.choria\.federation_middleware_hosts\)/,
      ],
      [{ collective: ["x"] }, /^collective: must be a map/],
      [{ collective: { choria_config: "nohosts.conf" } }, /^collective\.servers: is required/],
      [{ collective: { servers: "tls://c/x" } }, /^collective\.servers: "tls:\/\/c\/x" is not/],
      [
        { collective: { servers: "tls://c:1", choria_config: "notoken.conf" } },
        /^collective\.choria_config: .*notoken\.conf: plugin\.security\.choria\.token_file is required/,
      ],
      [
        { choria_config: "notoken.conf", federation: { servers: "nats://f:1" }, collective: {} },
        /^choria_config: .*notoken\.conf: plugin\.security\.choria\.token_file is required/,
      ],
      [{ colective: {} }, /^colective: is not a federation broker setting/],
    ];
    for (const [change, want] of cases) expect(errorOf(change), JSON.stringify(change)).toMatch(want);
    expect(() => parseFederationConfig(["cluster: x"], file)).toThrow(/^\(top level\): must be a map/);
    // a side with its own servers needs no hosts key in its Choria config
    const own = { ...good, collective: { servers: "tls://c:1", choria_config: "nohosts.conf" } };
    expect(parseFederationConfig(own, file).collective.choria_config).toBe(join(dir, "nohosts.conf"));
  });

  it("an unreadable or non-YAML file is named", () => {
    expect(() => loadFederationConfig(join(dir, "none.yaml"))).toThrow(/cannot read .*none\.yaml/);
    writeFileSync(join(dir, "bad.yaml"), "cluster: [\n");
    expect(() => loadFederationConfig(join(dir, "bad.yaml"))).toThrow(/bad\.yaml is not YAML/);
  });
});
