import { readFileSync } from "node:fs";
import { join } from "node:path";
import { connectNats, type NatsConnection } from "../../../src/core/connector/index.js";
import { replyPrefix } from "../../../src/core/protocol/index.js";
import {
  decodeTokenUnverified,
  loadSeedFile,
  orgIssuer,
  type ClientPermissions,
  type NatsTrust,
} from "../../../src/core/security/index.js";
import { issueClientCredential, type CredentialFiles, type DevSetup } from "../../../src/apps/setup/index.js";

/** A connection as one of a dev setup's credentials (client, broker, emulator, server-x). */
export async function connectAs(setup: DevSetup, cred: CredentialFiles | string): Promise<NatsConnection> {
  const files =
    typeof cred === "string"
      ? {
          seedFile: join(setup.dir, "credentials", `${cred}.seed`),
          tokenFile: join(setup.dir, "credentials", `${cred}.jwt`),
          natsJwtFile: join(setup.dir, "credentials", `${cred}.jwt.nats`),
        }
      : cred;
  const claims = decodeTokenUnverified(readFileSync(files.tokenFile, "utf8").trim());
  const id = typeof claims.callerid === "string" ? claims.callerid : `choria=${String(claims.identity)}`;
  return connectNats({
    servers: [setup.brokerUrl],
    name: `test ${id}`,
    caFile: setup.caFile,
    natsJwt: readFileSync(files.natsJwtFile, "utf8").trim(),
    seedHex: loadSeedFile(files.seedFile).seedHex,
    inboxPrefix: replyPrefix(setup.collective, id),
    reconnect: false,
    logger: { info: () => {}, warn: () => {}, error: () => {} },
  });
}

/** A new client credential in the setup with exactly `permissions`. */
export async function extraClient(
  setup: DevSetup,
  name: string,
  permissions: ClientPermissions,
): Promise<CredentialFiles> {
  const trust = JSON.parse(readFileSync(join(setup.dir, "nats-trust.json"), "utf8")) as NatsTrust;
  const issuer = orgIssuer(loadSeedFile(setup.issuerSeedFile));
  return issueClientCredential(
    { issuer, trust },
    {
      seedFile: join(setup.dir, "credentials", `${name}.seed`),
      tokenFile: join(setup.dir, "credentials", `${name}.jwt`),
    },
    { callerid: `choria=${name}`, validityS: 3600, permissions },
  );
}
