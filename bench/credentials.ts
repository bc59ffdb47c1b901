import { readFileSync } from "node:fs";
import { join } from "node:path";
import { connectNats, type NatsConnection } from "../src/core/connector/index.js";
import { replyPrefix } from "../src/core/protocol/index.js";
import { decodeTokenUnverified, loadSeedFile } from "../src/core/security/index.js";
import type { DevSetup } from "../src/apps/setup/index.js";

/**
 * Connects with one of a dev setup's credentials (`credentials/<name>.*`). The inbox
 * sits under the holder's reply prefix, the only one its NATS user may subscribe to:
 * a client's callerid, a server's identity.
 */
export async function connectAs(setup: DevSetup, name: string): Promise<NatsConnection> {
  const base = join(setup.dir, "credentials", name);
  const claims = decodeTokenUnverified(readFileSync(`${base}.jwt`, "utf8").trim());
  const id = typeof claims.callerid === "string" ? claims.callerid : String(claims.identity);
  return connectNats({
    servers: [setup.brokerUrl],
    name: `bench ${name}`,
    caFile: setup.caFile,
    natsJwt: readFileSync(`${base}.jwt.nats`, "utf8").trim(),
    seedHex: loadSeedFile(`${base}.seed`).seedHex,
    inboxPrefix: replyPrefix(setup.collective, id),
  });
}
