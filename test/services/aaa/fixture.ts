import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import bcrypt from "bcrypt";
import { stringify } from "yaml";
import {
  encodeMessage,
  encodeRequest,
  newRequestId,
  nowNanos,
  type Filter,
} from "../../../src/core/protocol/index.js";
import {
  createChainIssuer,
  createClientToken,
  generateKeyPair,
  orgIssuer,
  sign,
  writeSeedFile,
  type Issuer,
  type KeyPair,
} from "../../../src/core/security/index.js";

/** Trust material for an AAA service: org issuer, AAA login chain issuer, signing delegator. */
export interface AaaFixture {
  dir: string;
  orgKp: KeyPair;
  org: Issuer;
  chain: Issuer;
  delegatorKp: KeyPair;
  usersFile: string;
  auditFile: string;
  /** a config object with every path filled in; adjust and write with writeConfig */
  config: Record<string, unknown>;
  writeConfig(cfg: Record<string, unknown>, name?: string): string;
  writeUsers(users: unknown[]): void;
  cleanup(): void;
}

// cost 4 keeps the suite fast; the cost-10 numbers are measured in userlist.test.ts
export const hashPw = (pw: string, cost = 4): string => bcrypt.hashSync(pw, cost);

export const ALICE = { username: "alice", password: "alice-secret" };

export function aaaFixture(opts: { chainValidityS?: number } = {}): AaaFixture {
  const dir = mkdtempSync(join(tmpdir(), "chorus-aaa-"));
  const orgKp = generateKeyPair();
  const org = orgIssuer(orgKp);
  const chainKp = generateKeyPair();
  const chain = createChainIssuer(org, chainKp, opts.chainValidityS ?? 3600, { callerid: "aaa=login" });
  writeSeedFile(join(dir, "login.seed"), chainKp);
  writeFileSync(join(dir, "login.jwt"), chain.token as string);
  const delegatorKp = generateKeyPair();
  const delegator = createClientToken(
    {
      callerid: "aaa=signer",
      publicKeyHex: delegatorKp.publicHex,
      validityS: 3600,
      permissions: { authentication_delegator: true },
    },
    org,
  );
  writeSeedFile(join(dir, "signer.seed"), delegatorKp);
  writeFileSync(join(dir, "signer.jwt"), delegator);
  const usersFile = join(dir, "users.yaml");
  const auditFile = join(dir, "audit.log");
  const fx: AaaFixture = {
    dir,
    orgKp,
    org,
    chain,
    delegatorKp,
    usersFile,
    auditFile,
    config: {
      site: "testsite",
      loglevel: "error",
      authenticator: "userlist",
      authorizer: "actionlist",
      signer: "basicjwt",
      auditors: ["logfile"],
      port: 0,
      listen_address: "127.0.0.1",
      monitor_port: 0,
      logfile_auditor: { logfile: auditFile },
      basicjwt_signer: {
        signing_certificate: orgKp.publicHex,
        signing_token: "signer.jwt",
        signing_seed: "signer.seed",
        max_validity: "2h",
      },
      userlist_authenticator: {
        users_file: "users.yaml",
        validity: "1h",
        signing_key: "login.seed",
        signing_token: "login.jwt",
      },
    },
    writeConfig(cfg, name = "aaa.yaml") {
      const file = join(dir, name);
      writeFileSync(file, name.endsWith(".json") ? JSON.stringify(cfg) : stringify(cfg));
      return file;
    },
    writeUsers(users) {
      writeFileSync(usersFile, stringify(users));
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
  fx.writeUsers([
    {
      username: ALICE.username,
      password: hashPw(ALICE.password),
      organization: "acme",
      acls: ["rpcutil.*", "puppet.status"],
      properties: { group: "ops" },
      broker_permissions: { streams_user: true },
    },
  ]);
  return fx;
}

/** A login body with the ed25519 proof over "<timestamp>:<username>:<password>". */
export function loginBody(
  kp: KeyPair,
  username: string,
  password: string,
  timestamp = Math.floor(Date.now() / 1000),
): { username: string; password: string; signature: string; public_key: string; timestamp: string } {
  const ts = String(timestamp);
  return {
    username,
    password,
    signature: sign(kp.seedHex, Buffer.from(`${ts}:${username}:${password}`)).toString("hex"),
    public_key: kp.publicHex,
    timestamp: ts,
  };
}

/** A v2 request JSON for agent#action, as a client would build it before asking the signer. */
export function rpcRequest(
  agent: string,
  action: string,
  data: Record<string, unknown> = {},
  o: { caller?: string; sender?: string; collective?: string; filter?: Filter } = {},
): Buffer {
  return encodeRequest({
    message: encodeMessage(JSON.stringify({ agent, action, data })),
    id: newRequestId(),
    sender: o.sender ?? "client.example",
    caller: o.caller ?? "up=alice",
    collective: o.collective ?? "mcollective",
    agent,
    ttl: 60,
    time: nowNanos(),
    ...(o.filter && { filter: o.filter }),
  });
}
