import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import {
  addChoriaSigningKeys,
  createChainIssuer,
  createProvisioningToken,
  generateKeyPair,
  issueProvisioningUsers,
  writeSeedFile,
  type ClientPermissions,
  type NatsTrust,
  type Issuer,
} from "../../core/security/index.js";
import { PROVISIONING_STREAM, PROVISIONING_SUBJECTS } from "../../services/provisioner/index.js";
import { issueClientCredential, type CredentialFiles, writeSecret } from "./credentials.js";
import { SetupError } from "./errors.js";

/** What `chorus setup dev --provisioning` adds. */
export interface ProvisioningDevFiles {
  /** provisioning.jwt: what a node in provisioning mode trusts and connects with (secret: it holds `chpwd`) */
  tokenFile: string;
  /** the `cht` every choria_provision request must carry, also `token` in provisioner.yaml */
  token: string;
  /** the provisioner service config (YAML, Choria's keys plus Chorus's) */
  serviceConfig: string;
  /** Chorus client config the provisioner uses in the CHORIA account (JetStream work queue, elections) */
  choriaConfig: string;
  /** the provisioner's Chorus client credential; its `.nats` is for the CHORIA account */
  credential: CredentialFiles;
  /** the provisioner's PROVISIONING-account NATS user JWT, for the same seed */
  provisioningNatsJwtFile: string;
  /** chain issuer the provisioner mints server tokens and NATS users with; a CHORIA signing key */
  chainIssuerSeedFile: string;
  chainIssuerTokenFile: string;
  chainIssuerPublic: string;
  /** the dev helper provisioner.yaml runs: configuration and server claims per node */
  helper: string;
  /** config of a node that starts in provisioning mode, and its identity */
  serverConfig: string;
  identity: string;
  /** the PROVISIONING account's public key */
  accountPublic: string;
}

export interface ProvisioningDevContext {
  dir: string;
  issuer: Issuer;
  trust: NatsTrust;
  /** every broker of the cell (a cluster with `setup dev --brokers N`) */
  brokerUrls: string[];
  collective: string;
  caFile: string;
  validityS: number;
  /** the broker runs Choria Streams: the provisioner queues and elects there */
  streams: boolean;
  /** shared client config lines (collective, broker, issuer, CA) */
  common: Record<string, string | number | boolean | undefined>;
  conf(lines: Record<string, string | number | boolean | undefined>, header: string): string;
  /** the unprovisioned node's identity (default new1.example.net) */
  identity?: string;
}

// The provisioner talks to nodes in the PROVISIONING account only; in CHORIA it needs
// Streams for its work queue, elections for HA, and to hear the fleet's events.
const PROVISIONER_PERMISSIONS: ClientPermissions = {
  streams_user: true,
  election_user: true,
  events_viewer: true,
  provisioner: true,
};

const SITE = "dev";

// Written as a script, not code Chorus runs, so the dev setup shows the helper
// contract a site replaces with its own: JSON in on stdin, JSON out on stdout.
function helperScript(config: Record<string, string>, claims: Record<string, unknown>): string {
  return `#!/usr/bin/env node
// Provisioning helper for the Chorus dev setup (written by \`chorus setup dev --provisioning\`).
// The provisioner runs it per node with the node's facts on stdin and expects JSON naming
// the node's configuration and server token claims on stdout.
import { readFileSync } from "node:fs";

const base = ${JSON.stringify(config, null, 2)};
const claims = ${JSON.stringify(claims)};

const input = JSON.parse(readFileSync(0, "utf8"));
const identity = String(input.identity ?? "");
if (!/^[\\w.-]+$/.test(identity)) {
  process.stdout.write(JSON.stringify({ defer: true, msg: "no usable identity" }));
  process.exit(0);
}
// where the node keeps the seed it made in gen25519; its token goes beside it
const dir = String(input.ed25519_pubkey?.directory ?? "");
if (dir === "") {
  process.stdout.write(JSON.stringify({ defer: true, msg: "the node made no ed25519 key" }));
  process.exit(0);
}
const configuration = {
  ...base,
  identity,
  "plugin.security.choria.seed_file": \`\${dir}/server.seed\`,
  "plugin.security.choria.token_file": \`\${dir}/server.jwt\`,
};
process.stdout.write(
  JSON.stringify({ configuration, server_claims: claims, msg: \`provisioned \${identity}\` }),
);
`;
}

/**
 * The provisioning side of a dev setup: a provisioning token for new nodes, the
 * provisioner's credentials in both accounts, its chain issuer (added to the CHORIA
 * account's signing keys, hence the returned trust, which the caller writes), its
 * config and helper, and the config of a node that starts unprovisioned.
 */
