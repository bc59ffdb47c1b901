import { readFileSync } from "node:fs";
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { performance } from "node:perf_hooks";
import { monitorUrlOf } from "../../broker/index.js";
import type { DoctorContext } from "./context.js";
import { Findings, messageOf, skipped, type DoctorCheck } from "./report.js";

/** skew above this is warned about, above CLOCK_FAIL_MS it fails */
export const CLOCK_WARN_MS = 5_000;
export const CLOCK_FAIL_MS = 60_000;

const LOGIN_KEY = "plugin.login.aaasvc.login.url";
const SIGNER_KEY = "plugin.choria.security.request_signer.url";

/** A remote clock read: how far it is ahead of ours (negative: behind), and how exactly. */
interface Reading {
  source: string;
  skewMs: number;
  precisionMs: number;
}

interface Answer {
  res: IncomingMessage;
  body: string;
  /** our clock (ctx.now) halfway through the exchange */
  localMs: number;
  rttMs: number;
}

/** One GET without a kept-alive connection (nothing left open to hold the process). */
function get(
  url: string,
  o: { timeoutMs: number; now: () => number; ca?: Buffer | undefined },
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const start = performance.now();
    const startLocal = o.now();
    const opts = { method: "GET", agent: false as const, timeout: o.timeoutMs, ...(o.ca && { ca: o.ca }) };
    const req = (u.protocol === "https:" ? httpsRequest : httpRequest)(u, opts, (res) => {
      const rttMs = performance.now() - start;
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (d: Buffer) => {
        size += d.length;
        if (size <= 4 * 1024 * 1024) chunks.push(d);
      });
      res.on("end", () =>
        resolve({
          res,
          body: Buffer.concat(chunks).toString("utf8"),
          localMs: startLocal + rttMs / 2,
          rttMs,
        }),
      );
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${o.timeoutMs / 1000} s`)));
    req.on("error", reject);
    req.end();
  });
}

/** The broker's clock from nats-server's monitoring `/varz` (`now`, nanosecond RFC 3339). */
async function fromVarz(base: string, ctx: DoctorContext): Promise<Reading> {
  const source = `${base}/varz`;
  const label = `the broker (${source})`;
  const a = await get(source, { timeoutMs: ctx.timeoutMs, now: ctx.now });
  if (a.res.statusCode !== 200) throw new Error(`${source} answered HTTP ${a.res.statusCode ?? "?"}`);
  let now: unknown;
  try {
    now = (JSON.parse(a.body) as { now?: unknown }).now;
  } catch {
    throw new Error(`${source} did not answer JSON`);
  }
  const remote = typeof now === "string" ? Date.parse(now) : NaN;
  if (!Number.isFinite(remote)) throw new Error(`${source} has no readable "now"`);
  return { source: label, skewMs: remote - a.localMs, precisionMs: Math.max(1, a.rttMs / 2) };
}

/** A web service's clock from its HTTP `Date` header (whole seconds). */
async function fromDateHeader(url: string, ctx: DoctorContext, ca: Buffer | undefined): Promise<Reading> {
  const a = await get(url, { timeoutMs: ctx.timeoutMs, now: ctx.now, ca });
  const date = a.res.headers.date;
  const remote = date === undefined ? NaN : Date.parse(date);
  if (!Number.isFinite(remote)) throw new Error(`${url} sent no Date header`);
  // the header drops the fraction of the second: on average it is half a second behind
  return {
    source: `the AAA service (${url}, HTTP Date)`,
    skewMs: remote + 500 - a.localMs,
    precisionMs: 500 + a.rttMs / 2,
  };
}

/** AAA endpoints the config names (login, remote request signer), as valid http(s) URLs. */
function aaaUrls(ctx: DoctorContext): string[] {
  const cfg = ctx.cfg;
  if (!cfg) return [];
  const raw = [...cfg.list(LOGIN_KEY, []), ...cfg.list(SIGNER_KEY, [])];
  return raw.filter((u) => {
    try {
      return ["http:", "https:"].includes(new URL(u).protocol);
    } catch {
      return false;
    }
  });
}

function fmt(ms: number): string {
  const a = Math.abs(ms);
  return a >= 10_000
    ? `${Math.round(a / 1000)} s`
    : a >= 100
      ? `${(a / 1000).toFixed(1)} s`
      : `${Math.round(a)} ms`;
}

/**
 * Check 4: this host's clock against the broker's (its monitoring `/varz`, when the
 * config is a broker's) or the AAA service's (the HTTP Date of its login or signer URL).
 */
export async function checkClock(ctx: DoctorContext): Promise<DoctorCheck> {
  if (!ctx.cfg || !(ctx.client ?? ctx.server ?? ctx.broker))
    return skipped("clock", "not checked: the configuration did not load");
  const tries: Array<() => Promise<Reading>> = [];
  if (ctx.broker) {
    let base: string;
    try {
      base = monitorUrlOf(ctx.broker);
    } catch (err) {
      return skipped("clock", `no time source: ${messageOf(err)}`);
    }
    tries.push(() => fromVarz(base, ctx));
  } else {
    const urls = aaaUrls(ctx);
    if (urls.length === 0) {
      return skipped(
        "clock",
        `no time source: the config names no AAA service (${LOGIN_KEY}, ${SIGNER_KEY}), and the broker's monitoring is known only from a broker's config`,
      );
    }
    let ca: Buffer | undefined;
    const caFile = (ctx.client ?? ctx.server)?.caFile;
    try {
      ca = caFile ? readFileSync(caFile) : undefined;
    } catch {
      ca = undefined;
    }
    for (const u of urls) tries.push(() => fromDateHeader(u, ctx, ca));
  }
  const problems: string[] = [];
  for (const t of tries) {
    let r: Reading;
    try {
      r = await t();
    } catch (err) {
      problems.push(messageOf(err));
      continue;
    }
    const f = new Findings();
    const dir = r.skewMs > 0 ? "behind" : "ahead of";
    const text = `this host's clock is ${fmt(r.skewMs)} ${dir} ${r.source} (±${fmt(r.precisionMs)})`;
    const fix =
      "set this host's clock right and keep it so (NTP: chrony or systemd-timesyncd): tokens' validity " +
      "(nbf, exp) and the servers' request replay window are judged by each side's own clock, " +
      "so requests and logins are refused when clocks disagree";
    const a = Math.abs(r.skewMs);
    if (a > CLOCK_FAIL_MS) f.fail(`${text}: more than ${CLOCK_FAIL_MS / 1000} s`, fix);
    else if (a > CLOCK_WARN_MS) f.warn(`${text}: more than ${CLOCK_WARN_MS / 1000} s`, fix);
    else f.ok(text);
    return f.result("clock");
  }
  return skipped("clock", `no time source answered: ${problems.join("; ")}`);
}
