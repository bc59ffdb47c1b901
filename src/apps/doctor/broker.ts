import { existsSync, readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { federationCollectives } from "../../client/index.js";
import { closeNats, connectNats, flushNats, type NatsConnection } from "../../core/connector/index.js";
import { loadSeedFile, securityFromSettings } from "../../core/security/index.js";
import { silentLogger } from "../../core/util/index.js";
import { filesOf, type DoctorContext } from "./context.js";
import { Findings, messageOf, skipped, type DoctorCheck } from "./report.js";

const HOSTS_KEY = "plugin.choria.middleware_hosts";
const FED_HOSTS_KEY = "plugin.choria.federation_middleware_hosts";
const CA_KEY = "plugin.security.choria.ca";

/** How to log in: the NATS user JWT and the seed that signs the broker's nonce. */
interface Login {
  natsJwt?: string;
  seedHex?: string;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}

/** Where this config connects, the config key that says so, and with what credential. */
interface Plan {
  servers: string[];
  hostsKey: string;
  login: Login;
  /** no credential to present (a broker without its own): a refusal still proves the broker answers */
  anonymous: boolean;
}

function plan(ctx: DoctorContext): Plan | string {
  const files = filesOf(ctx);
  if (ctx.broker) {
    const b = ctx.broker;
    const host =
      b.listenAddress === "0.0.0.0" ? "127.0.0.1" : b.listenAddress === "::" ? "::1" : b.listenAddress;
    const url = `${b.certFile ? "tls" : "nats"}://${host.includes(":") ? `[${host}]` : host}:${b.clientPort}`;
    // as the broker's own connection (managed streams, adapters) does: its credential when it has one
    const login: Login = { ...(b.caFile && { caFile: b.caFile }) };
    let anonymous = true;
    if (b.seedFile && b.natsJwtFile && existsSync(b.natsJwtFile)) {
      try {
        login.seedHex = loadSeedFile(b.seedFile).seedHex;
        login.natsJwt = readFileSync(b.natsJwtFile, "utf8").trim();
        anonymous = false;
      } catch (err) {
        return `the broker's own credential does not load: ${messageOf(err)} (see the seed and nats-jwt checks)`;
      }
    }
    return { servers: [url], hostsKey: "plugin.choria.network.client_port", login, anonymous };
  }
  const s = ctx.client ?? ctx.server;
  if (!s || !ctx.cfg) return "the configuration did not load";
  if (s.securityProvider === "file") {
    // x509: the certificate is the whole login (mTLS), as the node or client connects
    const x = s.x509;
    if (!x) return "the configuration did not load";
    return {
      servers: s.middlewareHosts,
      hostsKey: HOSTS_KEY,
      anonymous: false,
      login: { caFile: x.caFile, certFile: x.certFile, keyFile: x.keyFile },
    };
  }
  let sec;
  try {
    sec = securityFromSettings(s);
  } catch (err) {
    return `the ${ctx.role}'s credential does not load: ${messageOf(err)} (see the seed and token checks)`;
  }
  let servers = s.middlewareHosts;
  let hostsKey = HOSTS_KEY;
  if (ctx.client) {
    // the client goes through the federation when it names federation collectives and hosts
    const fed = federationCollectives(ctx.cfg.list("plugin.choria.federation.collectives", []));
    const fedHosts = ctx.cfg.list(FED_HOSTS_KEY, []);
    if (fed.length > 0 && fedHosts.length > 0) {
      servers = fedHosts;
      hostsKey = FED_HOSTS_KEY;
    }
  }
  return {
    servers,
    hostsKey,
    anonymous: false,
    login: {
      seedHex: sec.seedHex,
      ...(sec.natsJwt !== undefined && { natsJwt: sec.natsJwt }),
      ...(files.caFile !== undefined && { caFile: files.caFile }),
      ...(files.certFile !== undefined && { certFile: files.certFile }),
      ...(files.keyFile !== undefined && { keyFile: files.keyFile }),
    },
  };
}

/** The error and its causes: messages and codes to recognise. */
function causes(err: unknown): { text: string; codes: string[]; names: string[] } {
  const texts: string[] = [];
  const codes: string[] = [];
  const names: string[] = [];
  for (let e: unknown = err, i = 0; e !== undefined && e !== null && i < 5; i++) {
    if (e instanceof Error) {
      texts.push(e.message);
      names.push(e.name, e.constructor.name);
      const code = (e as { code?: unknown }).code;
      if (typeof code === "string") codes.push(code);
      e = (e as { cause?: unknown }).cause;
    } else {
      texts.push(String(e));
      break;
    }
  }
  return { text: texts.join(": "), codes, names };
}

const TLS_TRUST = [
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_SIGNATURE_FAILURE",
  "CERT_UNTRUSTED",
];

/** What went wrong connecting to `server`, in words, and what to change. */
function diagnose(ctx: DoctorContext, p: Plan, server: string, err: unknown): { text: string; fix: string } {
  const { text, codes, names } = causes(err);
  const has = (re: RegExp) => re.test(text);
  const code = (...c: string[]) => codes.some((x) => c.includes(x));
  const files = filesOf(ctx);
  const caFile = p.login.caFile;
  const brokerSide = ctx.broker
    ? "the broker's certificate (plugin.security.choria.certificate in this config)"
    : "the broker's certificate (plugin.security.choria.certificate in the broker's config)";
  const where = ctx.broker
    ? "plugin.choria.network.listen_address and plugin.choria.network.client_port"
    : `the host:port in ${p.hostsKey}`;
  if (code("ECONNREFUSED") || has(/connection refused/i))
    return {
      text: `${server}: connection refused`,
      fix: ctx.broker
        ? `start the broker for this configuration, or correct ${where}`
        : `is the broker running? check ${where} names its host and client port (plugin.choria.network.client_port in its config)`,
    };
  if (code("ENOTFOUND", "EAI_AGAIN") || has(/getaddrinfo/))
    return {
      text: `${server}: the host name does not resolve (${text})`,
      fix: `correct the host name in ${p.hostsKey}, or its DNS`,
    };
  if (code("EHOSTUNREACH", "ENETUNREACH"))
    return {
      text: `${server}: no route to the host (${text})`,
      fix: `check the network between this host and the broker, and ${where}`,
    };
  if (code(...TLS_TRUST))
    return {
      text: `${server}: TLS: the broker's certificate is not signed by ${caFile ? `the CA in ${caFile}` : "a CA this host trusts"} (${text})`,
      fix: `set ${CA_KEY} to the CA that signed the broker's certificate${caFile ? ` (${caFile} is another CA)` : ""}`,
    };
  if (code("ERR_TLS_CERT_ALTNAME_INVALID") || has(/does not match certificate's altnames|altnames/i))
    return {
      text: `${server}: TLS: the broker's certificate is not valid for the name connected to (${text})`,
      fix: `connect by a name the broker's certificate lists (${p.hostsKey}), or give ${brokerSide} this name`,
    };
  if (code("CERT_HAS_EXPIRED", "CERT_NOT_YET_VALID"))
    return {
      text: `${server}: TLS: the broker's certificate is ${code("CERT_HAS_EXPIRED") ? "expired" : "not valid yet"} (${text})`,
      fix: `renew ${brokerSide}, and check this host's clock`,
    };
  if (has(/options\.tls|tls.*required|requires tls/i))
    return {
      text: `${server}: the broker requires TLS and this connection is plain`,
      fix: `use tls:// in ${p.hostsKey} and set ${CA_KEY} to the broker's CA`,
    };
  if (has(/doesn't exist|ENOENT/) && (caFile || files.certFile))
    return { text: `${server}: ${text}`, fix: "see the tls check: a TLS file the config names is missing" };
  if (
    names.includes("AuthorizationError") ||
    has(/authorization violation|authentication (timeout|expired)|user authentication/i)
  ) {
    const said = has(/authentication timeout/i)
      ? "Authentication Timeout"
      : has(/expired/i)
        ? "Authentication Expired"
        : "Authorization Violation";
    if (p.anonymous)
      return { text: `${server}: answers, and refuses clients without a credential (${said})`, fix: "" };
    const natsJwt = files.natsJwtFile ?? "<token file>.nats";
    if (!p.login.natsJwt)
      return {
        text: `${server}: the broker refused this connection (${said}): it runs in operator mode and ${natsJwt} does not exist`,
        fix: `write this host's NATS user JWT to ${natsJwt} (plugin.security.choria.nats_jwt_file), issued with its token for this broker's CHORIA account`,
      };
    return {
      text: `${server}: the broker refused the credential (${said})`,
      fix:
        `the NATS user JWT in ${natsJwt} was not issued for this broker's account (the CHORIA account of its ` +
        `plugin.choria.network.nats_trust_file), has expired, or is for another seed than ${files.seedFile ?? "the seed"}: ` +
        "issue this host a new credential from the broker's issuer (see the token and nats-jwt checks)",
    };
  }
  if (names.includes("TimeoutError") || code("ETIMEDOUT") || has(/timeout|timed out|did not confirm/i))
    return {
      text: `${server}: no answer within ${ctx.timeoutMs / 1000} s`,
      fix: `is the broker running and reachable from this host (firewall)? check ${where}`,
    };
  return { text: `${server}: ${text}`, fix: `check ${where} and the broker's log` };
}

interface Outcome {
  server: string;
  ok: boolean;
  text: string;
  fix?: string;
}

async function probe(ctx: DoctorContext, p: Plan, server: string): Promise<Outcome> {
  let nc: NatsConnection | undefined;
  try {
    nc = await connectNats({
      servers: [server],
      name: `chorus doctor ${ctx.role}`,
      ...p.login,
      timeoutMs: ctx.timeoutMs,
      reconnect: false,
      logger: silentLogger,
    });
    const start = performance.now();
    await flushNats(nc, ctx.timeoutMs);
    const rtt = performance.now() - start;
    const info = nc.info;
    const who = info
      ? `nats-server ${info.version}${info.server_name ? ` ${info.server_name}` : ""}`
      : "the broker";
    const tls = p.login.caFile || server.startsWith("tls://") ? "TLS, " : "";
    const auth = p.login.natsJwt
      ? "NATS user JWT"
      : p.login.certFile
        ? `client certificate ${p.login.certFile}`
        : "no credential";
    return {
      server,
      ok: true,
      text: `${server}: ${who} (${tls}${auth}), flush round trip ${rtt.toFixed(1)} ms`,
    };
  } catch (err) {
    const d = diagnose(ctx, p, server, err);
    // a broker's config without a credential: being refused still shows the broker answers
    if (d.fix === "") return { server, ok: true, text: d.text };
    return { server, ok: false, text: d.text, fix: d.fix };
  } finally {
    if (nc) await closeNats(nc, 1000).catch(() => undefined);
  }
}

/**
 * Check 5: connects to every broker the config names, as the client, server or broker
 * itself would (servers, TLS, credential), and times a flush round trip.
 */
export async function checkBroker(ctx: DoctorContext): Promise<DoctorCheck> {
  const p = plan(ctx);
  if (typeof p === "string") return skipped("broker", `not tried: ${p}`);
  if (p.servers.length === 0) return skipped("broker", `not tried: no brokers in ${p.hostsKey}`);
  const outcomes = await Promise.all(p.servers.map((s) => probe(ctx, p, s)));
  const f = new Findings();
  const reached = outcomes.filter((o) => o.ok).length;
  for (const o of outcomes) {
    if (o.ok) f.ok(o.text);
    else if (reached > 0) f.warn(`${o.text} (the others answer)`, o.fix);
    else f.fail(o.text, o.fix);
  }
  return f.result("broker");
}
