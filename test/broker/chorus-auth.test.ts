import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, jwtAuthenticator } from "@nats-io/transport-node";
import { afterEach, describe, expect, it } from "vitest";
import { BrokerSupervisor } from "../../src/broker/index.js";
import {
  createClientToken,
  createNatsTrust,
  decodeTokenUnverified,
  generateKeyPair,
  issueNatsUserJwt,
  nkeySeedFromEd25519Seed,
  orgIssuer,
  renderNatsTrustConfig,
  type ClientClaims,
} from "../../src/core/security/index.js";
import { testBrokerSettings } from "./helpers.js";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

// The end-to-end auth path: setup's trust (security/nats.ts) in the supervised broker,
// and a NATS user JWT issued beside a Chorus client token for the same ed25519 key.
describe("broker with Chorus decentralized auth", () => {
  it.each(["trust file", "trust fragment"])(
    "accepts a token's NATS user and enforces its ACLs (%s)",
    async (mode) => {
      const dir = mkdtempSync(join(tmpdir(), "chorus-auth-"));
      cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
      const org = orgIssuer(generateKeyPair());
      const trust = await createNatsTrust(org);
      const trustFile = join(dir, "nats-trust.json");
      writeFileSync(trustFile, JSON.stringify(trust), { mode: 0o600 });
      const settings = await testBrokerSettings(
        dir,
        mode === "trust file" ? [`plugin.choria.network.nats_trust_file = ${trustFile}`] : [],
      );
      const sup = new BrokerSupervisor({
        settings,
        ...(mode === "trust fragment" && { trustFragment: renderNatsTrustConfig(trust) }),
      });
      cleanups.push(() => sup.stop());
      await sup.start();

      const kp = generateKeyPair();
      const token = createClientToken(
        {
          callerid: "up=alice",
          publicKeyHex: kp.publicHex,
          validityS: 3600,
          permissions: { fleet_management: true },
        },
        org,
      );
      const claims = decodeTokenUnverified(token) as unknown as ClientClaims;
      const userJwt = await issueNatsUserJwt(org, trust, claims);
      const errors: string[] = [];
      const nc = await connect({
        servers: sup.clientUrl,
        authenticator: jwtAuthenticator(userJwt, nkeySeedFromEd25519Seed(kp.seedHex)),
      });
      cleanups.push(() => nc.close());
      void (async () => {
        for await (const s of nc.status()) if (s.type === "error") errors.push(String(s.error));
      })();
      // fleet_management may publish requests
      nc.publish("mcollective.broadcast.agent.rpcutil", "x");
      await nc.flush();
      expect(errors).toEqual([]);
      // but not arbitrary subjects; nats-server itself enforces it
      nc.publish("some.other.subject", "x");
      await nc.flush();
      await new Promise((r) => setTimeout(r, 200));
      expect(errors.join("\n")).toMatch(/Permissions Violation for Publish to "some\.other\.subject"/);
    },
  );
});
