import { statSync } from "node:fs";
import { FileSecurity, SecurityError } from "../../core/security/index.js";
import type { DoctorContext } from "./context.js";
import { Findings, messageOf, octal, skipped, type DoctorCheck } from "./report.js";
import { CERT_WARN_MS } from "./tls.js";

const KEYS = "plugin.security.file.certificate, .key and .ca";

/** Whether this configuration uses the x509 `file` provider (protocol v1). */
export function usesFileProvider(ctx: DoctorContext): boolean {
  return (ctx.client ?? ctx.server)?.securityProvider === "file";
}

/**
 * The x509 identity a v1 node or client signs and connects with: the files load, the key
 * is RSA and belongs to the certificate, only its owner can read the key, the certificate
 * chains to the CA for client authentication and is in date, and its name may call (a
 * client) or is the node's identity (a server).
 */
export function checkX509(ctx: DoctorContext): DoctorCheck | undefined {
  const s = ctx.client ?? ctx.server;
  // left out of reports on choria configurations, where the seed and token checks apply
  if (!s || !usesFileProvider(ctx)) return undefined;
  const x = s.x509;
  if (!x) return skipped("x509", "not checked: the configuration did not load");
  const f = new Findings();
  let sec: FileSecurity;
  try {
    sec = new FileSecurity({
      ...x,
      ...(ctx.server && { identity: s.identity }),
    });
  } catch (err) {
    return f
      .fail(messageOf(err), `point ${KEYS} at this host's certificate, its RSA key and the CA that issued it`)
      .result("x509");
  }
  f.ok(`certificate ${x.certFile} for ${sec.certname}, RSA key ${x.keyFile}`);
  try {
    const mode = statSync(x.keyFile).mode & 0o777;
    if (mode & 0o077)
      f.warn(`key ${x.keyFile} is readable by others (${octal(mode)})`, `chmod 600 ${x.keyFile}`);
  } catch (err) {
    f.fail(`key ${x.keyFile}: ${messageOf(err)}`);
  }
  try {
    // our own certificate judged as a node would judge it on a request from us
    sec.verifyCaller(sec.callerId, sec.certPem, ctx.now());
    f.ok(`chains to ${x.caFile}, allows client authentication, and ${sec.certname} passes the allow-list`);
  } catch (err) {
    // a node's own name need not be a caller's
    if (ctx.server && err instanceof SecurityError && err.code === "not_allowed") {
      f.ok(`chains to ${x.caFile} and allows client authentication`);
      return f.result("x509");
    }
    f.fail(
      `nodes would refuse requests signed with it: ${messageOf(err)}`,
      ctx.server
        ? `a node's certificate needs clientAuth from the CA in ${x.caFile}`
        : `get a certificate named <user>.mcollective from the CA in ${x.caFile}, or widen plugin.choria.security.certname_whitelist on the nodes`,
    );
  }
  const left = sec.notAfter - ctx.now();
  if (left > 0 && left < CERT_WARN_MS)
    f.warn(
      `certificate expires in ${Math.ceil(left / 86_400_000)} days`,
      `renew ${x.certFile} before it expires`,
    );
  return f.result("x509");
}
