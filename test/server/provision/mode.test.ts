import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadConfig, provisioningSettings } from "../../../src/core/config/index.js";
import {
  SecurityError,
  createCA,
  createClientToken,
  createProvisioningToken,
  createServerToken,
  generateKeyPair,
  issueCert,
  nkeySeedTextFromEd25519Seed,
  orgIssuer,
  writeSeedFile,
  type ProvisioningClaims,
} from "../../../src/core/security/index.js";
import {
  ActionReply,
  ProvisionAgent,
  ProvisionError,
  ProvisioningSecurity,
  provisioningBrokers,
  provisioningDecision,
  renderConfig,
  renewalTime,
  setConfigKey,
  writeFileAtomic,
  type ActionRequest,
  type ServerExitRequest,
} from "../../../src/server/index.js";

const HOUR = 3_600_000;
const orgKp = generateKeyPair();
const org = orgIssuer(orgKp);
let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "chorus-provmode-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function config(lines: string[]): string {
  const f = join(dir, "server.conf");
  writeFileSync(f, [...lines, ""].join("\n"));
  return f;
}

function provisioningJwt(extra: Partial<ProvisioningClaims> = {}, validityS = 3600, issuer = org): void {
  writeFileSync(
    join(dir, "provisioning.jwt"),
    createProvisioningToken({ cht: "t", chu: "nats://127.0.0.1:4222", ...extra, validityS }, issuer),
  );
}

function credential(identity: string, validityS = 3600): void {
  const kp = generateKeyPair();
  writeSeedFile(join(dir, "server.seed"), kp);
  writeFileSync(
    join(dir, "server.jwt"),
    createServerToken({ identity, collectives: ["mcollective"], publicKeyHex: kp.publicHex, validityS }, org),
  );
}

const issuerLines = [
  "plugin.security.issuer.names = dev",
  `plugin.security.issuer.dev.public = ${orgKp.publicHex}`,
];
const decide = (f: string, now?: number) => provisioningDecision(loadConfig(f), now);

