/** What one check concluded: `skipped` when it could not be run (the detail says why). */
export type DoctorStatus = "ok" | "warn" | "fail" | "skipped";

export interface DoctorCheck {
  /** config, tls, seed, token, nats-jwt, clock, broker */
  name: string;
  status: DoctorStatus;
  detail: string;
  /** what to change, for warnings and failures: config keys, files, a shell command */
  fix?: string;
}

export type DoctorRole = "server" | "client" | "broker";

export interface DoctorReport {
  /** the configuration file examined */
  config: string;
  role: DoctorRole;
  checks: DoctorCheck[];
  /** no check failed (warnings and skipped checks do not count) */
  ok: boolean;
}

const RANK: Record<DoctorStatus, number> = { skipped: 0, ok: 1, warn: 2, fail: 3 };

interface Finding {
  status: DoctorStatus;
  text: string;
  fix?: string | undefined;
}

/**
 * What one check found, item by item, made into one DoctorCheck: the worst status, the
 * items' texts in order, and the fixes of the warnings and failures (failures first).
 */
export class Findings {
  private readonly items: Finding[] = [];

  ok(text: string): this {
    return this.add("ok", text);
  }

  warn(text: string, fix?: string): this {
    return this.add("warn", text, fix);
  }

  fail(text: string, fix?: string): this {
    return this.add("fail", text, fix);
  }

  skip(text: string): this {
    return this.add("skipped", text);
  }

  /** true once any item failed */
  get failed(): boolean {
    return this.items.some((i) => i.status === "fail");
  }

  get status(): DoctorStatus {
    return this.items.reduce<DoctorStatus>(
      (worst, i) => (RANK[i.status] > RANK[worst] ? i.status : worst),
      "skipped",
    );
  }

  result(name: string): DoctorCheck {
    const status = this.status;
    const fixes = [
      ...new Set(
        ["fail", "warn"].flatMap((s) =>
          this.items.filter((i) => i.status === s && i.fix).map((i) => i.fix as string),
        ),
      ),
    ];
    return {
      name,
      status,
      detail: this.items.map((i) => i.text).join("; ") || "nothing to check",
      ...(fixes.length > 0 && (status === "warn" || status === "fail") && { fix: fixes.join("; ") }),
    };
  }

  private add(status: DoctorStatus, text: string, fix?: string): this {
    this.items.push({ status, text, fix });
    return this;
  }
}

/** A check that only says why it did not run. */
export function skipped(name: string, detail: string): DoctorCheck {
  return { name, status: "skipped", detail };
}

/** "3 days", "5 h", "12 min", "40 s": how far apart two moments are, roughly. */
export function span(ms: number): string {
  const a = Math.abs(ms);
  if (a >= 2 * 86_400_000) return `${Math.floor(a / 86_400_000)} days`;
  if (a >= 2 * 3_600_000) return `${Math.floor(a / 3_600_000)} h`;
  if (a >= 2 * 60_000) return `${Math.floor(a / 60_000)} min`;
  return `${Math.round(a / 1000)} s`;
}

/** "until 2027-01-02T03:04:05Z (in 29 days)" or "at ... (3 h ago)" for a moment relative to now. */
export function when(atMs: number, nowMs: number): string {
  const iso = new Date(atMs).toISOString().replace(/\.\d{3}Z$/, "Z");
  return atMs >= nowMs ? `${iso} (in ${span(atMs - nowMs)})` : `${iso} (${span(nowMs - atMs)} ago)`;
}

/** A file mode as `chmod` takes it: 0644. */
export function octal(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, "0");
}

/** An error's message, without a stack. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
