import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createChainIssuer,
  generateKeyPair,
  loadSeedFile,
  orgIssuer,
  verifyToken,
  type ClientClaims,
} from "../../../src/core/security/index.js";
import { startAaaTestServer, type AaaTestServer } from "../../client/signer-server.js";

const BIN = fileURLToPath(new URL("../../../bin/chorus.js", import.meta.url));

/** The built CLI with `input` on stdin; async, because the test server runs in this process. */
function run(args: string[], input: string, env: Record<string, string> = {}) {
  return new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    child.once("error", reject);
    child.once("close", (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
    child.stdin.end(input);
  });
}

let aaa: AaaTestServer;
let dir: string;
let issuers: string[];
let config: string;

beforeAll(async () => {
  const orgKp = generateKeyPair();
  issuers = [orgKp.publicHex];
  const chain = createChainIssuer(orgIssuer(orgKp), generateKeyPair(), 7200);
  aaa = await startAaaTestServer({
    issuers,
    delegator: { seedHex: generateKeyPair().seedHex, token: "unused" },
    loginIssuer: chain,
    users: { bob: "hunter2 with spaces" },
    loginValidityS: 3600,
  });
  dir = mkdtempSync(join(tmpdir(), "chorus-cli-login-"));
  config = join(dir, "client.conf");
  writeFileSync(
    config,
    [
      "plugin.security.provider = choria",
      `plugin.security.issuer.names = dev`,
      `plugin.security.issuer.dev.public = ${orgKp.publicHex}`,
      `plugin.security.choria.ca = ${aaa.caFile}`,
      "plugin.security.choria.seed_file = creds/user.seed",
      "plugin.security.choria.token_file = creds/user.jwt",
      `plugin.choria.security.request_signer.url = ${aaa.url}/choria/v1/sign`,
      `plugin.login.aaasvc.login.url = ${aaa.url}/choria/v1/login`,
      "",
    ].join("\n"),
  );
}, 30_000);

afterAll(async () => {
  await aaa?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("chorus login", () => {
  it("logs in with --password-stdin and saves the token 0600; --refresh-before skips a fresh token", async () => {
    const r = await run(["login", "--config", config, "--password-stdin"], "hunter2 with spaces\n", {
      USER: "bob",
    });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const tokenFile = join(dir, "creds", "user.jwt");
    expect(r.stdout).toContain(`token saved to ${tokenFile}`);
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, "creds", "user.seed")).mode & 0o777).toBe(0o600);
    const claims = verifyToken(readFileSync(tokenFile, "utf8").trim(), issuers) as ClientClaims;
    // the username defaulted to $USER; the password kept its spaces, lost only the newline
    expect(claims.callerid).toBe("up=bob");
    expect(claims.public_key).toBe(loadSeedFile(join(dir, "creds", "user.seed")).publicHex);
    expect(aaa.calls.at(-1)?.body.password).toBe("hunter2 with spaces");

    const calls = aaa.calls.length;
    const again = await run(
      ["login", "--config", config, "--password-stdin", "--refresh-before", "10m"],
      "x\n",
    );
    expect(again.status).toBe(0);
    expect(again.stdout).toContain("not logging in");
    expect(aaa.calls.length).toBe(calls);

    const due = await run(
      ["login", "--config", config, "--username", "bob", "--password-stdin", "--refresh-before", "2h"],
      "hunter2 with spaces",
    );
    expect(due.status).toBe(0);
    expect(aaa.calls.length).toBe(calls + 1);
  });

  it("a refused login exits non-zero with the service's reason", async () => {
    const r = await run(["login", "--config", config, "--username", "bob", "--password-stdin"], "wrong\n");
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^chorus login: login at .* failed: Login failed\n$/);
  });

  it("without a terminal or --password-stdin it says how to pass the password", async () => {
    const r = await run(["login", "--config", config, "--username", "bob"], "");
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("--password-stdin");
  });
});
