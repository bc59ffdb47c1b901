import { randomBytes } from "node:crypto";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { hashPassword } from "../../services/aaa/index.js";
import {
  createChainIssuer,
  generateKeyPair,
  issueCert,
  issueNatsUserJwt,
  loadSeedFile,
  writeSeedFile,
  type CertPair,
  type ClientClaims,
  type ClientPermissions,
} from "../../core/security/index.js";
import {
  issueClientCredential,
  type CredentialFiles,
  type IssuingAuthority,
  writeSecret,
} from "./credentials.js";

/** What `chorus setup dev --aaa` adds. */
export interface AaaDevFiles {
  /** the AAA service config (JSON, aaasvc keys) */
  serviceConfig: string;
  /** Choria client config the service connects with (its delegator credential) */
  serviceChoriaConfig: string;
  usersFile: string;
  /** the admin user's generated password, also in `passwordFile` (0600) */
  username: string;
  password: string;
  passwordFile: string;
  /** chain issuer the authenticator signs login tokens with */
  chainIssuerSeedFile: string;
  chainIssuerTokenFile: string;
  /** delegator the signer signs requests with */
  signer: CredentialFiles;
  certFile: string;
  keyFile: string;
  port: number;
  loginUrl: string;
  signUrl: string;
  /** client config that logs in and has requests signed by the AAA service */
  clientConfig: string;
  /** the web console's config in AAA mode (its own credential: every inbox, inventory) */
  consoleConfig: string;
  /** the seed `chorus login` proves; made here so the broker user can be issued ahead */
  userSeedFile: string;
  /** where `chorus login` saves the token */
  userTokenFile: string;
  /** set when the broker has Streams: the JetStream auditor's stream and its credential */
  auditStream?: { stream: string; topic: string; config: string; credential: CredentialFiles };
}

export interface AaaDevContext {
  dir: string;
  authority: IssuingAuthority & { trust: NonNullable<IssuingAuthority["trust"]> };
  ca: CertPair;
  validityS: number;
  port: number;
  /** the broker runs Choria Streams: audit to a JetStream stream as well as the file */
  streams: boolean;
  /** shared client config lines (collective, broker, issuer, CA) */
  common: Record<string, string | number | boolean | undefined>;
  conf(lines: Record<string, string | number | boolean | undefined>, header: string): string;
}

/** Where the dev AAA service audits when the broker has Streams. */
export const AAA_AUDIT_STREAM = "CHORUS_AAA_AUDIT";
export const AAA_AUDIT_TOPIC = "chorus.aaa.audit";

/** Login tokens last a working day; the signer accepts nothing longer-lived than that. */
const LOGIN_VALIDITY = "8h";

// What the dev admin user may do: fleet requests only through the signer (as AAA users in
// Choria), plus the event and stream access the ordinary dev client has.
const USER_PERMISSIONS: ClientPermissions = {
  signed_fleet_management: true,
  events_viewer: true,
  streams_user: true,
};

/**
 * The AAA service's trust material and configs for a dev setup: a chain issuer for
 * login tokens, a delegator for signing, a TLS certificate, one admin user, and a
 * client config using login and remote signing.
 */
