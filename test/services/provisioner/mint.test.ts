import { describe, expect, it } from "vitest";
import {
  ProvisionError,
  natsMayPublish,
  nodeConfiguration,
  parseProvisionerConfig,
  planServerToken,
  subjectMatches,
} from "../../../src/services/provisioner/index.js";

const NOW = 1_800_000_000;
const YEAR = 365 * 86_400;

function natsJwt(nats: Record<string, unknown>): string {
  const b = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b({ alg: "ed25519-nkey" })}.${b({ iss: "A".repeat(56), nats })}.sig`;
}

describe("server token plan", () => {
  const plan = (override: Parameters<typeof planServerToken>[1]["override"], issuerExp?: number) =>
    planServerToken("n1", { collectives: ["mcollective"], validityS: YEAR, override, issuerExp, nowS: NOW });

  it("uses the configured validity and collectives by default", () => {
    expect(plan(undefined)).toEqual({
      identity: "n1",
      collectives: ["mcollective"],
      validityS: YEAR,
      notes: [],
    });
  });

  it("takes exp as an absolute time, and a small one as seconds from now instead of dropping it", () => {
    expect(plan({ exp: NOW + 7200 }).validityS).toBe(7200);
    const relative = plan({ exp: 5 * YEAR });
    expect(relative.validityS).toBe(5 * YEAR);
    expect(relative.notes[0]).toMatch(/not an absolute time: taken as seconds from now/);
    expect(() => plan({ exp: NOW - 10 })).toThrow(ProvisionError);
    // under an hour falls back to server_jwt_validity, as Choria, but says so
    const short = plan({ exp: NOW + 60 });
    expect(short.validityS).toBe(YEAR);
    expect(short.notes[0]).toMatch(/less than 1h/);
  });

  it("never outlives the signing token and applies the helper's claims", () => {
    const p = plan(
      { collectives: ["c1", "c2"], ou: "eu", pub_subjects: ["x.>"], permissions: { streams: true } },
      NOW + 3600,
    );
    expect(p).toMatchObject({
      collectives: ["c1", "c2"],
      ou: "eu",
      pub_subjects: ["x.>"],
      permissions: { streams: true },
      validityS: 3600,
    });
    expect(() => plan(undefined, NOW - 1)).toThrow(/jwt_signing_token has expired/);
  });
});

describe("node configuration", () => {
  const cfg = parseProvisionerConfig(
    {
      token: "t",
      jwt_verify_cert: "a".repeat(64),
      jwt_signing_key: "k",
      jwt_signing_token: "t",
      broker_urls: "tls://b:4222",
      provisioning_credentials: { nats: "n" },
      choria_config: "c",
      collectives: ["c1"],
      default_configuration: { loglevel: "warn", "plugin.choria.middleware_hosts": "tls://x:4222" },
    },
    "/p.yaml",
  );
  const ed = { public_key: "b".repeat(64), directory: "/etc/chorus", signature: "" };

  it("layers defaults, default_configuration and the helper, and fills what a node needs", () => {
    const c = nodeConfiguration(
      {
        config: cfg,
        nodeDefaults: { "plugin.choria.middleware_hosts": "tls://d:4222" },
        issuers: ["a".repeat(64)],
      },
      "n1",
      { configuration: { loglevel: "debug" } },
      ed,
      "/etc/chorus/ssl",
    );
    expect(c).toEqual({
      "plugin.choria.middleware_hosts": "tls://x:4222",
      loglevel: "debug",
      "plugin.choria.server.provision": "false",
      identity: "n1",
      collectives: "c1",
      "plugin.security.issuer.names": "org",
      "plugin.security.issuer.org.public": "a".repeat(64),
      "plugin.security.provider": "choria",
      "plugin.security.choria.seed_file": "/etc/chorus/server.seed",
      "plugin.security.choria.token_file": "/etc/chorus/server.jwt",
      "plugin.security.choria.certificate": "/etc/chorus/ssl/certificate.pem",
      "plugin.security.choria.key": "/etc/chorus/ssl/private.pem",
    });
  });

  it("refuses a configuration that keeps provisioning on or names another identity", () => {
    expect(() =>
      nodeConfiguration(
        { config: cfg },
        "n1",
        { configuration: { "plugin.choria.server.provision": "true" } },
        ed,
      ),
    ).toThrow(/keeps plugin\.choria\.server\.provision on/);
    expect(() => nodeConfiguration({ config: cfg }, "n1", { configuration: { identity: "n2" } }, ed)).toThrow(
      /names identity n2/,
    );
  });
});

describe("NATS subjects", () => {
  it("matches wildcards as nats-server does", () => {
    expect(subjectMatches("a.*.c", "a.b.c")).toBe(true);
    expect(subjectMatches("a.>", "a.b.c")).toBe(true);
    expect(subjectMatches("a.>", "a")).toBe(false);
    expect(subjectMatches("a.*", "a.b.c")).toBe(false);
    expect(subjectMatches("a.b", "a.b")).toBe(true);
  });

  it("reads what a NATS user may publish", () => {
    const s = "choria.lifecycle.event.startup.provisioner";
    expect(natsMayPublish(natsJwt({ pub: { allow: ["choria.lifecycle.>"] } }), s)).toBe(true);
    expect(natsMayPublish(natsJwt({ pub: { allow: ["$JS.API.>"] } }), s)).toBe(false);
    expect(natsMayPublish(natsJwt({ pub: { deny: [">"] } }), s)).toBe(false);
    expect(natsMayPublish(natsJwt({}), s)).toBe(true);
  });
});
