import { readFileSync, statSync } from "node:fs";
import { decode } from "@nats-io/jwt";
import type { BrokerSettings } from "../../core/config/index.js";
import {
  choriaSigningKeys,
  decodeTokenUnverified,
  loadSeedFile,
  nkeyPublicFromEd25519Public,
  SecurityError,
  tokenExpiry,
  verifyToken,
} from "../../core/security/index.js";
import { loadNatsTrust } from "../../broker/index.js";
import { filesOf, type DoctorContext } from "./context.js";
import { usesFileProvider } from "./x509.js";
import { Findings, messageOf, octal, skipped, when, type DoctorCheck } from "./report.js";

const DAY_MS = 86_400_000;
/** tokens and NATS user JWTs expiring sooner than this are warned about */
export const TOKEN_WARN_MS = 7 * DAY_MS;

const SEED_KEY = "plugin.security.choria.seed_file";
const TOKEN_KEY = "plugin.security.choria.token_file";
const NATS_JWT_KEY = "plugin.security.choria.nats_jwt_file";
const ISSUERS_KEY = "plugin.security.issuer.names";
const HEX_KEY = /^[0-9a-fA-F]{64}$/;
const X509_ONLY = "not used: plugin.security.provider = file (x509 certificates, see the x509 check)";

const PURPOSE = {
  client: "choria_client_id",
  server: "choria_server",
  // the broker's own connection (managed streams, adapters) is a client
  broker: "choria_client_id",
} as const;

/** A broker in operator mode that opens a connection of its own (managed streams, adapters). */
function brokerNeedsCredential(b: BrokerSettings): boolean {
  return (
    b.natsTrustFile !== undefined && ((b.storeDir !== undefined && b.streams.manage) || b.adapters.length > 0)
  );
}

/** Why the broker's own credential is not checked, or a failure when it needs one. */
function noBrokerCredential(ctx: DoctorContext, name: string, key: string): DoctorCheck {
  if (ctx.broker && brokerNeedsCredential(ctx.broker)) {
    return new Findings()
      .fail(
        `no ${key}: this broker runs managed streams or adapters in operator mode, and their connection logs in with the broker's own credential`,
        `set ${SEED_KEY} and ${TOKEN_KEY} to the broker's credential (its NATS user JWT beside the token as <token>.nats)`,
      )
      .result(name);
  }
  return skipped(
    name,
    `no ${key}: the broker has no credential of its own (it needs one only for managed streams or adapters in operator mode)`,
  );
}

function readError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return "does not exist";
  if (code === "EACCES") return "is not readable by this user";
  if (code === "EISDIR") return "is a directory";
  return messageOf(err);
}

/** Check 3a: the seed exists, only its owner can read it, and it holds an ed25519 seed. */
export function checkSeed(ctx: DoctorContext): DoctorCheck {
  if (!(ctx.client ?? ctx.server ?? ctx.broker))
    return skipped("seed", "not checked: the configuration did not load");
  if (usesFileProvider(ctx)) return skipped("seed", X509_ONLY);
  const { seedFile } = filesOf(ctx);
  if (seedFile === undefined) return noBrokerCredential(ctx, "seed", SEED_KEY);
  const f = new Findings();
  let mode: number;
  try {
    const st = statSync(seedFile);
    if (!st.isFile()) {
      return f
        .fail(`seed file ${seedFile} is not a file`, `set ${SEED_KEY} to this host's seed file`)
        .result("seed");
    }
    mode = st.mode & 0o777;
  } catch (err) {
    return f
      .fail(
        `seed file ${seedFile} ${readError(err)}`,
        `set ${SEED_KEY} to this host's seed file (the key its token in ${TOKEN_KEY} was issued for)`,
      )
      .result("seed");
  }
  if (mode & 0o077)
    f.warn(
      `seed file ${seedFile} has mode ${octal(mode)}: group or others on this host can read the private key`,
      `chmod 600 ${seedFile}`,
    );
  try {
    ctx.seed = loadSeedFile(seedFile);
  } catch (err) {
    return f
      .fail(
        messageOf(err),
        `put the credential's ed25519 seed (64 hex characters) in ${seedFile}; a new seed needs a new token issued for its key`,
      )
      .result("seed");
  }
  if (!(mode & 0o077))
    f.ok(`${seedFile}: ed25519 seed of public key ${ctx.seed.publicHex}, mode ${octal(mode)}`);
  else f.ok(`ed25519 seed of public key ${ctx.seed.publicHex}`);
  return f.result("seed");
}

/** The trusted org issuers the config names: name → hex public key (invalid entries left out). */
function configuredIssuers(ctx: DoctorContext): { names: string[]; keys: string[] } {
  const cfg = ctx.cfg;
  if (!cfg) return { names: [], keys: [] };
  const settingsKeys = (ctx.client ?? ctx.server)?.issuers;
  const names = cfg.list(ISSUERS_KEY, []);
  if (settingsKeys)
    return {
      names: names.length > 0 ? names : ["plugin.security.choria.trusted_signers"],
      keys: settingsKeys,
    };
  // broker settings do not carry issuers: read them as the client and server do
  const keys: string[] = [];
  for (const name of names) {
    const pub = cfg.get(`plugin.security.issuer.${name}.public`);
    if (pub && HEX_KEY.test(pub)) keys.push(pub.toLowerCase());
  }
  return { names, keys };
}

