import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FleetTable, FleetWatcher } from "../../../src/apps/ui/index.js";
import { connectNats, flushNats, type NatsConnection } from "../../../src/core/connector/index.js";
import { buildFilter } from "../../../src/core/filter/index.js";
import { silentLogger, sleep } from "../../../src/core/util/index.js";
import {
  encodeLifecycleEvent,
  lifecycleSubject,
  newLifecycleEvent,
} from "../../../src/services/lifecycle/index.js";
import {
  encodeRegistrationMessage,
  inventoryContentPayload,
  registrationSubject,
} from "../../../src/services/registration/index.js";
import { startNats, type TestNats } from "../../helpers/nats.js";

describe("FleetTable", () => {
  it("ages nodes from alive to stale to gone", () => {
    let now = 1_000_000;
    const t = new FleetTable({ registrationIntervalS: 30, now: () => now });
    t.seen("a", { facts: { role: "web" }, classes: ["x"], agents: ["rpcutil"] });
    expect(t.get("a")?.status).toBe("alive");
    now += 59_000;
    expect(t.get("a")?.status).toBe("alive");
    now += 2_000; // past 2 x 30 s
    expect(t.get("a")).toMatchObject({ status: "stale", ageS: 61 });
    now += 3_600_000;
    expect(t.get("a")?.status).toBe("gone");
    t.seen("a");
    expect(t.get("a")?.status).toBe("alive");
    // a new sign of life without inventory keeps the facts it had
    expect(t.get("a")?.facts).toEqual({ role: "web" });
    t.shutdown("a");
    expect(t.get("a")?.status).toBe("gone");
    expect(t.summary()).toEqual({ alive: 0, stale: 0, gone: 1 });
  });

  it("is stale after 5 minutes without a registration interval", () => {
    let now = 0;
    const t = new FleetTable({ now: () => now });
    t.seen("a");
    now = 299_000;
    expect(t.get("a")?.status).toBe("alive");
    now = 300_000;
    expect(t.get("a")?.status).toBe("stale");
  });

  it("filters with the CLI's filter language and counts facts", () => {
    const t = new FleetTable();
    t.seen("web1", { facts: { role: "web", cores: 8 }, agents: ["rpcutil"], classes: [] });
    t.seen("web2", { facts: { role: "web", cores: 2 }, agents: ["rpcutil"], classes: [] });
    t.seen("db1", { facts: { role: "db", cores: 8 }, agents: ["rpcutil", "scout"], classes: ["db"] });
    const ids = (f: Parameters<typeof buildFilter>[0]) => t.query(buildFilter(f)).map((n) => n.identity);
    expect(ids({ facts: ["role=web"] })).toEqual(["web1", "web2"]);
    expect(ids({ compound: ["facts.cores >= 4"] })).toEqual(["db1", "web1"]);
    expect(ids({ agents: ["scout"] })).toEqual(["db1"]);
    expect(ids({ classes: ["db"] })).toEqual(["db1"]);
    expect(t.counts("role", undefined)).toEqual({ web: 2, db: 1 });
    expect(t.counts("missing", buildFilter({ facts: ["role=db"] }))).toEqual({ "(unset)": 1 });
  });

  it("answers counts from a cache for a second, then counts again", () => {
    let now = 0;
    const t = new FleetTable({ now: () => now });
    t.seen("a", { facts: { role: "web" } });
    expect(t.counts("role", undefined)).toEqual({ web: 1 });
    t.seen("b", { facts: { role: "db" } });
    now = 999;
    expect(t.counts("role", undefined)).toEqual({ web: 1 });
    // another filter is another question
    expect(t.counts("role", buildFilter({ identity: ["b"] }))).toEqual({ db: 1 });
    now = 1_000;
    expect(t.counts("role", undefined)).toEqual({ web: 1, db: 1 });
    const fresh = new FleetTable({ now: () => now, countsCacheMs: 0 });
    fresh.seen("a", { facts: { role: "web" } });
    expect(fresh.counts("role", undefined)).toEqual({ web: 1 });
    fresh.seen("b", { facts: { role: "db" } });
    expect(fresh.counts("role", undefined)).toEqual({ web: 1, db: 1 });
  });

  it("pages in identity order, also after a node joins between queries", () => {
    const t = new FleetTable();
    for (const id of ["c", "a", "e"]) t.seen(id, { facts: { role: id === "e" ? "db" : "web" } });
    expect(t.page(undefined, undefined, 0, 2)).toMatchObject({
      total: 3,
      nodes: [{ identity: "a" }, { identity: "c" }],
    });
    t.seen("b");
    t.seen("a"); // a known node does not disturb the order
    expect(t.page(undefined, undefined, 1, 2).nodes.map((n) => n.identity)).toEqual(["b", "c"]);
    expect(t.page(buildFilter({ facts: ["role=web"] }), undefined, 0, 10)).toMatchObject({
      total: 2,
      nodes: [{ identity: "a" }, { identity: "c" }],
    });
    t.shutdown("c");
    expect(t.page(undefined, "gone", 0, 10).nodes.map((n) => n.identity)).toEqual(["c"]);
    expect(t.page(undefined, undefined, 10, 10)).toEqual({ total: 4, nodes: [] });
  });
});

