// The provisioner against real nodes in provisioning mode on a real broker with the
// PROVISIONING account (`setup dev --provisioning`), as a site runs it.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Client } from "../../../src/client/index.js";
import { decodeTokenUnverified, generateKeyPair } from "../../../src/core/security/index.js";
import type { ProvisionerService } from "../../../src/services/provisioner/index.js";
import { provisioningFixture, silent, until, type ProvisioningFixture } from "./fixture.js";

let fx: ProvisioningFixture;
let running: ProvisionerService[] = [];

beforeAll(async () => {
  fx = await provisioningFixture();
});
afterAll(async () => {
  await fx?.stop();
});
afterEach(async () => {
  for (const p of running) await p.stop();
  running = [];
  await fx.purgeQueue();
});

async function provisioner(
  ...args: Parameters<ProvisioningFixture["provisioner"]>
): Promise<ProvisionerService> {
  const p = await fx.provisioner(...args);
  running.push(p);
  return p;
}

function helperScript(name: string, body: string): string {
  const file = join(fx.fleet.setup.dir, `${name}.mjs`);
  writeFileSync(file, `#!/usr/bin/env node\n${body}\n`, { mode: 0o755 });
  return file;
}

describe("provisioner service", () => {
  it("enrolls a node end to end: startup event, helper, server token, NATS user, restart into the fleet", async () => {
    const p = await provisioner({ monitor_port: 0 });
    const node = await fx.node("e2e1.example.net");
    expect(node.mode).toBe("provisioning");
    await node.whenNormal();

    // configured once, restarted once, with credentials minted by the provisioner's chain issuer
    expect(node.calls.configure).toBe(1);
    expect(node.calls.restart).toBe(1);
    const cfg = node.config();
    expect(cfg["plugin.choria.server.provision"]).toBe("false");
    expect(cfg.identity).toBe("e2e1.example.net");
    const token = readFileSync(cfg["plugin.security.choria.token_file"] as string, "utf8").trim();
    const claims = decodeTokenUnverified(token);
    expect(claims.identity).toBe("e2e1.example.net");
    expect(claims.iss).toBe(
      `C-${decodeTokenUnverified(readFileSync(fx.files.chainIssuerTokenFile, "utf8").trim()).jti as string}.${fx.files.chainIssuerPublic}`,
    );
    expect(existsSync(`${cfg["plugin.security.choria.token_file"] as string}.nats`)).toBe(true);

    // the node now answers the fleet's own client in the main collective
    const client = await Client.fromConfigFile(fx.fleet.setup.clientConfig, { logger: silent });
    try {
      const r = await client.request("rpcutil", "ping", {}, { nodes: ["e2e1.example.net"], timeoutMs: 5000 });
      expect(r.replies.map((x) => [x.sender, x.statuscode])).toEqual([["e2e1.example.net", 0]]);
    } finally {
      await client.close();
    }

    await until("metrics", async () => (await p.metrics.value("choria_provisioner_provisioned")) === 1);
    expect(await p.metrics.value("choria_provisioner_event_discovered")).toBeGreaterThanOrEqual(1);
    expect(await p.metrics.value("choria_provisioner_helper_errors")).toBe(0);
    expect(await p.metrics.value("choria_provisioner_paused")).toBe(0);
    const scraped = await (await fetch(`http://127.0.0.1:${p.monitorPort as number}/metrics`)).text();
    expect(scraped).toMatch(/choria_provisioner_provisioned\{site="dev"\} 1/);
    expect(scraped).toMatch(/choria_provisioner_rpc_time_count\{site="dev",rpc="configure"\} 1/);
  });

  it("without a helper, mints a default server token from the config and enrolls the node", async () => {
    const p = await provisioner({
      helper: undefined,
      server_jwt_validity: "48h",
      default_configuration: { "plugin.security.choria.ca": fx.fleet.setup.caFile },
    });
    const node = await fx.node("nohelper1.example.net");
    await node.whenNormal();
    const cfg = node.config();
    // the broker the provisioner itself uses, the org issuer it verifies tokens with
    expect(cfg["plugin.choria.middleware_hosts"]).toBe(fx.fleet.setup.brokerUrl);
    expect(cfg["plugin.security.issuer.org.public"]).toBe(fx.fleet.setup.issuerPublic);
    expect(cfg.collectives).toBe("mcollective");
    const claims = decodeTokenUnverified(
      readFileSync(cfg["plugin.security.choria.token_file"] as string, "utf8").trim(),
    );
    expect(claims.collectives).toEqual(["mcollective"]);
    expect((claims.exp as number) - (claims.iat as number)).toBe(48 * 3600);
    const client = await Client.fromConfigFile(fx.fleet.setup.clientConfig, { logger: silent });
    try {
      const found = await client.discover({ filter: { identity: ["/^nohelper1/"] }, timeoutMs: 2000 });
      expect(found).toEqual(["nohelper1.example.net"]);
    } finally {
      await client.close();
    }
    expect(await p.metrics.value("choria_provisioner_provisioned")).toBe(1);
  });

  it("sends a good helper's configuration and server claims to the node", async () => {
    const helper = helperScript(
      "helper-good",
      `import { readFileSync } from "node:fs";
       const input = JSON.parse(readFileSync(0, "utf8"));
       const inv = JSON.parse(input.inventory);
       process.stdout.write(JSON.stringify({
         msg: "configured by the test helper",
         configuration: {
           collectives: "mcollective",
           "plugin.choria.middleware_hosts": ${JSON.stringify(fx.fleet.setup.brokerUrl)},
           "plugin.security.choria.ca": ${JSON.stringify(fx.fleet.setup.caFile)},
           "plugin.security.issuer.names": "dev",
           "plugin.security.issuer.dev.public": ${JSON.stringify(fx.fleet.setup.issuerPublic)},
           "plugin.chorus.test.marker": "from-helper-" + input.identity,
           "plugin.chorus.test.agents": inv.agents.includes("choria_provision") ? "yes" : "no",
         },
         server_claims: { pub_subjects: ["test.node.>"], exp: 7 * 86400 },
       }));`,
    );
    const p = await provisioner({ helper });
    const node = await fx.node("helper1.example.net");
    await node.whenNormal();
    const cfg = node.config();
    expect(cfg["plugin.chorus.test.marker"]).toBe("from-helper-helper1.example.net");
    expect(cfg["plugin.chorus.test.agents"]).toBe("yes");
    const claims = decodeTokenUnverified(
      readFileSync(cfg["plugin.security.choria.token_file"] as string, "utf8").trim(),
    );
    expect(claims.pub_subjects).toEqual(["test.node.>"]);
    // a relative exp (Choria's example helper sends one) is taken as seconds from now
    expect((claims.exp as number) - (claims.iat as number)).toBe(7 * 86400);
    expect(await p.metrics.value("choria_provisioner_helper_errors")).toBe(0);
  });

  it("kills a helper that hangs at helper_timeout, counts it, and leaves the node unconfigured", async () => {
    const helper = helperScript("helper-hang", "setInterval(() => {}, 1000);");
    const p = await provisioner({ helper, helper_timeout: "300ms", queue_max_attempts: 2 });
    const node = await fx.node("hang1.example.net");
    await until(
      "a helper error",
      async () => (await p.metrics.value("choria_provisioner_helper_errors")) >= 1,
    );
    await until(
      "a provision error",
      async () => (await p.metrics.value("choria_provisioner_provision_errors")) >= 1,
    );
    expect(node.calls.configure ?? 0).toBe(0);
    expect(node.mode).toBe("provisioning");
  });

  it("counts a helper that crashes or prints garbage", async () => {
    const helper = helperScript("helper-garbage", `process.stdout.write("<html>not json</html>");`);
    const p = await provisioner({ helper, queue_max_attempts: 1 });
    const node = await fx.node("garbage1.example.net");
    await until(
      "a helper error",
      async () => (await p.metrics.value("choria_provisioner_helper_errors")) >= 1,
    );
    await until(
      "the item dropped",
      async () => (await p.metrics.value("chorus_provisioner_items_total", { outcome: "dropped" })) >= 1,
    );
    expect(node.calls.configure ?? 0).toBe(0);
  });

  it("defers and shuts down nodes when the helper says so", async () => {
    const helper = helperScript(
      "helper-shutdown",
      `import { readFileSync } from "node:fs";
       const input = JSON.parse(readFileSync(0, "utf8"));
       process.stdout.write(JSON.stringify(input.identity.startsWith("defer") ? { defer: true, msg: "not yet" } : { shutdown: true, msg: "unknown node" }));`,
    );
    const p = await provisioner({ helper });
    const gone = await fx.node("shutdown1.example.net");
    const later = await fx.node("defer1.example.net");
    await until(
      "shutdown",
      async () => (await p.metrics.value("choria_provisioner_helper_shutdown_requests")) === 1,
    );
    await until("node exit", () => gone.mode === "stopped");
    expect(gone.calls.shutdown).toBe(1);
    await until(
      "deferred",
      async () => (await p.metrics.value("chorus_provisioner_items_total", { outcome: "deferred" })) >= 1,
    );
    expect(later.calls.configure ?? 0).toBe(0);
    expect(later.mode).toBe("provisioning");
  });

  it("drops nodes whose provisioning token it does not trust, and identities on the deny list", async () => {
    const p = await provisioner({ jwt_verify_cert: generateKeyPair().publicHex });
    const stranger = await fx.node("stranger1.example.net");
    const denied = await fx.node("sneaky.mcollective");
    await until(
      "both dropped",
      async () => (await p.metrics.value("chorus_provisioner_items_total", { outcome: "dropped" })) >= 2,
    );
    // nothing was changed on either node: no key made, nothing configured
    expect(stranger.calls.jwt).toBeGreaterThanOrEqual(1);
    expect(stranger.calls.gen25519 ?? 0).toBe(0);
    expect(denied.calls.jwt ?? 0).toBe(0);
    expect(stranger.mode).toBe("provisioning");
    expect(denied.mode).toBe("provisioning");
  });
});