describe("provisioningDecision", () => {
  it("leaves a node without a provisioning token alone", () => {
    const d = decide(config(["identity = a"]));
    expect(d.provision).toBe(false);
    expect(d.jwtProblem).toMatch(/does not exist/);
  });

  it("refuses provisioning mode without a usable token", () => {
    const f = config(["identity = a", "plugin.choria.server.provision = true"]);
    expect(() => decide(f)).toThrow(ProvisionError);
    expect(() => decide(f)).toThrow(/needs a usable provisioning token/);
    // signed by an org the config does not trust
    provisioningJwt({}, 3600, orgIssuer(generateKeyPair()));
    const trusting = config(["identity = a", "plugin.choria.server.provision = true", ...issuerLines]);
    expect(() => decide(trusting)).toThrow(/not trusted/);
  });

  it("trusts the token's own issuer when the config names none, and the config's otherwise", () => {
    provisioningJwt();
    const d = decide(config(["identity = a", "plugin.choria.server.provision = true"]));
    expect(d.provision).toBe(true);
    expect(d.claims?.cht).toBe("t");
    expect(
      decide(config(["identity = a", "plugin.choria.server.provision = 1", ...issuerLines])).provision,
    ).toBe(true);
  });

  it("follows chpd when the config does not say, and the config when it does", () => {
    provisioningJwt({ chpd: true });
    credential("a");
    expect(decide(config(["identity = a"])).reason).toMatch(/chpd/);
    expect(decide(config(["identity = a", "plugin.choria.server.provision = false"])).provision).toBe(false);
  });

  it("provisions when the credential is missing, for someone else or for another key", () => {
    provisioningJwt();
    const f = config(["identity = a", "plugin.choria.server.provision = false"]);
    expect(decide(f)).toMatchObject({ provision: true, reason: expect.stringMatching(/does not exist/) });
    credential("b");
    expect(decide(f).reason).toMatch(/for b, the configured identity is a/);
    credential("a");
    expect(decide(f).provision).toBe(false);
    writeSeedFile(join(dir, "server.seed"), generateKeyPair());
    expect(decide(f).reason).toMatch(/not the server token's key/);
    writeFileSync(join(dir, "server.jwt"), "garbage");
    expect(decide(f).reason).toMatch(/unusable/);
  });

  it("does not provision with an expired provisioning token", () => {
    provisioningJwt({}, 1);
    const f = config(["identity = a"]);
    const d = decide(f, Date.now() + 5000);
    expect(d.provision).toBe(false);
    expect(d.jwtProblem).toMatch(/expired/);
  });

  it("schedules renewal of the server token, and provisions once it is due", () => {
    provisioningJwt();
    credential("a", 3600);
    const f = config(["identity = a"]);
    const d = decide(f);
    expect(d.provision).toBe(false);
    // one hour of life: renewed half way, not a full hour ahead
    expect(d.renewAt).toBeGreaterThan(Date.now() + 1790_000);
    expect(d.renewAt).toBeLessThan(Date.now() + 1810_000);
    expect(d.renewWhat).toMatch(/server token/);
    expect(decide(f, Date.now() + 1900_000)).toMatchObject({
      provision: true,
      reason: expect.stringMatching(/due/),
    });
    const sooner = config(["identity = a", "plugin.choria.server.provision.renew_before = 10m"]);
    expect(decide(sooner).renewAt).toBeGreaterThan(Date.now() + 3000_000 - 10_000);
  });

  it("renews before the TLS certificate expires when that comes first", async () => {
    provisioningJwt();
    credential("a", 365 * 86_400);
    const ca = await createCA("ca", 30);
    const leaf = await issueCert(ca, "a", { dns: ["a"] }, 1, "both");
    writeFileSync(join(dir, "cert.pem"), leaf.certPem);
    writeFileSync(join(dir, "key.pem"), leaf.keyPem);
    const d = decide(
      config([
        "identity = a",
        "plugin.security.choria.certificate = cert.pem",
        "plugin.security.choria.key = key.pem",
      ]),
    );
    expect(d.renewWhat).toMatch(/TLS certificate/);
    expect(d.renewAt).toBeLessThan(Date.now() + 86_400_000);
  });

  it("reads its settings with defaults beside the config", () => {
    const s = provisioningSettings(loadConfig(config(["identity = a"])));
    expect(s).toMatchObject({
      jwtFile: join(dir, "provisioning.jwt"),
      seedFile: join(dir, "server.seed"),
      tokenFile: join(dir, "server.jwt"),
      natsJwtFile: join(dir, "server.jwt.nats"),
      sslDir: join(dir, "ssl"),
      issuers: [],
    });
    expect(s.provision).toBeUndefined();
    expect(() =>
      provisioningSettings(loadConfig(config(["plugin.choria.server.provision.renew_before = soon"]))),
    ).toThrow(/not a duration/);
  });
});

describe("renewalTime", () => {
  it("renews a tenth of the life ahead, at least an hour, never before half way", () => {
    expect(renewalTime(0, 100 * HOUR)).toBe(90 * HOUR);
    expect(renewalTime(0, 3 * HOUR)).toBe(2 * HOUR);
    expect(renewalTime(0, 10_000)).toBe(5_000);
    expect(renewalTime(0, 100 * HOUR, HOUR / 2)).toBe(100 * HOUR - HOUR / 2);
    expect(renewalTime(undefined, 100 * HOUR)).toBe(99 * HOUR);
  });
});

describe("provisioningBrokers", () => {
  const claims = (c: Partial<ProvisioningClaims>) => ({ cht: "t", ...c }) as ProvisioningClaims;
  it("takes chu as a list, with the scheme chs asks for", async () => {
    expect(await provisioningBrokers(claims({ chu: "a:4222, tls://b:4443 ," }))).toEqual([
      "nats://a:4222",
      "tls://b:4443",
    ]);
    expect(await provisioningBrokers(claims({ chu: "a:4222", chs: true }))).toEqual(["tls://a:4222"]);
    await expect(provisioningBrokers(claims({ chu: "http://a:80" }))).rejects.toThrow(ProvisionError);
  });
});

describe("ProvisioningSecurity", () => {
  const client = (permissions: Record<string, boolean>, issuer = org) =>
    createClientToken(
      { callerid: "choria=p", publicKeyHex: generateKeyPair().publicHex, validityS: 60, permissions },
      issuer,
    );

  it("connects with the token's NATS credential and verifies callers from the trusted issuer", () => {
    const user = generateKeyPair();
    const sec = new ProvisioningSecurity(
      {
        cht: "t",
        chu: "x",
        chusr: "user.jwt",
        chpwd: nkeySeedTextFromEd25519Seed(user.seedHex),
      } as ProvisioningClaims,
      [orgKp.publicHex],
    );
    expect(sec.natsJwt).toBe("user.jwt");
    expect(sec.seedHex).toBe(user.seedHex);
    expect(sec.token).toBe("");
    expect(sec.verifyClientToken(client({ fleet_management: true })).callerid).toBe("choria=p");
    expect(sec.verifyClientToken(client({ provisioner: true })).callerid).toBe("choria=p");
    const codeOf = (fn: () => unknown) => {
      try {
        fn();
      } catch (err) {
        expect(err).toBeInstanceOf(SecurityError);
        return (err as SecurityError).code;
      }
      return "none";
    };
    expect(codeOf(() => sec.verifyClientToken(client({})))).toBe("no_fleet_management");
    expect(
      codeOf(() => sec.verifyClientToken(client({ fleet_management: true, signed_fleet_management: true }))),
    ).toBe("no_fleet_management");
    expect(
      codeOf(() => sec.verifyClientToken(client({ fleet_management: true }, orgIssuer(generateKeyPair())))),
    ).toBe("untrusted");
    expect(codeOf(() => sec.verifySignerToken("x"))).toBe("not_delegator");
  });
});

describe("files", () => {
  it("writes atomically with the mode asked for, leaving no temporary files", () => {
    const f = join(dir, "sub", "x.txt");
    writeFileAtomic(f, "one", 0o600);
    writeFileAtomic(f, "two", 0o600);
    expect(readFileSync(f, "utf8")).toBe("two");
    expect(statSync(f).mode & 0o777).toBe(0o600);
    expect(readdirSync(join(dir, "sub"))).toEqual(["x.txt"]);
    // a directory that cannot be made: under a plain file
    expect(() => writeFileAtomic(join(f, "x"), "y")).toThrow(ProvisionError);
  });

  it("sets one config key and keeps the rest", () => {
    const f = config(["# keep me", "identity = a", "plugin.choria.server.provision = false", "x = 1"]);
    setConfigKey(f, "plugin.choria.server.provision", "true");
    expect(readFileSync(f, "utf8")).toBe(
      "# keep me\nidentity = a\nx = 1\nplugin.choria.server.provision = true\n",
    );
  });

  it("renders settings and refuses line breaks and odd keys", () => {
    expect(renderConfig({ a: "1", "b.c": " 2 " })).toMatch(/\na = 1\nb\.c = 2\n$/);
    expect(() => renderConfig({ a: "1\nb = 2" })).toThrow(/line break/);
    expect(() => renderConfig({ "a b": "1" })).toThrow(/not valid/);
    expect(() => renderConfig({ "": "1" })).toThrow(/not valid/);
  });
});

describe("ProvisionAgent without a broker", () => {
  function agent(exits: ServerExitRequest[], lockMs = 100) {
    provisioningJwt();
    const f = config(["identity = a", "plugin.choria.server.provision = true"]);
    const d = decide(f);
    return new ProvisionAgent({
      provisionMode: true,
      identity: "a",
      jwt: d.jwt as string,
      claims: d.claims as ProvisioningClaims,
      settings: d.settings,
      requestExit: (r) => exits.push(r),
      wouldProvision: () => undefined,
      tuning: { lockMs, minDelayMs: 50, splayS: 1 },
    });
  }
  const req = (action: string, data: Record<string, unknown>, caller = "choria=one") =>
    ({ action, data, caller, sender: "s", agent: "choria_provision" }) as unknown as ActionRequest;

  async function run(a: ProvisionAgent, r: ActionRequest): Promise<ActionReply> {
    const reply = new ActionReply();
    const out = await (a.handlers()[r.action] as NonNullable<ReturnType<ProvisionAgent["handlers"]>[string]>)(
      r,
      reply,
    );
    if (out) Object.assign(reply.data, out);
    return reply;
  }

  it("lets another caller in once the lock has lapsed", async () => {
    const a = agent([]);
    expect((await run(a, req("jwt", { token: "t" }))).statuscode).toBe(0);
    expect((await run(a, req("jwt", { token: "t" }, "choria=two"))).statusmsg).toBe(
      "Could not obtain provisioning lock",
    );
    await new Promise((r) => setTimeout(r, 150));
    expect((await run(a, req("jwt", { token: "t" }, "choria=two"))).statuscode).toBe(0);
    expect(a.stats).toMatchObject({ requests: 3, refusedLock: 1, refusedToken: 0 });
  });

  it("restart asks for a restart after its delay, and stop() cancels one not yet due", async () => {
    const exits: ServerExitRequest[] = [];
    const a = agent(exits);
    expect((await run(a, req("restart", { token: "t", splay: 0 }))).statuscode).toBe(0);
    await new Promise((r) => setTimeout(r, 120));
    expect(exits).toEqual([{ action: "restart", reason: "choria_provision#restart" }]);
    const b = agent(exits);
    await run(b, req("restart", { token: "t", splay: 0 }));
    b.stop();
    await new Promise((r) => setTimeout(r, 120));
    expect(exits).toHaveLength(1);
    expect((await run(b, req("reprovision", { token: "t" }))).statusmsg).toMatch(
      /already in provisioning mode/,
    );
  });
});
