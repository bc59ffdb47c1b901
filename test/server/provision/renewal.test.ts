import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import {
  createProvisioningToken,
  createServerToken,
  generateKeyPair,
  orgIssuer,
  writeSeedFile,
} from "../../../src/core/security/index.js";
import { serveConfigFile, type Server, type ServeOutcome } from "../../../src/server/index.js";
import { startNats, type TestNats } from "../../helpers/nats.js";

const orgKp = generateKeyPair();
const org = orgIssuer(orgKp);
let nats: TestNats;
let dir: string;

beforeAll(async () => {
  nats = await startNats();
  dir = mkdtempSync(join(tmpdir(), "chorus-renew-"));
});

afterAll(async () => {
  await nats?.stop();
  rmSync(dir, { recursive: true, force: true });
});

it("goes back to provisioning mode before its server token expires", async () => {
  const kp = generateKeyPair();
  writeSeedFile(join(dir, "server.seed"), kp);
  // 4 s of life: renewal is due half way, since the default (at least 1 h) would be longer
  writeFileSync(
    join(dir, "server.jwt"),
    createServerToken(
      { identity: "n2.example", collectives: ["mcollective"], publicKeyHex: kp.publicHex, validityS: 4 },
      org,
    ),
  );
  writeFileSync(
    join(dir, "provisioning.jwt"),
    createProvisioningToken({ cht: "t", chu: nats.url, validityS: 3600 }, org),
  );
  const conf = join(dir, "server.conf");
  writeFileSync(
    conf,
    [
      "# a provisioned node",
      "identity = n2.example",
      `plugin.choria.middleware_hosts = ${nats.url}`,
      "plugin.security.choria.seed_file = server.seed",
      "plugin.security.choria.token_file = server.jwt",
      "plugin.security.issuer.names = dev",
      `plugin.security.issuer.dev.public = ${orgKp.publicHex}`,
      "plugin.choria.server.provision = false",
      "",
    ].join("\n"),
  );
  const servers: Server[] = [];
  const stop = new AbortController();
  const t0 = Date.now();
  const loop: Promise<ServeOutcome> = serveConfigFile(conf, {
    signal: stop.signal,
    overrides: { logger: pino({ level: "silent" }) },
    onStart: (s) => servers.push(s),
  });
  try {
    const deadline = Date.now() + 10_000;
    while (servers.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(servers.map((s) => s.provisionMode)).toEqual([false, true]);
    // half of 4 s, counted from iat (whole seconds): not at once, not at expiry
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    expect(Date.now() - t0).toBeLessThan(4000);
    const text = readFileSync(conf, "utf8");
    expect(text.startsWith("# a provisioned node\n")).toBe(true);
    expect(text).toMatch(/plugin\.choria\.server\.provision = true\n$/);
    expect(text).not.toMatch(/provision = false/);
  } finally {
    stop.abort();
    expect(await loop).toBe("stopped");
  }
}, 20_000);
