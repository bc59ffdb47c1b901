import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { freeLoopbackPort } from "../../broker/index.js";
import { loadSeedFile, orgIssuer, type NatsTrust } from "../../core/security/index.js";
import { AAA_AUDIT_STREAM } from "./aaa.js";
import { issueClientCredential } from "./credentials.js";
import { createDevSetup, type DevSetup } from "./dev.js";
import { SetupError } from "./errors.js";

/**
 * Registration in a cell: its broker's `registration` adapter stores what nodes publish
 * on `<collective>.broadcast.agent.registration` at `choria.registration.<sender>` in
 * this stream (the last 5 per node), which the cell creates (docs/streams.md, Adapters).
 */
export const OVERLAY_REGISTRATION = {
  stream: "CHORIA_REGISTRATION",
  subjects: ["choria.registration.>"],
  maxMsgsPerSubject: 5,
} as const;

/** The streams a cell keeps and the centre receives, with the centre's name for each. */
export const OVERLAY_STREAMS = [
  // lifecycle events (alive, startup, shutdown, provisioned…)
  { name: "events", stream: "CHORIA_EVENTS", target: (cell: string) => `${cell.toUpperCase()}_EVENTS` },
  // the nodes' registration, stored by the cell broker's registration adapter
  {
    name: "registration",
    stream: OVERLAY_REGISTRATION.stream,
    target: (cell: string) => `${cell.toUpperCase()}_REGISTRATION`,
  },
  // workflow progress from every node's spool
  { name: "jobs", stream: "CHORUS_JOBS", target: (cell: string) => `${cell.toUpperCase()}_JOBS` },
  // the AAA signer's audit records
  { name: "audit", stream: AAA_AUDIT_STREAM, target: (cell: string) => `${cell.toUpperCase()}_AUDIT` },
] as const;

/** Async replies and request records: copied as they are into the centre's receiver stream. */
export const OVERLAY_REPLIES = {
  name: "replies",
  stream: "CHORUS_REPLIES",
  target: "CHORUS_REPLIES",
} as const;

export interface OverlayCell {
  name: string;
  setup: DevSetup;
  /** replicator.yaml: the cell's streams to the centre */
  replicatorConfig: string;
}

export interface OverlaySetup {
  dir: string;
  cells: OverlayCell[];
  centre: DevSetup;
  /** overlays.json: where everything is, for tools and the runner */
  manifest: string;
}

export interface OverlaySetupOptions {
  dir: string;
  cells?: number;
  force?: boolean;
}

const yamlString = (s: string) => JSON.stringify(s);

/**
 * Two (or N) cells and a centre on loopback ports, each site with its own trust (org
 * issuer, NATS operator and accounts, CA, credentials): a cell has its broker with
 * Streams, a provisioner with its CA, AAA, and a replicator that copies its events, job
 * progress, audit records and asynchronous replies to the centre; the centre has its
 * broker, the replicated streams and a receiver store. Nothing is started here.
 */
