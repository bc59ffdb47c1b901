import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import {
  createCA,
  createNatsTrust,
  generateKeyPair,
  issueCert,
  issueLeafCredentials,
  orgIssuer,
  writeSeedFile,
} from "../../core/security/index.js";
import { ASYNC_RECORD_WILDCARD, ASYNC_REPLY_WILDCARD } from "../../core/protocol/index.js";
import { createAaaDevFiles, type AaaDevFiles } from "./aaa.js";
import { createProvisioningDevFiles, type ProvisioningDevFiles } from "./provisioning.js";
import { createMixedDevFiles, type MixedDevFiles } from "./mixed.js";
import { SetupError } from "./errors.js";
import {
  issueClientCredential,
  issueServerCredential,
  type CredentialFiles,
  type IssuingAuthority,
  writeSecret,
} from "./credentials.js";

export interface DevSetupOptions {
  dir: string;
  collective?: string;
  /** servers to create credentials and configs for */
  serverIdentities?: string[];
  /** client caller id, Choria's "kind=name" form */
  callerId?: string;
  brokerPort?: number;
  brokerStatsPort?: number;
  /**
   * Brokers in a local cluster (default 1). With N > 1: broker-1.conf..broker-N.conf, client
   * ports brokerPort..brokerPort+N-1 (or `brokerPorts`), route ports peerPort.. (default
   * 5222, or `peerPorts`), a store each, and every client lists all N brokers.
   */
  brokers?: number;
  /** explicit client ports, one per broker (overrides brokerPort + i) */
  brokerPorts?: number[];
  /** explicit cluster (route) ports, one per broker */
  peerPorts?: number[];
  /** first route port when `peerPorts` is not given (default 5222) */
  peerPort?: number;
  /** token validity; dev tokens default to 30 days */
  validityS?: number;
  /** refuse to overwrite an existing non-empty dir unless set */
  force?: boolean;
  /** Choria Streams (JetStream) in the broker, store in `<dir>/streams`; default true */
  streams?: boolean;
  /** also an AAA service config, user, trust material and `aaa-client.conf` */
  aaa?: boolean;
  /** the AAA service's HTTPS port (default 8443) */
  aaaPort?: number;
  /** also a provisioning token, the provisioner's credentials and config, and an unprovisioned server config */
  provisioning?: boolean;
  /** the receiver's HTTP API port written to receiver.yaml (default 8091) */
  receiverPort?: number;
  /**
   * Also the broker's x509 edge on this port, with protocol v1 credentials from the dev CA:
   * x509-client.conf, x509-emulator.conf and mixed-client.conf (one broker only).
   */
  x509Port?: number;
  /** the v1 user's certname is `<user>.mcollective` (default $USER, or developer) */
  x509User?: string;
}

export interface DevSetup {
  /** with `x509Port`: the x509 edge and the v1 and mixed client files */
  mixed?: MixedDevFiles;
  dir: string;
  collective: string;
  brokerUrl: string;
  issuerPublic: string;
  issuerSeedFile: string;
  caFile: string;
  /** the first broker's config (broker.conf, or broker-1.conf in a cluster) */
  brokerConfig: string;
  /** every broker's config: [broker.conf] alone, or broker-1.conf..broker-N.conf */
  brokerConfigs: string[];
  /** every broker's client URL, in brokerConfigs order */
  brokerUrls: string[];
  clientConfig: string;
  /** a client that may also administer Choria Streams (streams_admin): create and remove KV buckets and governors */
  adminClientConfig: string;
  emulatorConfig: string;
  serverConfigs: Record<string, string>;
  client: CredentialFiles;
  adminClient: CredentialFiles;
  /** set with `aaa` */
  aaa?: AaaDevFiles;
  /** set with `provisioning` */
  provisioning?: ProvisioningDevFiles;
  /** the async-reply receiver: its service config (receiver.yaml) and its NATS client config */
  receiver: {
    serviceConfig: string;
    clientConfig: string;
    credentials: CredentialFiles;
    /** the bearer token its HTTP API wants (0600); client.conf points at it */
    apiTokenFile: string;
  };
  /**
   * credentials/leaf.creds: the NATS user an edge broker's leafnode link logs in as to
   * these brokers (`leafnode_remote.<name>.credentials`)
   */
  leafCredentials: string;
}

const DAY = 86_400;

/** A Choria-style `key = value` config file's text; undefined values are left out. */
export function conf(lines: Record<string, string | number | boolean | undefined>, header: string): string {
  const out = [`# ${header}`, "# written by `chorus setup dev`; paths are relative to this file", ""];
  for (const [k, v] of Object.entries(lines)) if (v !== undefined) out.push(`${k} = ${String(v)}`);
  return `${out.join("\n")}\n`;
}

