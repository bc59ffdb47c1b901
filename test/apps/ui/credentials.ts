// Credentials an operator would issue for the console beyond what `chorus setup dev` writes.
import { readFileSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import {
  issueClientCredential,
  type ClientCredentialOptions,
  type DevSetup,
} from "../../../src/apps/setup/index.js";
import { loadSeedFile, orgIssuer } from "../../../src/core/security/index.js";

/**
 * Issues a client credential `name` from the setup's org issuer (with its NATS user) and
 * writes `<name>.conf`: a copy of `base` (a config of the setup) whose credential files
 * are the new ones. Returns the config's path.
 */
export async function credentialConfig(
  setup: DevSetup,
  name: string,
  base: string,
  o: ClientCredentialOptions,
): Promise<string> {
  const dir = setup.dir;
  const authority = {
    issuer: orgIssuer(loadSeedFile(setup.issuerSeedFile)),
    trust: JSON.parse(readFileSync(join(dir, "nats-trust.json"), "utf8")) as { choriaAccountPublic: string },
  };
  const cred = (ext: string) => join(dir, "credentials", `${name}.${ext}`);
  await issueClientCredential(authority, { seedFile: cred("seed"), tokenFile: cred("jwt") }, o);
  const text = readFileSync(base, "utf8");
  // every credential line of the base config (seed, token, a request signer's) names the new files
  const old = /credentials\/([\w-]+)\.(seed|jwt)/g;
  const file = join(dir, `${name}.conf`);
  writeFileSync(
    file,
    text.replace(old, (_m, _n: string, ext: string) => `credentials/${name}.${ext}`),
  );
  if (!readFileSync(file, "utf8").includes(`credentials/${name}.jwt`))
    throw new Error(`${basename(base)} names no credential files to replace`);
  return file;
}
