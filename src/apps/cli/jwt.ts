import type { Command } from "commander";
import {
  CLIENT_PERMISSIONS,
  SERVER_PERMISSIONS,
  createIssuerSeed,
  inspectToken,
  issueClientTokenFiles,
  issueServerTokenFiles,
  SetupError,
} from "../setup/index.js";
import { guarded } from "./errors.js";

interface IssueFlags {
  issuerSeed: string;
  seed?: string;
  validity: string;
  permission: string[];
  natsTrust?: string;
}

interface ClientFlags {
  agents?: string;
  cedarPolicy?: string;
  opaPolicy?: string;
  ou: string;
  pubSubjects?: string;
  subSubjects?: string;
}

const list = (v: string): string[] =>
  v
    .split(",")
    .map((e) => e.trim())
    .filter(Boolean);

function issueOptions(tokenFile: string, o: IssueFlags) {
  return {
    issuerSeedFile: o.issuerSeed,
    seedFile: o.seed ?? tokenFile.replace(/\.jwt$/, "") + ".seed",
    tokenFile,
    validity: o.validity,
    permissions: o.permission,
    ...(o.natsTrust && { natsTrustFile: o.natsTrust }),
  };
}

function issueCommand(parent: Command, name: string, args: string, permissions: readonly string[]): Command {
  return parent
    .command(`${name} <token-file> ${args}`)
    .requiredOption("--issuer-seed <file>", "org issuer seed file (hex ed25519 seed)")
    .option("--seed <file>", "the holder's seed file; created when missing (default: token file with .seed)")
    .option("--validity <duration>", "token validity like 30d, 12h, 3600s", "30d")
    .option("--permission <name...>", `permissions: ${permissions.join(", ")}`, [])
    .option("--nats-trust <file>", "nats-trust.json from setup: also write <token-file>.nats for the broker");
}

/** `chorus jwt`: create issuers and tokens, view and verify tokens. */
export function register(program: Command): void {
  const jwt = program.command("jwt").description("Create and inspect Choria-compatible JWTs");
  jwt
    .command("issuer <seed-file>")
    .description("Create an org issuer seed; prints its public key for plugin.security.issuer.<name>.public")
    .action(
      guarded("jwt issuer", (seedFile: string) => {
        process.stdout.write(`${createIssuerSeed(seedFile)}\n`);
      }),
    );
  issueCommand(jwt, "client", "<callerid>", CLIENT_PERMISSIONS)
    .description("Issue a client token (purpose choria_client_id)")
    .option(
      "--agents <list>",
      "comma separated agent.action, agent.* or * the caller may call (rpcauthprovider aaasvc)",
    )
    .option("--cedar-policy <file>", "Cedar policy set the caller's requests are authorized with (aaasvc)")
    .option("--opa-policy <file>", "Rego policy stored as opa_policy for Choria nodes (Chorus denies it)")
    .option("--ou <name>", "organization unit", "choria")
    .option("--pub-subjects <list>", "comma separated extra subjects the caller may publish to")
    .option("--sub-subjects <list>", "comma separated extra subjects the caller may subscribe to")
    .action(
      guarded("jwt client", async (tokenFile: string, callerid: string, o: IssueFlags & ClientFlags) => {
        const f = await issueClientTokenFiles(callerid, issueOptions(tokenFile, o), {
          ou: o.ou,
          ...(o.agents !== undefined && { agents: list(o.agents) }),
          ...(o.cedarPolicy !== undefined && { cedarPolicyFile: o.cedarPolicy }),
          ...(o.opaPolicy !== undefined && { opaPolicyFile: o.opaPolicy }),
          ...(o.pubSubjects !== undefined && { pubSubjects: list(o.pubSubjects) }),
          ...(o.subSubjects !== undefined && { subSubjects: list(o.subSubjects) }),
        });
        process.stdout.write(`wrote ${f.tokenFile} for ${callerid} (public key ${f.publicHex})\n`);
      }),
    );
  issueCommand(jwt, "server", "<identity>", SERVER_PERMISSIONS)
    .description("Issue a server token (purpose choria_server)")
    .option("--collectives <list>", "comma separated collectives", "mcollective")
    .action(
      guarded(
        "jwt server",
        async (tokenFile: string, identity: string, o: IssueFlags & { collectives: string }) => {
          const collectives = list(o.collectives);
          const f = await issueServerTokenFiles(identity, collectives, issueOptions(tokenFile, o));
          process.stdout.write(`wrote ${f.tokenFile} for ${identity} (public key ${f.publicHex})\n`);
        },
      ),
    );
  jwt
    .command("view <token-file>")
    .description("Show a token's claims; with --issuer also verify it")
    .option("--issuer <hex...>", "trusted org issuer public keys", [])
    .action(
      guarded("jwt view", (tokenFile: string, o: { issuer: string[] }) => {
        process.stdout.write(`${JSON.stringify(inspectToken(tokenFile, o.issuer), null, 2)}\n`);
      }),
    );
  jwt
    .command("verify <token-file>")
    .description("Verify a token against trusted org issuers; exit 1 when it does not verify")
    .requiredOption("--issuer <hex...>", "trusted org issuer public keys")
    .action(
      guarded("jwt verify", (tokenFile: string, o: { issuer: string[] }) => {
        const r = inspectToken(tokenFile, o.issuer);
        if (!r.verified) throw new SetupError("invalid", `${tokenFile} does not verify: ${r.error}`);
        process.stdout.write(`${tokenFile}: valid until ${r.expires ?? "forever"}\n`);
      }),
    );
}