export async function createProvisioningDevFiles(
  ctx: ProvisioningDevContext,
): Promise<{ files: ProvisioningDevFiles; trust: NatsTrust }> {
  const { dir, issuer, validityS } = ctx;
  if (issuer.kind !== "org")
    throw new SetupError("usage", "the provisioning setup needs the org issuer to vouch for the provisioner");
  const credDir = join(dir, "credentials");
  const identity = ctx.identity ?? "new1.example.net";
  const expiresAt = Math.floor(Date.now() / 1000) + validityS;

  // The provisioner signs server tokens as a chain issuer, so the org seed stays off it,
  // and the same key in account form mints each node's CHORIA NATS user.
  const chainKp = generateKeyPair();
  const chain = createChainIssuer(issuer, chainKp, validityS, {
    callerid: `provisioner=${SITE}`,
    permissions: { provisioner: true },
  });
  const chainIssuerSeedFile = join(credDir, "provisioner-chain-issuer.seed");
  const chainIssuerTokenFile = join(credDir, "provisioner-chain-issuer.jwt");
  writeSeedFile(chainIssuerSeedFile, chainKp);
  writeSecret(chainIssuerTokenFile, `${chain.token as string}\n`);
  const trust = await addChoriaSigningKeys(ctx.trust, [chainKp.publicHex]);

  const credential = await issueClientCredential(
    { issuer, trust },
    { seedFile: join(credDir, "provisioner.seed"), tokenFile: join(credDir, "provisioner.jwt") },
    {
      callerid: "choria=provisioner",
      validityS,
      permissions: PROVISIONER_PERMISSIONS,
      // its work queue: queue nodes, and create or fix the stream it lives in
      claims: {
        pub_subjects: [
          `${PROVISIONING_SUBJECTS}.>`,
          `$JS.API.STREAM.CREATE.${PROVISIONING_STREAM}`,
          `$JS.API.STREAM.UPDATE.${PROVISIONING_STREAM}`,
          // its own startup event, as every Choria service announces itself
          "choria.lifecycle.event.startup.provisioner",
        ],
      },
    },
  );
  const users = await issueProvisioningUsers(trust, credential.publicHex, expiresAt);
  const provisioningNatsJwtFile = join(credDir, "provisioner-provisioning.nats");
  writeSecret(provisioningNatsJwtFile, `${users.provisioner.jwt}\n`);

  const token = randomBytes(32).toString("hex");
  const provisioningJwt = createProvisioningToken(
    {
      cht: token,
      chu: ctx.brokerUrls.join(","),
      chs: true,
      chusr: users.node.jwt,
      chpwd: users.node.seed,
      v2: true,
      validityS,
    },
    issuer,
  );
  const tokenFile = join(dir, "provisioning.jwt");
  writeSecret(tokenFile, `${provisioningJwt}\n`);

  const choriaConfig = join(dir, "provisioner-choria.conf");
  writeFileSync(
    choriaConfig,
    ctx.conf(
      {
        ...ctx.common,
        "plugin.security.choria.seed_file": "credentials/provisioner.seed",
        "plugin.security.choria.token_file": "credentials/provisioner.jwt",
      },
      "Chorus provisioner: its connection to the CHORIA account (work queue, elections)",
    ),
  );

  // What a provisioned node runs with: the dev servers' settings, with paths absolute
  // because the node's config may live anywhere.
  const nodeConfig: Record<string, string> = {
    collectives: ctx.collective,
    main_collective: ctx.collective,
    "plugin.choria.middleware_hosts": ctx.brokerUrls.join(","),
    "plugin.security.provider": "choria",
    "plugin.security.choria.ca": ctx.caFile,
    "plugin.security.issuer.names": "dev",
    "plugin.security.issuer.dev.public": issuer.publicHex,
    "plugin.yaml": join(dir, "facts.json"),
    "plugin.actionpolicy.allow_unconfigured": "true",
    "plugin.choria.server.provision": "false",
  };
  const helper = join(dir, "provisioning-helper.mjs");
  writeFileSync(
    helper,
    helperScript(nodeConfig, {
      collectives: [ctx.collective],
      permissions: { submission: true, service_host: true },
    }),
    { mode: 0o755 },
  );

  const serviceConfig = join(dir, "provisioner.yaml");
  const service = {
    // `token` must equal every node's `cht`; both are secret
    token,
    site: SITE,
    loglevel: "info",
    logfile: join(dir, "provisioner.log"),
    interval: "1m",
    helper,
    helper_timeout: "10s",
    lifecycle_component: "provision_mode_server",
    leader_election: ctx.streams,
    features: { pki: false, jwt: true, ed25519: true },
    jwt_verify_cert: issuer.publicHex,
    jwt_signing_key: chainIssuerSeedFile,
    jwt_signing_token: chainIssuerTokenFile,
    server_jwt_validity: `${Math.max(1, Math.round(validityS / 3600))}h`,
    broker_urls: ctx.brokerUrls,
    provisioning_credentials: {
      seed: credential.seedFile,
      token: credential.tokenFile,
      nats: provisioningNatsJwtFile,
      ca: ctx.caFile,
    },
    choria_config: choriaConfig,
  };
  writeSecret(
    serviceConfig,
    `# Chorus provisioner (written by \`chorus setup dev --provisioning\`)\n${stringify(service)}`,
  );

  const serverConfig = join(dir, "server-unprovisioned.conf");
  writeFileSync(
    serverConfig,
    ctx.conf(
      {
        identity,
        "plugin.choria.server.provision": true,
        "plugin.choria.server.provision.jwt_file": "provisioning.jwt",
        "plugin.security.provider": "choria",
        "plugin.security.choria.ca": "tls/ca.pem",
        "plugin.yaml": "facts.json",
      },
      `Chorus server ${identity}, not provisioned yet: no token, the provisioner configures it`,
    ),
  );

  return {
    trust,
    files: {
      tokenFile,
      token,
      serviceConfig,
      choriaConfig,
      credential,
      provisioningNatsJwtFile,
      chainIssuerSeedFile,
      chainIssuerTokenFile,
      chainIssuerPublic: chainKp.publicHex,
      helper,
      serverConfig,
      identity,
      accountPublic: trust.provisioningAccountPublic,
    },
  };
}