/**
 * A complete local trust setup: org issuer, NATS operator/accounts, CA and broker TLS
 * certificate, client/server/emulator credentials, and configs wired together so a
 * broker, servers, an emulator and a client run with full security on.
 */
/** A certname-safe user name for the v1 credentials. */
function x509User(given: string | undefined): string {
  const u = given ?? process.env.USER ?? "developer";
  if (!/^[A-Za-z0-9_][\w-]{0,62}$/.test(u))
    throw new SetupError("usage", `"${u}" is not a usable x509 user name (letters, digits, _ and -)`);
  return u;
}

export async function createDevSetup(opts: DevSetupOptions): Promise<DevSetup> {
  if (opts.x509Port !== undefined && (opts.brokers ?? 1) > 1)
    throw new SetupError("usage", "--x509-port works with one broker: the x509 edge joins it");
  const dir = resolve(opts.dir);
  if (existsSync(dir) && readdirSync(dir).length > 0 && !opts.force) {
    throw new SetupError("exists", `${dir} is not empty: choose another --dir or pass --force to overwrite`);
  }
  const collective = opts.collective ?? "mcollective";
  const port = opts.brokerPort ?? 4222;
  const brokerCount = opts.brokers ?? 1;
  if (!Number.isInteger(brokerCount) || brokerCount < 1 || brokerCount > 9) {
    throw new SetupError("config", `brokers must be between 1 and 9, got ${brokerCount}`);
  }
  const clientPorts = opts.brokerPorts ?? Array.from({ length: brokerCount }, (_, i) => port + i);
  const peerPorts =
    opts.peerPorts ?? Array.from({ length: brokerCount }, (_, i) => (opts.peerPort ?? 5222) + i);
  if (clientPorts.length !== brokerCount || (brokerCount > 1 && peerPorts.length !== brokerCount)) {
    throw new SetupError("config", `brokerPorts and peerPorts need one port per broker (${brokerCount})`);
  }
  const validityS = opts.validityS ?? 30 * DAY;
  const callerId = opts.callerId ?? `choria=${process.env.USER || "developer"}`;
  const identities = opts.serverIdentities ?? ["node1.example.net"];
  mkdirSync(join(dir, "tls"), { recursive: true, mode: 0o700 });
  mkdirSync(join(dir, "credentials"), { recursive: true, mode: 0o700 });

  const issuerKp = generateKeyPair();
  const issuerSeedFile = join(dir, "issuer.seed");
  writeSeedFile(issuerSeedFile, issuerKp);
  writeFileSync(join(dir, "issuer.public"), `${issuerKp.publicHex}\n`);
  const issuer = orgIssuer(issuerKp);
  let trust = await createNatsTrust(issuer);
  // written again below when provisioning adds its chain issuer to the CHORIA account
  const trustFile = join(dir, "nats-trust.json");
  writeFileSync(trustFile, JSON.stringify(trust, null, 2), { mode: 0o600 });
  const authority: IssuingAuthority = { issuer, trust };

  const ca = await createCA("Chorus development CA", 365);
  const broker = await issueCert(ca, "broker.chorus.local", { localhost: true }, 365, "both");
  const caFile = join(dir, "tls", "ca.pem");
  writeFileSync(caFile, ca.certPem);
  writeFileSync(join(dir, "tls", "ca.key"), ca.keyPem, { mode: 0o600 });
  writeFileSync(join(dir, "tls", "broker.pem"), broker.certPem);
  writeFileSync(join(dir, "tls", "broker.key"), broker.keyPem, { mode: 0o600 });

  const credDir = join(dir, "credentials");
  const cred = (name: string) => ({
    seedFile: join(credDir, `${name}.seed`),
    tokenFile: join(credDir, `${name}.jwt`),
  });
  const client = await issueClientCredential(authority, cred("client"), {
    callerid: callerId,
    validityS,
    permissions: { fleet_management: true, events_viewer: true, streams_user: true },
  });
  // Day-to-day work does not need to create or delete streams, so that right is in a
  // second client, used on purpose (`--config admin-client.conf`), as go-choria keeps
  // streams_admin out of ordinary client tokens.
  const adminClient = await issueClientCredential(authority, cred("admin-client"), {
    callerid: `${callerId}-admin`,
    validityS,
    permissions: { fleet_management: true, events_viewer: true, streams_user: true, streams_admin: true },
  });
  // The broker's own client: it creates the managed streams (streams_admin) and runs
  // adapters, whose ingest and output subjects are whatever the operator configures,
  // so it is an org_admin like go-choria's in-process broker connections.
  await issueClientCredential(authority, cred("broker"), {
    callerid: "choria=broker.chorus.local",
    validityS,
    permissions: { streams_admin: true, events_viewer: true, org_admin: true },
  });
  // An edge site's broker joins these brokers through one leafnode link as this user.
  const leafCredentials = join(credDir, "leaf.creds");
  writeFileSync(
    leafCredentials,
    await issueLeafCredentials(issuer, trust, {
      name: "leafnode",
      expiresAt: Math.floor(Date.now() / 1000) + validityS,
    }),
    { mode: 0o600 },
  );
  const brokerUrls = clientPorts.map((p) => `tls://127.0.0.1:${p}`);
  const brokerUrl = brokerUrls[0] as string;
  const common = {
    collectives: collective,
    main_collective: collective,
    "plugin.choria.middleware_hosts": brokerUrls.join(","),
    "plugin.security.provider": "choria",
    "plugin.security.choria.ca": "tls/ca.pem",
    "plugin.security.issuer.names": "dev",
    "plugin.security.issuer.dev.public": issuerKp.publicHex,
  };

  const clustered = brokerCount > 1;
  const brokerConfigs = clientPorts.map((clientPort, i) => {
    const n = i + 1;
    const path = join(dir, clustered ? `broker-${n}.conf` : "broker.conf");
    // One certificate (broker.chorus.local, valid for 127.0.0.1) serves every broker and
    // every route; the identities differ, and so do the JetStream server names made from them.
    const identity = clustered ? `broker-${n}.chorus.local` : "broker.chorus.local";
    writeFileSync(
      path,
      conf(
        {
          identity,
          "plugin.choria.broker_network": true,
          "plugin.choria.network.listen_address": "127.0.0.1",
          "plugin.choria.network.client_port": clientPort,
          "plugin.choria.network.peer_port": clustered ? peerPorts[i] : undefined,
          "plugin.choria.network.peers": clustered
            ? peerPorts
                .filter((_, j) => j !== i)
                .map((p) => `nats://127.0.0.1:${p}`)
                .join(",")
            : undefined,
          "plugin.choria.stats_port":
            opts.brokerStatsPort === undefined ? undefined : opts.brokerStatsPort + i,
          "plugin.security.choria.certificate": "tls/broker.pem",
          "plugin.security.choria.key": "tls/broker.key",
          "plugin.security.choria.ca": "tls/ca.pem",
          "plugin.choria.network.nats_trust_file": "nats-trust.json",
          "plugin.choria.network.stream.store":
            opts.streams === false ? undefined : clustered ? `streams/broker-${n}` : "streams",
          "plugin.security.choria.seed_file": "credentials/broker.seed",
          "plugin.security.choria.token_file": "credentials/broker.jwt",
        },
        clustered ? `Chorus broker ${n} of ${brokerCount}` : "Chorus broker",
      ),
    );
    return path;
  });
  const brokerConfig = brokerConfigs[0] as string;

  // The receiver's API serves every caller's replies: it wants a bearer token, which the
  // client configs point at (`chorus job` reads it from there).
  const receiverToken = join(dir, "receiver-api.token");
  writeSecret(receiverToken, `${randomBytes(24).toString("base64url")}\n`);
  const receiverClient = { "plugin.chorus.receiver.api_token_file": "receiver-api.token" };

  const clientConfig = join(dir, "client.conf");
  writeFileSync(
    clientConfig,
    conf(
      {
        ...common,
        "plugin.security.choria.seed_file": "credentials/client.seed",
        "plugin.security.choria.token_file": "credentials/client.jwt",
        ...receiverClient,
      },
      "Chorus client",
    ),
  );
  const adminClientConfig = join(dir, "admin-client.conf");
  writeFileSync(
    adminClientConfig,
    conf(
      {
        ...common,
        "plugin.security.choria.seed_file": "credentials/admin-client.seed",
        "plugin.security.choria.token_file": "credentials/admin-client.jwt",
        ...receiverClient,
      },
      "Chorus client with streams_admin: creates and removes KV buckets and governors",
    ),
  );

  const facts = join(dir, "facts.json");
  writeFileSync(facts, `${JSON.stringify({ os: "linux", role: "dev", location: "lab" }, null, 2)}\n`);
  const serverConfigs: Record<string, string> = {};
  for (const identity of identities) {
    const name = `server-${identity}`;
    await issueServerCredential(authority, cred(name), {
      identity,
      collectives: [collective],
      validityS,
      permissions: { submission: true, service_host: true },
    });
    const path = join(dir, `${name}.conf`);
    writeFileSync(
      path,
      conf(
        {
          ...common,
          identity,
          "plugin.security.choria.seed_file": `credentials/${name}.seed`,
          "plugin.security.choria.token_file": `credentials/${name}.jwt`,
          "plugin.yaml": "facts.json",
          "plugin.actionpolicy.allow_unconfigured": true,
          // the spool carries workflow events (the job agent) and `chorus tool submit`
          "plugin.choria.submission.spool": `spool/${identity}`,
        },
        `Chorus server ${identity}`,
      ),
    );
    serverConfigs[identity] = path;
  }

  // The emulator hosts many identities on one NATS user, so its user may subscribe
  // to every node subject; each virtual node still signs replies with its own key.
  await issueServerCredential(authority, cred("emulator"), {
    identity: "emulator.chorus.local",
    collectives: [collective],
    validityS,
    // submission: emulated nodes publish their workflow events as real nodes' spools do
    permissions: { service_host: true, submission: true },
    extraNats: { sub: [`${collective}.node.>`] },
  });
  const emulatorConfig = join(dir, "emulator.conf");
  writeFileSync(
    emulatorConfig,
    conf(
      {
        ...common,
        identity: "emulator.chorus.local",
        "plugin.security.choria.seed_file": "credentials/emulator.seed",
        "plugin.security.choria.token_file": "credentials/emulator.jwt",
        "plugin.chorus.emulator.issuer_seed_file": "issuer.seed",
        "plugin.actionpolicy.allow_unconfigured": true,
      },
      "Chorus emulator",
    ),
  );

  // The receiver stores every caller's asynchronous replies: it reads the async reply
  // subjects of all callers and the request records, and keeps the CHORUS_REPLIES stream
  // (streams_admin). Everyday clients cannot read each other's replies.
  const receiverCred = await issueClientCredential(authority, cred("receiver"), {
    callerid: "chorus=receiver",
    validityS,
    permissions: { streams_admin: true, streams_user: true },
    claims: { sub_subjects: [ASYNC_REPLY_WILDCARD, ASYNC_RECORD_WILDCARD] },
  });
  const receiverClientConfig = join(dir, "receiver.conf");
  writeFileSync(
    receiverClientConfig,
    conf(
      {
        ...common,
        "plugin.security.choria.seed_file": "credentials/receiver.seed",
        "plugin.security.choria.token_file": "credentials/receiver.jwt",
      },
      "NATS connection of the async-reply receiver (chorus receiver run --config receiver.yaml)",
    ),
  );
  const receiverConfig = join(dir, "receiver.yaml");
  writeFileSync(
    receiverConfig,
    [
      "# chorus receiver run --config receiver.yaml (written by `chorus setup dev`)",
      "choria_config: receiver.conf",
      "store: sqlite:receiver.db",
      "mode: stream",
      `http_listen: 127.0.0.1:${opts.receiverPort ?? 8091}`,
      "http_token_file: receiver-api.token",
      "",
    ].join("\n"),
  );

  const aaa = opts.aaa
    ? await createAaaDevFiles({
        dir,
        authority: { issuer, trust },
        ca,
        validityS,
        port: opts.aaaPort ?? 8443,
        streams: opts.streams !== false,
        // every AAA config is a client's
        common: { ...common, ...receiverClient },
        conf,
      })
    : undefined;

  let provisioning: ProvisioningDevFiles | undefined;
  if (opts.provisioning) {
    const p = await createProvisioningDevFiles({
      dir,
      issuer,
      trust,
      brokerUrls,
      collective,
      caFile,
      validityS,
      streams: opts.streams !== false,
      common,
      conf,
    });
    trust = p.trust;
    writeFileSync(trustFile, JSON.stringify(trust, null, 2), { mode: 0o600 });
    provisioning = p.files;
  }

  const mixed =
    opts.x509Port === undefined
      ? undefined
      : await createMixedDevFiles({
          dir,
          authority: { issuer, trust },
          ca,
          collective,
          brokerConfig,
          x509Port: opts.x509Port,
          validityS,
          user: x509User(opts.x509User),
          common,
          conf,
        });

  return {
    ...(aaa && { aaa }),
    ...(provisioning && { provisioning }),
    ...(mixed && { mixed }),
    dir,
    collective,
    brokerUrl,
    brokerUrls,
    issuerPublic: issuerKp.publicHex,
    issuerSeedFile,
    caFile,
    brokerConfig,
    brokerConfigs,
    clientConfig,
    adminClientConfig,
    emulatorConfig,
    serverConfigs,
    client,
    adminClient,
    leafCredentials,
    receiver: {
      apiTokenFile: receiverToken,
      serviceConfig: receiverConfig,
      clientConfig: receiverClientConfig,
      credentials: receiverCred,
    },
  };
}
