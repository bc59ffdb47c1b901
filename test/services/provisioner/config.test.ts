import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  ProvisionerConfigError,
  durationMs,
  loadProvisionerConfig,
  parseProvisionerConfig,
} from "../../../src/services/provisioner/index.js";

const KEY = "a".repeat(64);
const dir = mkdtempSync(join(tmpdir(), "chorus-prov-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function base(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    token: "s3cret",
    jwt_verify_cert: KEY,
    jwt_signing_key: "chain.seed",
    jwt_signing_token: "chain.jwt",
    broker_urls: "tls://127.0.0.1:4222",
    provisioning_credentials: { nats: "prov.nats" },
    choria_config: "client.conf",
    ...extra,
  };
}

const err = (raw: unknown): string => {
  try {
    parseProvisionerConfig(raw, "/etc/chorus/provisioner.yaml");
  } catch (e) {
    expect(e).toBeInstanceOf(ProvisionerConfigError);
    return (e as Error).message;
  }
  throw new Error("no error");
};

describe("provisioner config", () => {
  it("applies Choria's defaults and resolves paths from the config's folder", () => {
    const c = parseProvisionerConfig(base(), "/etc/chorus/provisioner.yaml");
    expect(c.intervalMs).toBe(60_000);
    expect(c.helperTimeoutMs).toBe(10_000);
    expect(c.serverJwtValidityS).toBe(365 * 86_400);
    expect(c.lifecycle_component).toBe("provision_mode_server");
    expect(c.cert_deny_list).toEqual([
      "\\.privileged.mcollective$",
      "\\.privileged.choria$",
      "\\.mcollective$",
      "\\.choria$",
    ]);
    expect(c.features).toEqual({ pki: false, jwt: true, ed25519: true });
    expect(c.workers).toBeGreaterThanOrEqual(1);
    expect(c.site).toBe("default");
    expect(c.jwtVerifyKeys).toEqual([KEY]);
    expect(c.broker_urls).toEqual(["tls://127.0.0.1:4222"]);
    expect(c.provisioning_credentials.nats).toBe("/etc/chorus/prov.nats");
    expect(c.jwt_signing_key).toBe("/etc/chorus/chain.seed");
    expect(c.choria_config).toBe("/etc/chorus/client.conf");
    expect(c.leader_election).toBe(false);
    expect(c.helper).toBeUndefined();
  });

  it("names the key in every error", () => {
    expect(err(base({ token: undefined }))).toMatch(/provisioner\.yaml: token: is required/);
    expect(err(base({ workers: 0 }))).toMatch(/workers: must be >= 1/);
    expect(err(base({ interval: "500ms" }))).toMatch(/interval: must be at least 1s/);
    expect(err(base({ interval: "soon" }))).toMatch(/interval: "soon" is not a duration/);
    expect(err(base({ helper_timeout: "fast" }))).toMatch(/helper_timeout: "fast" is not a duration/);
    expect(err(base({ server_jwt_validity: "10m" }))).toMatch(/server_jwt_validity: must be at least 1h/);
    expect(err(base({ queue_ack_wait: "20s" }))).toMatch(
      /queue_ack_wait: must be longer than rpc_timeout \(20s\)/,
    );
    expect(err(base({ monitor_port: 70000 }))).toMatch(/monitor_port: must be <= 65535/);
    expect(err(base({ loglevel: "loud" }))).toMatch(/loglevel: must be one of/);
    expect(err(base({ provisioning_credentials: {} }))).toMatch(
      /provisioning_credentials\.nats: is required/,
    );
    expect(err(base({ broker_urls: [] }))).toMatch(/broker_urls: must be a URL/);
    expect(err(base({ cert_deny_list: ["(unclosed"] }))).toMatch(
      /cert_deny_list\[0\]: .* is not a regular expression/,
    );
    expect(err(base({ jwt_verify_cert: "/nonexistent/key" }))).toMatch(
      /jwt_verify_cert: "\/nonexistent\/key" is neither a hex ed25519 public key nor a readable file/,
    );
    expect(err(base({ colectives: ["x"] }))).toMatch(/colectives: is not a provisioner setting/);
    expect(err(base({ helper: "'unterminated" }))).toMatch(/helper: unterminated ' quote/);
  });

  it("refuses Choria's dead and unsupported keys with the reason", () => {
    expect(err(base({ broker_port: 4222 }))).toMatch(/broker_port: is unused/);
    expect(err(base({ rego_policy: "x.rego" }))).toMatch(/rego_policy: is unused/);
    expect(err(base({ broker_provisioning_password: "pw" }))).toMatch(
      /broker_provisioning_password: .*provisioning_credentials\.nats/,
    );
    expect(err(base({ features: { upgrades: true } }))).toMatch(
      /features\.upgrades: release updates are not supported/,
    );
  });

  it("checks the features against what they need", () => {
    expect(err(base({ jwt_signing_key: undefined, jwt_signing_token: undefined }))).toMatch(
      /jwt_signing_key and jwt_signing_token: are required with features\.ed25519/,
    );
    expect(err(base({ features: { pki: true } }))).toMatch(/ca: is required with features\.pki/);
    expect(err(base({ features: { jwt: false, ed25519: true } }))).toMatch(/features\.jwt: cannot be off/);
    expect(err(base({ features: {} }))).toMatch(/helper: is required when neither/);
    const pki = parseProvisionerConfig(base({ features: { pki: true }, ca: "ca" }), "/x/p.yaml");
    expect(pki.features).toEqual({ pki: true, jwt: true, ed25519: false });
    expect(pki.ca).toBe("/x/ca");
    expect(err(base({ default_configuration: { "plugin.choria.server.provision": "yes" } }))).toMatch(
      /default_configuration\.plugin\.choria\.server\.provision: must not turn provisioning on/,
    );
  });

  it("reads YAML and JSON files, keys from a file, the helper as argv", () => {
    const keys = join(dir, "issuers.txt");
    writeFileSync(keys, `${KEY}\n${"b".repeat(64)}\n`);
    const yaml = join(dir, "p.yaml");
    writeFileSync(
      yaml,
      [
        "token: s3cret",
        `jwt_verify_cert: ${keys}`,
        "jwt_signing_key: chain.seed",
        "jwt_signing_token: chain.jwt",
        "broker_urls: [tls://a:4222, tls://b:4222]",
        "provisioning_credentials: { nats: prov.nats }",
        "choria_config: client.conf",
        `helper: ./helper.sh --site "dc 1" 'x y'`,
        "helper_timeout: 2s",
        "server_jwt_validity: 30d",
        "interval: 1m30s",
        "site: dc1",
      ].join("\n"),
    );
    const c = loadProvisionerConfig(yaml);
    expect(c.jwtVerifyKeys).toEqual([KEY, "b".repeat(64)]);
    expect(c.broker_urls).toEqual(["tls://a:4222", "tls://b:4222"]);
    expect(c.helper).toEqual([join(dir, "helper.sh"), "--site", "dc 1", "x y"]);
    expect(c.helperTimeoutMs).toBe(2000);
    expect(c.serverJwtValidityS).toBe(30 * 86_400);
    expect(c.intervalMs).toBe(90_000);
    const json = join(dir, "p.json");
    writeFileSync(json, JSON.stringify(base({ helper: "helper" })));
    expect(loadProvisionerConfig(json).helper).toEqual(["helper"]);
    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, "token: [unclosed");
    expect(() => loadProvisionerConfig(bad)).toThrow(/bad\.yaml: cannot parse/);
    expect(() => loadProvisionerConfig(join(dir, "missing.yaml"))).toThrow(/cannot read/);
  });

  it("parses durations with Choria's long units", () => {
    expect(durationMs("k", "1y", 0)).toBe(365 * 86_400_000);
    expect(durationMs("k", "2w", 0)).toBe(14 * 86_400_000);
    expect(durationMs("k", 5, 0)).toBe(5000);
    expect(durationMs("k", undefined, 7)).toBe(7);
    expect(() => durationMs("k", "1 year", 0)).toThrow(/k: "1 year" is not a duration/);
  });
});
