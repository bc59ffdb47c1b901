import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { filesOf, type DoctorContext } from "./context.js";
import { Findings, messageOf, octal, skipped, when, type DoctorCheck } from "./report.js";

const DAY_MS = 86_400_000;
/** certificates expiring sooner than this are warned about */
export const CERT_WARN_MS = 14 * DAY_MS;

const CA_KEY = "plugin.security.choria.ca";
const CERT_KEY = "plugin.security.choria.certificate";
const KEY_KEY = "plugin.security.choria.key";

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** The text of a file, or a failure naming it and the key that points at it. */
function readText(f: Findings, path: string, what: string, key: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === "ENOENT"
        ? "does not exist"
        : code === "EACCES"
          ? "is not readable by this user"
          : messageOf(err);
    f.fail(
      `${what} ${path} ${why}`,
      `set ${key} to the ${what} file, readable by the user the process runs as`,
    );
    return undefined;
  }
}

/** Every certificate in a PEM file (a bundle may hold several), or a failure. */
function certificates(
  f: Findings,
  path: string,
  text: string,
  what: string,
  key: string,
): X509Certificate[] | undefined {
  const blocks = text.match(PEM_CERT) ?? [];
  if (blocks.length === 0) {
    f.fail(`${what} ${path} holds no PEM certificate`, `set ${key} to a PEM certificate file`);
    return undefined;
  }
  try {
    return blocks.map((b) => new X509Certificate(b));
  } catch (err) {
    f.fail(`${what} ${path} does not parse: ${messageOf(err)}`, `set ${key} to a PEM certificate file`);
    return undefined;
  }
}

/** Validity of one certificate at `now`: fail outside it, warn within CERT_WARN_MS of its end. */
function validity(f: Findings, cert: X509Certificate, label: string, now: number, fix: string): boolean {
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  if (now < from) {
    f.fail(`${label} is not valid until ${when(from, now)}`, `${fix}, or set this host's clock right`);
    return false;
  }
  if (now >= to) {
    f.fail(`${label} expired at ${when(to, now)}`, fix);
    return false;
  }
  if (to - now < CERT_WARN_MS) f.warn(`${label} expires at ${when(to, now)}`, fix);
  return true;
}

/** Whether `leaf` (through `extra` intermediates) is signed by one of `roots`. */
function chainsTo(leaf: X509Certificate, extra: X509Certificate[], roots: X509Certificate[]): boolean {
  const signs = (issuer: X509Certificate, cert: X509Certificate) =>
    cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
  let cur = leaf;
  for (let depth = 0; depth < 8; depth++) {
    if (roots.some((r) => signs(r, cur))) return true;
    const next = extra.find((c) => c !== cur && signs(c, cur));
    if (!next) return false;
    cur = next;
  }
  return false;
}

function subjectOf(cert: X509Certificate): string {
  return cert.subject.replace(/\n/g, ", ");
}

/**
 * Check 2: the TLS files the config names exist, parse and fit together: the CA bundle,
 * the certificate (chained to the CA, matching its key, within its validity).
 */