export async function createAaaDevFiles(ctx: AaaDevContext): Promise<AaaDevFiles> {
  const { dir, authority, validityS, port } = ctx;
  const credDir = join(dir, "credentials");
  const tls = join(dir, "tls");

  // The authenticator issues user tokens as a chain issuer, so nodes trust them
  // through the org issuer without the org seed living in the AAA service.
  const chainKp = generateKeyPair();
  const chain = createChainIssuer(authority.issuer, chainKp, validityS, { callerid: "aaa=authenticator" });
  const chainIssuerSeedFile = join(credDir, "aaa-chain-issuer.seed");
  const chainIssuerTokenFile = join(credDir, "aaa-chain-issuer.jwt");
  writeSeedFile(chainIssuerSeedFile, chainKp);
  writeSecret(chainIssuerTokenFile, `${chain.token as string}\n`);

  // The signer's delegator: nodes accept requests it signs for callers with signed_fleet_management.
  const signer = await issueClientCredential(
    authority,
    { seedFile: join(credDir, "aaa-signer.seed"), tokenFile: join(credDir, "aaa-signer.jwt") },
    { callerid: "aaa=signer", validityS, permissions: { authentication_delegator: true } },
  );

  const cert = await issueCert(ctx.ca, "aaa.chorus.local", { localhost: true }, 365, "server");
  const certFile = join(tls, "aaa.pem");
  const keyFile = join(tls, "aaa.key");
  writeFileSync(certFile, cert.certPem);
  writeSecret(keyFile, cert.keyPem);

  const username = "admin";
  const password = randomBytes(18).toString("base64url");
  const passwordFile = join(dir, "aaa-admin.password");
  writeSecret(passwordFile, `${password}\n`);
  const usersFile = join(dir, "aaa-users.json");
  const users = [
    {
      username,
      password: await hashPassword(password),
      acls: ["*"],
      broker_permissions: USER_PERMISSIONS,
    },
  ];
  writeSecret(usersFile, `${JSON.stringify(users, null, 2)}\n`);

  // The user's key exists before the first login (login keeps an existing seed), so the
  // broker user can be issued now: the broker only admits NATS users the org signed.
  const userSeedFile = join(credDir, "aaa-user.seed");
  const userTokenFile = join(credDir, "aaa-user.jwt");
  let userKp;
  if (existsSync(userSeedFile)) userKp = loadSeedFile(userSeedFile);
  else {
    userKp = generateKeyPair();
    writeSeedFile(userSeedFile, userKp);
  }
  const userPublic = userKp.publicHex;
  const userClaims: ClientClaims = {
    purpose: "choria_client_id",
    iss: "",
    public_key: userPublic,
    callerid: `up=${username}`,
    permissions: USER_PERMISSIONS,
  };
  const natsJwt = await issueNatsUserJwt(
    authority.issuer,
    authority.trust,
    userClaims,
    userPublic,
    Math.floor(Date.now() / 1000) + validityS,
  );
  writeSecret(`${userTokenFile}.nats`, `${natsJwt}\n`);

  const base = `https://127.0.0.1:${port}`;
  const loginUrl = `${base}/choria/v1/login`;
  const signUrl = `${base}/choria/v1/sign`;

  const serviceChoriaConfig = join(dir, "aaa-service.conf");
  writeFileSync(
    serviceChoriaConfig,
    ctx.conf(
      {
        ...ctx.common,
        identity: "aaa.chorus.local",
        "plugin.security.choria.seed_file": "credentials/aaa-signer.seed",
        "plugin.security.choria.token_file": "credentials/aaa-signer.jwt",
      },
      "Chorus AAA service: its own connection to the broker",
    ),
  );

  // The JetStream auditor connects as its own user that may only publish audit
  // records and create or inspect its stream.
  let auditStream: AaaDevFiles["auditStream"];
  if (ctx.streams) {
    const credential = await issueClientCredential(
      authority,
      { seedFile: join(credDir, "aaa-audit.seed"), tokenFile: join(credDir, "aaa-audit.jwt") },
      {
        callerid: "aaa=auditor",
        validityS,
        claims: {
          pub_subjects: [
            AAA_AUDIT_TOPIC,
            `$JS.API.STREAM.INFO.${AAA_AUDIT_STREAM}`,
            `$JS.API.STREAM.CREATE.${AAA_AUDIT_STREAM}`,
          ],
        },
      },
    );
    const config = join(dir, "aaa-audit.conf");
    writeFileSync(
      config,
      ctx.conf(
        {
          ...ctx.common,
          "plugin.security.choria.seed_file": "credentials/aaa-audit.seed",
          "plugin.security.choria.token_file": "credentials/aaa-audit.jwt",
        },
        "Chorus AAA service: the JetStream auditor's connection (publishes audit records only)",
      ),
    );
    auditStream = { stream: AAA_AUDIT_STREAM, topic: AAA_AUDIT_TOPIC, config, credential };
  }

  const serviceConfig = join(dir, "aaa.json");
  const service = {
    loglevel: "info",
    logfile: join(dir, "aaa.log"),
    choria_config: serviceChoriaConfig,
    site: "dev",
    authenticator: "userlist",
    auditors: auditStream ? ["logfile", "jetstream"] : ["logfile"],
    authorizer: "actionlist",
    signer: "basicjwt",
    port,
    tls_certificate: certFile,
    tls_key: keyFile,
    // no tls_ca: dev clients prove themselves with their JWT and key, not a certificate
    basicjwt_signer: {
      signing_certificate: authority.issuer.publicHex,
      signing_token: signer.tokenFile,
      signing_seed: signer.seedFile,
      max_validity: LOGIN_VALIDITY,
      choria_service: false,
      allow_bearer_tokens: false,
    },
    logfile_auditor: { logfile: join(dir, "aaa-audit.log") },
    ...(auditStream && {
      jetstream_auditor: {
        servers: String(ctx.common["plugin.choria.middleware_hosts"] ?? ""),
        topic: auditStream.topic,
        stream: auditStream.stream,
        credentials: auditStream.config,
        spool: join(dir, "aaa-audit.spool"),
      },
    }),
    userlist_authenticator: {
      users_file: usersFile,
      validity: LOGIN_VALIDITY,
      signing_key: chainIssuerSeedFile,
      signing_token: chainIssuerTokenFile,
    },
  };
  writeSecret(serviceConfig, `${JSON.stringify(service, null, 2)}\n`);

  const clientConfig = join(dir, "aaa-client.conf");
  writeFileSync(
    clientConfig,
    ctx.conf(
      {
        ...ctx.common,
        "plugin.security.choria.seed_file": "credentials/aaa-user.seed",
        "plugin.security.choria.token_file": "credentials/aaa-user.jwt",
        "plugin.choria.security.request_signer.url": signUrl,
        "plugin.choria.security.request_signer.token_file": "credentials/aaa-user.jwt",
        "plugin.choria.security.request_signer.seed_file": "credentials/aaa-user.seed",
        "plugin.login.aaasvc.login.url": loginUrl,
      },
      "Chorus client using the AAA service: `chorus login` first, requests are signed by the service",
    ),
  );

  // The web console in AAA mode: each user's requests are signed by the service, and the
  // console's one connection reads every user's replies (so it may subscribe to every
  // inbox: it sees what its users see) plus the inventory it polls for the fleet page.
  await issueClientCredential(
    authority,
    { seedFile: join(credDir, "aaa-console.seed"), tokenFile: join(credDir, "aaa-console.jwt") },
    {
      callerid: "chorus=console",
      validityS,
      // a long-running service: Choria's `service` permission lifts the signer's 8 h cap
      permissions: { signed_fleet_management: true, events_viewer: true, streams_user: true, service: true },
      claims: { agents: ["rpcutil.inventory"], sub_subjects: ["*.reply.>"] },
    },
  );
  const consoleConfig = join(dir, "aaa-console.conf");
  writeFileSync(
    consoleConfig,
    ctx.conf(
      {
        ...ctx.common,
        "plugin.security.choria.seed_file": "credentials/aaa-console.seed",
        "plugin.security.choria.token_file": "credentials/aaa-console.jwt",
        "plugin.choria.security.request_signer.url": signUrl,
        "plugin.choria.security.request_signer.token_file": "credentials/aaa-console.jwt",
        "plugin.choria.security.request_signer.seed_file": "credentials/aaa-console.seed",
        "plugin.login.aaasvc.login.url": loginUrl,
      },
      "The web console with AAA logins: `chorus ui --config aaa-console.conf` (users log in through the service)",
    ),
  );

  return {
    consoleConfig,
    serviceConfig,
    serviceChoriaConfig,
    usersFile,
    username,
    password,
    passwordFile,
    chainIssuerSeedFile,
    chainIssuerTokenFile,
    signer,
    certFile,
    keyFile,
    port,
    loginUrl,
    signUrl,
    clientConfig,
    userSeedFile,
    userTokenFile,
    ...(auditStream && { auditStream }),
  };
}
