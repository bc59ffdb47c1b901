import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { streamsAdminHint } from "../../../src/apps/cli/common.js";
import { chorusAsync } from "../../helpers/cli.js";
import { startSecureFleet, type SecureFleet } from "../../helpers/fleet.js";

// `chorus setup dev` writes client.conf (streams_user) and admin-client.conf
// (streams_admin); the broker enforces the difference through the NATS user JWTs.
describe("Streams administration with the dev client configs", () => {
  let fleet: SecureFleet;
  beforeAll(async () => {
    fleet = await startSecureFleet();
  }, 60_000);
  afterAll(async () => {
    await fleet?.stop();
  });

  const hint = () =>
    `  this client may not administer Streams: use the admin client config ${fleet.setup.adminClientConfig} (--config) or a JWT with streams_admin\n`;

  it("kv add with the everyday client is refused with what to do instead", async () => {
    const r = await chorusAsync(["kv", "add", "DENIED"], { CHORUS_CONFIG: fleet.setup.clientConfig });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("chorus kv add: creating KV bucket DENIED: not permitted by the broker");
    expect(r.stderr.endsWith(hint())).toBe(true);
  }, 30_000);

  it("governor add with the everyday client gets the same advice", async () => {
    const r = await chorusAsync(["governor", "add", "G1", "2", "60"], {
      CHORUS_CONFIG: fleet.setup.clientConfig,
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("chorus governor add: creating governor G1: not permitted by the broker");
    expect(r.stderr.endsWith(hint())).toBe(true);
  }, 30_000);

  it("the admin client creates the bucket, and the everyday client then uses it", async () => {
    const add = await chorusAsync(["kv", "add", "SHARED", "--config", fleet.setup.adminClientConfig]);
    expect(add.stderr).not.toContain("chorus");
    expect(add.status).toBe(0);
    expect(add.stdout).toContain("KV bucket SHARED");
    const env = { CHORUS_CONFIG: fleet.setup.clientConfig };
    expect((await chorusAsync(["kv", "put", "SHARED", "k", "v"], env)).status).toBe(0);
    const get = await chorusAsync(["kv", "get", "SHARED", "k", "--raw"], env);
    expect(get.status).toBe(0);
    expect(get.stdout).toBe("v");
    // one value: counted in the singular
    const list = await chorusAsync(["kv", "list"], env);
    expect(list.stdout).toMatch(/^SHARED\t1 value\t\d+ bytes\thistory 5$/m);
  }, 60_000);

  it("the hint names admin-client.conf only when it exists and is not the config in use", () => {
    expect(streamsAdminHint(fleet.setup.clientConfig)).toContain(fleet.setup.adminClientConfig);
    const self = streamsAdminHint(fleet.setup.adminClientConfig);
    expect(self).not.toContain(fleet.setup.adminClientConfig);
    expect(self).toContain("a client config whose JWT has streams_admin");
    const elsewhere = streamsAdminHint(join(tmpdir(), "no-such-dir", "client.conf"));
    expect(elsewhere).toContain("`chorus setup dev` writes admin-client.conf");
  });
});