/**
 * Check 3b: the token parses, is for this role and for the seed's key, is within its
 * validity, and (when the config names trusted issuers) is signed by one of them.
 */
export function checkToken(ctx: DoctorContext): DoctorCheck {
  if (!(ctx.client ?? ctx.server ?? ctx.broker))
    return skipped("token", "not checked: the configuration did not load");
  if (usesFileProvider(ctx)) return skipped("token", X509_ONLY);
  const { tokenFile } = filesOf(ctx);
  if (tokenFile === undefined) return noBrokerCredential(ctx, "token", TOKEN_KEY);
  const f = new Findings();
  const reissue = `issue a new token for this host's key and write it to ${tokenFile} (${TOKEN_KEY})`;
  let jwt: string;
  try {
    jwt = readFileSync(tokenFile, "utf8").trim();
  } catch (err) {
    return f
      .fail(`token file ${tokenFile} ${readError(err)}`, `set ${TOKEN_KEY} to this host's token (JWT) file`)
      .result("token");
  }
  if (jwt === "") return f.fail(`token file ${tokenFile} is empty`, reissue).result("token");
  let c: ReturnType<typeof decodeTokenUnverified>;
  try {
    c = decodeTokenUnverified(jwt);
  } catch (err) {
    return f.fail(`token file ${tokenFile} does not hold a JWT: ${messageOf(err)}`, reissue).result("token");
  }
  ctx.token = c;
  const want = PURPOSE[ctx.role];
  const who =
    c.purpose === "choria_server"
      ? `server token for ${String(c.identity)}`
      : c.purpose === "choria_client_id"
        ? `client token for ${String(c.callerid)}`
        : `${String(c.purpose)} token`;
  if (c.purpose !== want) {
    f.fail(
      `${tokenFile} is a ${who}; a ${ctx.role} needs a ${want} token`,
      `set ${TOKEN_KEY} to the ${ctx.role}'s ${want} token, or ${reissue}`,
    );
  }
  if (
    ctx.role === "server" &&
    c.purpose === "choria_server" &&
    ctx.server &&
    c.identity !== ctx.server.identity
  ) {
    f.warn(
      `the token is for identity ${String(c.identity)}, the config says identity = ${ctx.server.identity}`,
      `set identity to ${String(c.identity)}, or ${reissue}`,
    );
  }
  if (ctx.seed && c.public_key !== ctx.seed.publicHex) {
    f.fail(
      `the token is for public key ${String(c.public_key)}, the seed in ${filesOf(ctx).seedFile ?? "?"} is for ${ctx.seed.publicHex}`,
      `point ${SEED_KEY} at the seed the token was issued for, or ${reissue}`,
    );
  }
  const now = ctx.now();
  const exp = tokenExpiry(c);
  let timesOk = true;
  if (typeof c.nbf === "number" && now < c.nbf * 1000) {
    timesOk = false;
    f.fail(
      `the token is not valid until ${when(c.nbf * 1000, now)}`,
      `check this host's clock, or ${reissue}`,
    );
  }
  if (exp !== undefined && now >= exp * 1000) {
    timesOk = false;
    const whose = c.issexp !== undefined && c.issexp === exp ? "its issuer's authority" : "the token";
    f.fail(`${whose} expired at ${when(exp * 1000, now)}`, reissue);
  } else if (exp !== undefined && exp * 1000 - now < TOKEN_WARN_MS) {
    f.warn(`the token expires at ${when(exp * 1000, now)}`, `renew it before then: ${reissue}`);
  }
  const { names, keys } = configuredIssuers(ctx);
  let signature = "signature not checked (no trusted issuers in the config)";
  if (keys.length > 0) {
    try {
      verifyToken(jwt, keys, Math.floor(now / 1000));
      signature = `signed by a trusted issuer (${names.join(", ")})`;
    } catch (err) {
      const code = err instanceof SecurityError ? err.code : "";
      // verifyToken checks the signature before the times: these say the signature is good
      if (code === "expired" || code === "not_yet_valid")
        signature = `signed by a trusted issuer (${names.join(", ")})`;
      else
        f.fail(
          `the token does not verify against the trusted issuers (${names.join(", ")}): ${messageOf(err)}`,
          `use a token issued by an issuer in ${ISSUERS_KEY} (plugin.security.issuer.<name>.public), or add its issuer there`,
        );
    }
  }
  if (!f.failed) {
    const parts = [`${tokenFile}: ${who}`, `issued by ${String(c.iss)}`];
    if (timesOk) parts.push(exp === undefined ? "never expires" : `valid until ${when(exp * 1000, now)}`);
    if (ctx.seed) parts.push("for the seed's key");
    parts.push(signature);
    f.ok(parts.join(", "));
  }
  return f.result("token");
}

