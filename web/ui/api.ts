// The console's HTTP client: one place that turns the server's `{error}` bodies into
// thrown ApiFailure, so every page shows the server's own message.
import type { ApiError, FilterSpec } from "../../src/apps/ui/api-types.js";

export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Called when any call answers 401: the app goes back to the login page with the message. */
let onUnauthorised: (message: string) => void = () => {};
export function setUnauthorisedHandler(f: (message: string) => void): void {
  onUnauthorised = f;
}

export async function api<T>(method: "GET" | "POST", path: string, body?: unknown): Promise<T> {
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      credentials: "same-origin",
      headers: body === undefined ? {} : { "content-type": "application/json" },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
  } catch (e) {
    throw new ApiFailure(0, `cannot reach the console server: ${(e as Error).message}`);
  }
  const text = await res.text();
  let parsed: unknown = undefined;
  try {
    parsed = text === "" ? undefined : JSON.parse(text);
  } catch {
    // not JSON (a proxy's error page): fall through with the raw text
  }
  if (!res.ok) {
    const msg =
      parsed && typeof parsed === "object" && typeof (parsed as ApiError).error === "string"
        ? (parsed as ApiError).error
        : `${res.status} ${res.statusText || text.slice(0, 200)}`;
    // the login call's own 401 is a wrong password, not a lost session
    if (res.status === 401 && path !== "/api/login" && path !== "/api/session") onUnauthorised(msg);
    throw new ApiFailure(res.status, msg);
  }
  return parsed as T;
}

/** `?a=1&fact=x&fact=y` from a record of scalars and string lists; empty values left out. */
export function query(params: Record<string, string | number | string[] | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === "") continue;
    if (Array.isArray(v)) for (const x of v) q.append(k, x);
    else q.append(k, String(v));
  }
  const s = q.toString();
  return s === "" ? "" : `?${s}`;
}

export function filterQuery(f: FilterSpec): Record<string, string[] | undefined> {
  return { identity: f.identity, fact: f.fact, class: f.class, agent: f.agent, compound: f.compound };
}
