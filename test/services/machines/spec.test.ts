import { randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  MachineError,
  machineMatches,
  machineSpecPublicKey,
  signMachineSpec,
  verifyMachineSpec,
  type ManagedMachine,
} from "../../../src/services/machines/index.js";
import { ed25519 } from "../../../src/core/security/index.js";

const seed = randomBytes(32).toString("hex");
const pub = machineSpecPublicKey(seed);
const other = randomBytes(32).toString("hex");

const entries: ManagedMachine[] = [
  {
    name: "facts",
    source: "https://example.net/facts-1.0.0.tgz",
    checksum: "f".repeat(64),
    verify_checksum: "e".repeat(64),
    verify: "SHA256SUMS",
    match: "identity('^web')",
  },
  {
    name: "backup",
    source: "http://example.net/backup.tgz",
    checksum: "a".repeat(64),
    verify_checksum: "b".repeat(64),
  },
];

function refused(json: string, keys = [pub], why?: RegExp): void {
  let err: unknown;
  try {
    verifyMachineSpec(json, keys);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(MachineError);
  expect((err as MachineError).code).toBe("bad_spec");
  if (why) expect((err as Error).message).toMatch(why);
}

describe("signed machine specs", () => {
  it("round-trips: what is signed verifies with its public key, as go-choria's plugins format", () => {
    const text = signMachineSpec(entries, seed);
    const doc = JSON.parse(text) as { plugins: string; signature: string };
    expect(Object.keys(doc).sort()).toEqual(["plugins", "signature"]);
    expect(JSON.parse(Buffer.from(doc.plugins, "base64").toString())).toEqual(entries);
    // go-choria signs the base64 text itself
    const vk = ed25519.verifyingKey(Buffer.from(pub, "hex"))!;
    expect(ed25519.verify(vk, Buffer.from(doc.plugins), Buffer.from(doc.signature, "hex"))).toBe(true);
    expect(verifyMachineSpec(text, [pub])).toEqual(entries);
    // any of several keys will do; a 64-byte private key (seed + public) signs too
    expect(verifyMachineSpec(text, [machineSpecPublicKey(other), pub])).toEqual(entries);
    expect(verifyMachineSpec(signMachineSpec(entries, seed + pub), [pub])).toEqual(entries);
  });

  it("verifies a spec made by go-choria's machines pack (README example, signed over the decoded payload)", () => {
    // aagent/watchers/machineswatcher/README.md: public key and spec.json
    const goPub = "64031219d4922eed63a5f567303e98607c632139c01bc9fa4ca2514c2d9d30da";
    const goSpec =
      '{"machines":"WwogewogICAibmFtZSI6ICJmYWN0cyIsCiAgICAgInNvdXJjZSI6ICJodHRwczovL215LmV4YW1wbGUubmV0L21ldGFkYXRhL21ldGFkYXRhLW1hY2hpbmUtMS4wLjAudGd6IiwKICAgICAidmVyaWZ5IjogIlNIQTI1NlNVTVMiLAogICAgICJ2ZXJpZnlfY2hlY2tzdW0iOiAiMWU4NTcxOWM2OTU5ZWIwZjJjOGYyMTY2ZTMwYWU5NTJjY2FlZjJjMjg2ZjMxODY4ZWExZDMxMWQzNzM4YTMzOSIsCiAgICAgImNoZWNrc3VtIjogImYxMWVhMjAwNWRlOTdiZjMwOWJhZmFjNDZlNzdjMDE5MjUzMDdhMjY2NzVmNDRmMzg4ZDQ1MDJkMmI5ZDAwYmYiLAogICAgICJtYXRjaCI6ICJoYXNfY29tbWFuZCgnZmFjdGVyJykiCiB9Cl0K","signature":"f06d4a1cfe9ac79d26b5e6646fdfa9d845a5506c9a2fe0a71fb8416f6f7edd253a1eb46363c12ca5f6148b19ab1ed9a5f25c89b09b3360a09b7d054bf4b55204"}';
    expect(verifyMachineSpec(goSpec, [goPub])).toEqual([
      {
        name: "facts",
        source: "https://my.example.net/metadata/metadata-machine-1.0.0.tgz",
        verify: "SHA256SUMS",
        verify_checksum: "1e85719c6959eb0f2c8f2166e30ae952ccaef2c286f31868ea1d311d3738a339",
        checksum: "f11ea2005de97bf309bafac46e77c01925307a26675f44f388d4502d2b9d00bf",
        match: "has_command('facter')",
      },
    ]);
    refused(goSpec, [pub], /does not verify/);
  });

  it("refuses unsigned, forged, foreign-signed, tampered, malformed and oversized specs", () => {
    const good = JSON.parse(signMachineSpec(entries, seed)) as { plugins: string; signature: string };
    const enc = (list: unknown) => Buffer.from(JSON.stringify(list)).toString("base64");

    refused(JSON.stringify({ plugins: good.plugins }), [pub], /not signed/);
    refused(JSON.stringify({ plugins: good.plugins, signature: "" }), [pub], /not signed/);
    refused(JSON.stringify({ plugins: good.plugins, signature: "zz" }), [pub], /not a hex ed25519/);
    refused(JSON.stringify({ ...good, signature: "00".repeat(64) }), [pub], /does not verify/);
    // signed by another key
    refused(signMachineSpec(entries, other), [pub], /does not verify/);
    // a tampered entry under the original signature
    const tampered = [{ ...entries[1], source: "http://evil.example/backup.tgz" }];
    refused(JSON.stringify({ plugins: enc(tampered), signature: good.signature }), [pub], /does not verify/);
    // no key configured: never accepted unsigned or unverified
    refused(signMachineSpec(entries, seed), [], /no public key/);
    refused(signMachineSpec(entries, seed), ["not-a-key"], /does not verify/);
    refused("{not json", [pub], /not JSON/);
    refused("[]", [pub], /JSON object/);
    refused(JSON.stringify({ plugins: "!!!", signature: good.signature }), [pub], /not base64/);
    refused(
      JSON.stringify({ plugins: good.plugins, signature: good.signature, pad: "x".repeat(1024 * 1024) }),
      [pub],
      /larger/,
    );
    // well signed but invalid content: a path-like name, a missing checksum, a broken match
    const signed = (list: unknown) => {
      const plugins = enc(list);
      const { key } = ed25519.fromSeed(Buffer.from(seed, "hex"));
      return JSON.stringify({ plugins, signature: ed25519.sign(key, Buffer.from(plugins)).toString("hex") });
    };
    refused(signed([{ ...entries[1], name: "../etc" }]), [pub], /plugins\[0\]\.name/);
    refused(signed([{ ...entries[1], checksum: undefined }]), [pub], /plugins\[0\]\.checksum/);
    refused(signed([entries[1], entries[1]]), [pub], /appears twice/);
    refused(signed([{ ...entries[1], match: "identity(" }]), [pub], /plugins\[0\]\.match/);
    refused(signed({ not: "a list" }), [pub], /JSON list/);
    expect(() => signMachineSpec([{ ...entries[1]!, name: "a/b" }], seed)).toThrow(MachineError);
  });

  it("matches nodes with identity(), get_fact(), has_file(), has_directory() and has_command()", () => {
    const dir = mkdtempSync(join(tmpdir(), "chorus-spec-"));
    writeFileSync(join(dir, "f"), "x");
    const node = { identity: "web1.example.net", facts: { os: { family: "Debian" }, role: "web" } };
    const m = (match?: string) => machineMatches(match === undefined ? {} : { match }, node);
    expect(m()).toBe(true);
    expect(m("identity('^web')")).toBe(true);
    expect(m("identity('^db')")).toBe(false);
    expect(m("get_fact('os.family') == 'Debian' && get_fact('role') == 'web'")).toBe(true);
    expect(m("get_fact('os.family') == 'RedHat'")).toBe(false);
    expect(m(`has_file('${join(dir, "f")}') && !has_file('${join(dir, "nope")}')`)).toBe(true);
    expect(m(`has_directory('${dir}') && !has_directory('${join(dir, "f")}')`)).toBe(true);
    expect(m("has_command('sh') && !has_command('no-such-command-here')")).toBe(true);
    expect(() => m("unknown_fn()")).toThrow();
  });
});
