// apps/doctor: checks a host's Chorus configuration, credentials, clock and broker
// connection, and says what to change. The CLI (apps/cli/doctor.ts) only prints it.
import { checkBroker } from "./broker.js";
import { checkClock } from "./clock.js";
import { checkConfig, type DoctorContext } from "./context.js";
import { checkNatsJwt, checkSeed, checkToken } from "./credentials.js";
import { messageOf, type DoctorCheck, type DoctorReport } from "./report.js";
import { checkTls } from "./tls.js";
import { checkX509 } from "./x509.js";

export { CLOCK_FAIL_MS, CLOCK_WARN_MS } from "./clock.js";
export { roleOf } from "./context.js";
export { TOKEN_WARN_MS } from "./credentials.js";
export type { DoctorCheck, DoctorReport, DoctorRole, DoctorStatus } from "./report.js";
export { CERT_WARN_MS } from "./tls.js";

export interface DoctorOptions {
  /** how long the broker and time sources may take to answer, ms (default 5 000) */
  timeoutMs?: number;
  /** this host's clock, ms since the epoch (default Date.now): validity and skew are judged by it */
  now?: () => number;
}

/** undefined: the check does not apply to this kind of configuration and is left out */
type Check = (ctx: DoctorContext) => DoctorCheck | undefined | Promise<DoctorCheck | undefined>;

/** In order: later checks use what earlier ones learnt (the settings, the seed's key). */
const CHECKS: Array<[string, Check]> = [
  ["config", checkConfig],
  ["tls", checkTls],
  ["x509", checkX509],
  ["seed", checkSeed],
  ["token", checkToken],
  ["nats-jwt", checkNatsJwt],
  ["clock", checkClock],
  ["broker", checkBroker],
];

/**
 * Examines the configuration in `configFile` as the process it is for (server, client or
 * broker) would use it. Never throws for what it finds: every problem is a check with a
 * detail and a fix.
 */
export async function runDoctor(configFile: string, opts: DoctorOptions = {}): Promise<DoctorReport> {
  const ctx: DoctorContext = {
    file: configFile,
    now: opts.now ?? Date.now,
    timeoutMs: opts.timeoutMs ?? 5000,
    role: "client",
  };
  const checks: DoctorCheck[] = [];
  for (const [name, check] of CHECKS) {
    try {
      const c = await check(ctx);
      if (c) checks.push(c);
    } catch (err) {
      checks.push({ name, status: "fail", detail: `the ${name} check could not finish: ${messageOf(err)}` });
    }
  }
  return { config: configFile, role: ctx.role, checks, ok: checks.every((c) => c.status !== "fail") };
}