export async function createOverlaySetup(opts: OverlaySetupOptions): Promise<OverlaySetup> {
  const dir = resolve(opts.dir);
  const n = opts.cells ?? 2;
  if (!Number.isInteger(n) || n < 1 || n > 9)
    throw new SetupError("config", `cells must be 1 to 9, got ${n}`);
  if (existsSync(dir) && readdirSync(dir).length > 0 && !opts.force)
    throw new SetupError("exists", `${dir} is not empty: choose another directory or allow overwriting`);
  mkdirSync(dir, { recursive: true });
  const port = () => freeLoopbackPort();
  const centre = await createDevSetup({
    dir: join(dir, "centre"),
    brokerPort: await port(),
    receiverPort: await port(),
    callerId: "choria=centre-operator",
    force: true,
  });
  const centreTrust = JSON.parse(readFileSync(join(centre.dir, "nats-trust.json"), "utf8")) as NatsTrust;
  const centreAuthority = { issuer: orgIssuer(loadSeedFile(centre.issuerSeedFile)), trust: centreTrust };
  const cells: OverlayCell[] = [];
  for (let i = 1; i <= n; i++) {
    const name = `cell${i}`;
    const setup = await createDevSetup({
      dir: join(dir, name),
      brokerPort: await port(),
      receiverPort: await port(),
      aaa: true,
      aaaPort: await port(),
      provisioning: true,
      callerId: `choria=${name}-operator`,
      force: true,
    });
    appendFileSync(
      setup.brokerConfig,
      [
        "",
        "# registration: nodes' inventory into CHORIA_REGISTRATION, which the replicator copies",
        "plugin.choria.adapters = registration",
        "plugin.choria.adapter.registration.type = jetstream",
        `plugin.choria.adapter.registration.ingest.topic = ${setup.collective}.broadcast.agent.registration`,
        "plugin.choria.adapter.registration.ingest.protocol = request",
        "plugin.choria.adapter.registration.stream.topic = choria.registration.%s",
        "",
      ].join("\n"),
    );
    // The centre issues each cell's replicator its own credential: it may manage streams
    // and publish the copies, nothing else of the centre's.
    const cred = {
      seedFile: join(centre.dir, "credentials", `replicator-${name}.seed`),
      tokenFile: join(centre.dir, "credentials", `replicator-${name}.jwt`),
    };
    await issueClientCredential(centreAuthority, cred, {
      callerid: `chorus=replicator-${name}`,
      validityS: 30 * 86_400,
      permissions: { streams_admin: true },
      claims: { pub_subjects: [`${name}.>`, "chorus.async.>", "*.reply.*.async.>"] },
    });
    const side = (key: string, s: DevSetup, seed: string, jwt: string) => [
      `    ${key}_url: ${s.brokerUrl}`,
      `    ${key}_tls: { ca: ${yamlString(s.caFile)} }`,
      `    ${key}_choria: { seed_file: ${yamlString(seed)}, jwt_file: ${yamlString(jwt)}, collective: ${s.collective} }`,
    ];
    const source = side(
      "source",
      setup,
      join(setup.dir, "credentials", "broker.seed"),
      join(setup.dir, "credentials", "broker.jwt"),
    );
    const target = side("target", centre, cred.seedFile, cred.tokenFile);
    const streams = [
      ...OVERLAY_STREAMS.map((s) => [
        `  - name: ${s.name}`,
        `    stream: ${s.stream}`,
        `    target_stream: ${s.target(name)}`,
        `    target_subject_prefix: ${name}`,
        "    parallel: { subject_token: -1, workers: 64 }",
        ...source,
        ...target,
      ]),
      [
        `  - name: ${OVERLAY_REPLIES.name}`,
        `    stream: ${OVERLAY_REPLIES.stream}`,
        `    target_stream: ${OVERLAY_REPLIES.target}`,
        // the centre's receiver creates its stream; replies keep their subjects
        "    no_target_create: true",
        "    parallel: { subject_token: -1, workers: 64 }",
        ...source,
        ...target,
      ],
    ].flat();
    const replicatorConfig = join(setup.dir, "replicator.yaml");
    writeFileSync(
      replicatorConfig,
      [
        `# chorus replicator run --config replicator.yaml: ${name}'s streams to the centre`,
        `name: ${name.toUpperCase()}`,
        `state_store: ${yamlString(join(setup.dir, "replicator-state"))}`,
        "loglevel: warn",
        `logfile: ${yamlString(join(setup.dir, "replicator.log"))}`,
        "streams:",
        ...streams,
        "",
      ].join("\n"),
    );
    cells.push({ name, setup, replicatorConfig });
  }
  const manifest = join(dir, "overlays.json");
  writeFileSync(
    manifest,
    `${JSON.stringify(
      {
        centre: { dir: centre.dir, broker: centre.brokerUrl, receiver: centre.receiver.serviceConfig },
        cells: cells.map((c) => ({
          name: c.name,
          dir: c.setup.dir,
          broker: c.setup.brokerUrl,
          replicator: c.replicatorConfig,
          aaa: c.setup.aaa?.serviceConfig,
          provisioner: c.setup.provisioning?.serviceConfig,
        })),
      },
      null,
      2,
    )}\n`,
  );
  return { dir, cells, centre, manifest };
}