export function checkTls(ctx: DoctorContext): DoctorCheck {
  if (!ctx.cfg || !(ctx.client ?? ctx.server ?? ctx.broker))
    return skipped("tls", "not checked: the configuration did not load");
  const { caFile, certFile, keyFile } = filesOf(ctx);
  const now = ctx.now();
  const f = new Findings();
  let roots: X509Certificate[] | undefined;

  if (caFile === undefined) {
    if (ctx.role === "broker") {
      if (certFile)
        f.warn(`no CA (${CA_KEY}): client certificates are not verified`, `set ${CA_KEY} to the CA file`);
    } else {
      const hosts = (ctx.client ?? ctx.server)?.middlewareHosts ?? [];
      if (hosts.some((h) => h.startsWith("tls://")))
        f.warn(
          `no CA (${CA_KEY}): the broker's certificate is checked against the system's trusted CAs`,
          `set ${CA_KEY} to the CA that signed the broker's certificate`,
        );
      else
        f.warn(
          `no CA (${CA_KEY}) and no tls:// broker: connections to the broker are not encrypted`,
          `set ${CA_KEY} to the CA that signed the broker's certificate`,
        );
    }
  } else {
    const text = readText(f, caFile, "CA", CA_KEY);
    roots = text === undefined ? undefined : certificates(f, caFile, text, "CA", CA_KEY);
    if (roots) {
      const fix = `replace the CA in ${caFile} (${CA_KEY}) with a current one`;
      roots.forEach((c, i) => {
        const label = `CA ${roots && roots.length > 1 ? `#${i + 1} ` : ""}"${subjectOf(c)}"`;
        if (!c.ca)
          f.warn(`${label} in ${caFile} is not a CA certificate`, `set ${CA_KEY} to the CA's certificate`);
        validity(f, c, label, now, fix);
      });
      if (!f.failed)
        f.ok(
          `CA ${caFile}: ${roots.length === 1 ? `"${subjectOf(roots[0] as X509Certificate)}"` : `${roots.length} certificates`}, valid until ${roots
            .map((c) => new Date(Date.parse(c.validTo)).toISOString().slice(0, 10))
            .join(", ")}`,
        );
    }
  }

  if (certFile === undefined || keyFile === undefined) {
    if (ctx.role === "broker")
      f.warn(
        `no certificate (${CERT_KEY}, ${KEY_KEY}): the broker accepts clients without TLS`,
        `set ${CERT_KEY} and ${KEY_KEY} to the broker's certificate and key`,
      );
    else if (caFile !== undefined) f.ok("no client certificate (none needed unless the broker asks for one)");
    return f.result("tls");
  }

  const certText = readText(f, certFile, "certificate", CERT_KEY);
  const chain =
    certText === undefined ? undefined : certificates(f, certFile, certText, "certificate", CERT_KEY);
  const key = privateKey(f, keyFile);
  const leaf = chain?.[0];
  if (!leaf) return f.result("tls");
  const label = `certificate "${subjectOf(leaf)}"`;
  const renew = `renew the certificate in ${certFile} (${CERT_KEY})`;
  const current = validity(f, leaf, label, now, renew);
  if (key && !leaf.checkPrivateKey(key))
    f.fail(
      `${label} in ${certFile} is not for the key in ${keyFile}`,
      `set ${KEY_KEY} to the key the certificate was issued for, or ${CERT_KEY} to that key's certificate`,
    );
  if (roots && !chainsTo(leaf, chain.slice(1), roots))
    f.fail(
      `${label} (issued by "${leaf.issuer.replace(/\n/g, ", ")}") is not signed by the CA in ${caFile}`,
      `set ${CA_KEY} to the CA that issued the certificate, or issue the certificate from the CA in ${caFile}`,
    );
  const names = leaf.subjectAltName ? `, names ${leaf.subjectAltName}` : "";
  if (current && !f.failed)
    f.ok(
      `${label}${names}, valid until ${when(Date.parse(leaf.validTo), now)}${key ? ", matches its key" : ""}${roots ? ", signed by the CA" : ""}`,
    );
  return f.result("tls");
}

function privateKey(f: Findings, path: string): KeyObject | undefined {
  const text = readText(f, path, "key", KEY_KEY);
  if (text === undefined) return undefined;
  try {
    const mode = statSync(path).mode & 0o777;
    if (mode & 0o077)
      f.warn(
        `key ${path} has mode ${octal(mode)}: group or others on this host have access to it`,
        `chmod 600 ${path}`,
      );
  } catch {
    // read above, so it exists; a stat failure leaves the mode unknown
  }
  try {
    return createPrivateKey(text);
  } catch (err) {
    f.fail(
      `key ${path} is not a readable private key: ${messageOf(err)}`,
      `set ${KEY_KEY} to the certificate's private key (PEM, not encrypted)`,
    );
    return undefined;
  }
}
