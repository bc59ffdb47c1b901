/**
 * JSON string/number output that matches Go's encoding/json byte for byte, so that
 * what we sign and hash is exactly what a go-choria peer would produce.
 */

// Go escapes these for HTML safety; JSON.stringify does not.
const GO_EXTRA = /[<>&\u2028\u2029]/;
const GO_EXTRA_G = /[<>&\u2028\u2029]/g;
const GO_EXTRA_MAP: Record<string, string> = {
  "<": "\\u003c",
  ">": "\\u003e",
  "&": "\\u0026",
  "\u2028": "\\u2028",
  "\u2029": "\\u2029",
};

interface WellFormed {
  isWellFormed(): boolean;
  toWellFormed(): string;
}

// Tokens, ids, identities and subjects are plain ASCII: skip the three escaping scans.
const PLAIN = /^[\w.:\-+/=@ ]*$/;

/** A JSON string literal as Go's json.Marshal writes it. */
export function goString(s: string): string {
  if (PLAIN.test(s)) return `"${s}"`;
  // Go strings are UTF-8, so a lone surrogate becomes U+FFFD there; mirror that.
  const w = s as unknown as WellFormed;
  let out = JSON.stringify(w.isWellFormed() ? s : w.toWellFormed());
  if (GO_EXTRA.test(out)) out = out.replace(GO_EXTRA_G, (c) => GO_EXTRA_MAP[c] as string);
  return out;
}

/** An integer as Go writes an int/int64; rejects values Go could not hold in an int. */
export function goInt(n: number, field: string): string {
  if (!Number.isInteger(n)) throw new TypeError(`${field} must be an integer, got ${String(n)}`);
  // Below 1e21 String() prints plain digits, which covers every int64 value.
  return String(n);
}

export function goStringArray(a: readonly string[] | undefined): string {
  if (!a || a.length === 0) return "[]";
  let out = "[";
  for (let i = 0; i < a.length; i++) {
    if (i > 0) out += ",";
    out += goString(a[i] as string);
  }
  return out + "]";
}

/** A map[string]string as Go writes it: keys sorted. */
export function goStringMap(m: Record<string, unknown>): string {
  const keys = Object.keys(m).sort();
  let out = "{";
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i] as string;
    if (i > 0) out += ",";
    out += goString(k) + ":" + goString(String(m[k]));
  }
  return out + "}";
}