describe("FleetWatcher", () => {
  let nats: TestNats;
  let nc: NatsConnection;
  let pub: NatsConnection;
  beforeAll(async () => {
    nats = await startNats();
    nc = await connectNats({ servers: [nats.url], name: "ui-watch", logger: silentLogger });
    pub = await connectNats({ servers: [nats.url], name: "ui-pub", logger: silentLogger });
  }, 30_000);
  afterAll(async () => {
    await nc?.close();
    await pub?.close();
    await nats?.stop();
  });

  it("learns nodes from registration and lifecycle events", async () => {
    const table = new FleetTable();
    // registration on its own connection (the console's audit credential may read it)
    const w = new FleetWatcher({ table, nc, registrationNc: nc, collective: "chorus", log: silentLogger });
    w.start();
    await w.registrationSettled();
    expect(w.registration).toBe("live");
    await flushNats(nc);
    const payload = inventoryContentPayload({
      agents: ["rpcutil"],
      classes: ["web"],
      facts: { role: "web" },
      status: {},
      collectives: ["chorus"],
      build_info: {},
      machines: [],
    });
    pub.publish(
      registrationSubject("chorus"),
      encodeRegistrationMessage({
        payload,
        identity: "reg.example",
        collective: "chorus",
        // the console does not verify registration signatures: any bytes do here
        credential: { token: "t.o.k", sign: () => new Uint8Array(64) },
      }),
    );
    const up = newLifecycleEvent("startup", { identity: "life.example", component: "server", version: "1" });
    pub.publish(lifecycleSubject(up), encodeLifecycleEvent(up));
    await flushNats(pub);
    for (let i = 0; i < 50 && table.size < 2; i++) await sleep(20);
    expect(table.get("reg.example")).toMatchObject({
      status: "alive",
      facts: { role: "web" },
      classes: ["web"],
    });
    expect(table.get("life.example")?.status).toBe("alive");

    const down = newLifecycleEvent("shutdown", { identity: "life.example", component: "server" });
    pub.publish(lifecycleSubject(down), encodeLifecycleEvent(down));
    await flushNats(pub);
    for (let i = 0; i < 50 && table.get("life.example")?.status !== "gone"; i++) await sleep(20);
    expect(table.get("life.example")?.status).toBe("gone");
    await w.stop();
  });

  it("does not subscribe to registration without a connection for it", async () => {
    const table = new FleetTable();
    const w = new FleetWatcher({ table, nc, collective: "chorus", log: silentLogger });
    w.start();
    expect(w.registration).toBe("off");
    await flushNats(nc);
    pub.publish(
      registrationSubject("chorus"),
      encodeRegistrationMessage({
        payload: inventoryContentPayload({
          agents: [],
          classes: [],
          facts: {},
          status: {},
          collectives: ["chorus"],
          build_info: {},
          machines: [],
        }),
        identity: "unheard.example",
        collective: "chorus",
        credential: { token: "t.o.k", sign: () => new Uint8Array(64) },
      }),
    );
    await flushNats(pub);
    await flushNats(nc);
    await sleep(100);
    expect(table.get("unheard.example")).toBeUndefined();
    await w.stop();
  });
});