/**
 * Check 3c: the NATS user JWT beside the token (what a broker in operator mode checks)
 * decodes with a good signature, is for the seed's key, and has not expired.
 */
export function checkNatsJwt(ctx: DoctorContext): DoctorCheck {
  if (!(ctx.client ?? ctx.server ?? ctx.broker))
    return skipped("nats-jwt", "not checked: the configuration did not load");
  if (usesFileProvider(ctx)) return skipped("nats-jwt", X509_ONLY);
  const { natsJwtFile } = filesOf(ctx);
  if (natsJwtFile === undefined) return noBrokerCredential(ctx, "nats-jwt", TOKEN_KEY);
  const f = new Findings();
  const reissue = `issue a new credential for this host and write its NATS user JWT to ${natsJwtFile} (${NATS_JWT_KEY}, default <token file>.nats)`;
  let jwt: string;
  try {
    jwt = readFileSync(natsJwtFile, "utf8").trim();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "ENOENT")
      return f.fail(`NATS user JWT ${natsJwtFile} ${readError(err)}`, reissue).result("nats-jwt");
    ctx.natsJwtMissing = true;
    if (ctx.broker) {
      if (brokerNeedsCredential(ctx.broker))
        return f
          .fail(
            `${natsJwtFile} does not exist: this broker runs in operator mode and its own connection (managed streams, adapters) logs in with it`,
            reissue,
          )
          .result("nats-jwt");
      return skipped("nats-jwt", `${natsJwtFile} does not exist: this broker does not need it`);
    }
    return skipped(
      "nats-jwt",
      `${natsJwtFile} does not exist: needed only when the broker runs in operator mode (plugin.choria.network.nats_trust_file in its config)`,
    );
  }
  let claims: ReturnType<typeof decode<{ type?: string; issuer_account?: string }>>;
  try {
    claims = decode<{ type?: string; issuer_account?: string }>(jwt);
  } catch (err) {
    return f.fail(`${natsJwtFile} is not a valid NATS JWT: ${messageOf(err)}`, reissue).result("nats-jwt");
  }
  if (claims.nats?.type !== undefined && claims.nats.type !== "user")
    f.fail(`${natsJwtFile} is a NATS ${claims.nats.type} JWT, not a user JWT`, reissue);
  if (ctx.seed) {
    let own: string | undefined;
    try {
      own = nkeyPublicFromEd25519Public(ctx.seed.publicHex, "user");
    } catch {
      own = undefined;
    }
    if (own !== undefined && claims.sub !== own)
      f.fail(`${natsJwtFile} is for NATS user ${claims.sub}, the seed's key is ${own}`, reissue);
  }
  const now = ctx.now();
  if (typeof claims.exp === "number" && claims.exp > 0) {
    if (now >= claims.exp * 1000)
      f.fail(`the NATS user JWT expired at ${when(claims.exp * 1000, now)}`, reissue);
    else if (claims.exp * 1000 - now < TOKEN_WARN_MS)
      f.warn(
        `the NATS user JWT expires at ${when(claims.exp * 1000, now)}`,
        `renew it before then: ${reissue}`,
      );
  }
  if (typeof claims.nbf === "number" && now < claims.nbf * 1000)
    f.fail(
      `the NATS user JWT is not valid until ${when(claims.nbf * 1000, now)}`,
      `check this host's clock, or ${reissue}`,
    );
  const account = claims.nats?.issuer_account ?? claims.iss;
  let accountNote = `account ${account}`;
  const trustFile = ctx.broker?.natsTrustFile;
  if (trustFile !== undefined) {
    try {
      const trust = loadNatsTrust(trustFile);
      const choria = trust.accountNames.CHORIA;
      if (choria !== undefined) {
        const signers = [
          choria,
          ...choriaSigningKeys({ choriaAccountPublic: choria, accounts: trust.accounts }),
        ];
        if (account !== choria || !signers.includes(claims.iss))
          f.fail(
            `${natsJwtFile} is not issued by the CHORIA account of ${trustFile}`,
            `${reissue}, from the issuer whose NATS trust this broker uses (plugin.choria.network.nats_trust_file)`,
          );
        else accountNote = "the CHORIA account";
      }
    } catch (err) {
      f.fail(
        messageOf(err),
        "set plugin.choria.network.nats_trust_file to the NATS trust file written with the issuer",
      );
    }
  }
  if (!f.failed)
    f.ok(
      `${natsJwtFile}: NATS user ${claims.name || claims.sub} of ${accountNote}${ctx.seed ? ", for the seed's key" : ""}, ${
        typeof claims.exp === "number" && claims.exp > 0
          ? `valid until ${when(claims.exp * 1000, now)}`
          : "never expires"
      }`,
    );
  return f.result("nats-jwt");
}
