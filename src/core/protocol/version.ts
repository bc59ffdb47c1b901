import { PROTOCOL_UNKNOWN, PROTOCOL_V1, PROTOCOL_V2 } from "./constants.js";

const KNOWN: ReadonlySet<string> = new Set<string>([
  ...Object.values(PROTOCOL_V1),
  ...Object.values(PROTOCOL_V2),
]);

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const NULL = 0x6e; // n: a scalar starting with it has already been checked to be `null`
const KEY = "protocol";

/** Sentinel for "not valid JSON"; Go's json.Unmarshal refuses such a document outright. */
const BAD = -1;

/**
 * The `protocol` field of a Choria message, read the way go-choria's
 * protocol.VersionFromJSON reads it: a known v1 or v2 id is returned as it is; any other
 * value, a document that is not valid JSON or not an object, gives
 * "io.choria.protocol.unknown"; an object without the field (and a bare `null`) gives "".
 * The document is checked and scanned once without building it: nothing is allocated
 * but the field's own text, so a multi-megabyte transport costs one linear pass.
 */
export function protocolVersion(input: Uint8Array | string): string {
  const b = typeof input === "string" ? Buffer.from(input, "utf8") : input;
  return new Scanner(b).run();
}

class Scanner {
  private i = 0;
  // What the top-level object said so far: undefined = no protocol key seen.
  private found: string | undefined;
  // A protocol value Go could not put into a string (number, bool, list, object).
  private typeError = false;
  // Whether the value about to be read belongs to a top-level `protocol` key.
  private pending = false;

  constructor(private readonly b: Uint8Array) {}

  run(): string {
    const b = this.b;
    this.ws();
    const first = b[this.i];
    if (first === undefined) return PROTOCOL_UNKNOWN;
    if (first !== 0x7b) {
      // Go leaves the struct untouched for a bare null and reports a type error otherwise.
      if (this.value() === BAD) return PROTOCOL_UNKNOWN;
      this.ws();
      if (this.i !== b.length) return PROTOCOL_UNKNOWN;
      return first === NULL ? "" : PROTOCOL_UNKNOWN;
    }
    if (this.value() === BAD) return PROTOCOL_UNKNOWN;
    this.ws();
    if (this.i !== b.length || this.typeError) return PROTOCOL_UNKNOWN;
    return this.found ?? "";
  }

  private ws(): void {
    const b = this.b;
    let i = this.i;
    for (;;) {
      const c = b[i];
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else break;
    }
    this.i = i;
  }

  /**
   * One JSON value at `i`, iteratively (no recursion, so depth costs nothing). Only
   * keys and values of the outermost object are looked at; the rest is just checked.
   */
  private value(): number {
    const b = this.b;
    // Open containers: true = object, false = array.
    const stack: boolean[] = [];
    for (;;) {
      // expecting a value
      this.ws();
      const c = b[this.i];
      if (c === 0x7b || c === 0x5b) {
        this.i++;
        this.ws();
        const close = c === 0x7b ? 0x7d : 0x5d;
        if (b[this.i] === close) {
          this.i++;
        } else {
          stack.push(c === 0x7b);
          if (c === 0x7b && this.key(stack.length) === BAD) return BAD;
          continue;
        }
      } else {
        const start = this.i;
        if (this.scalar() === BAD) return BAD;
        if (this.pending) this.take(start);
      }
      // after a value: close containers or move to the next element
      for (;;) {
        if (stack.length === 0) return 0;
        this.ws();
        const d = b[this.i];
        const inObject = stack[stack.length - 1] === true;
        if (d === 0x2c) {
          this.i++;
          if (inObject && this.key(stack.length) === BAD) return BAD;
          break;
        }
        if (d === (inObject ? 0x7d : 0x5d)) {
          this.i++;
          stack.pop();
          continue;
        }
        return BAD;
      }
    }
  }

  /** `"key" :` inside an object at `depth`; notes a top-level protocol key. */
  private key(depth: number): number {
    this.ws();
    const start = this.i;
    if (this.b[start] !== QUOTE) return BAD;
    const end = this.string();
    if (end === BAD) return BAD;
    if (depth === 1) {
      const name = this.text(start, end);
      // Go matches struct fields case-insensitively; "protocol" has no special folds.
      this.pending = name.length === KEY.length && name.toLowerCase() === KEY;
    }
    this.ws();
    if (this.b[this.i] !== 0x3a) return BAD;
    this.i++;
    this.ws();
    const c = this.b[this.i];
    if (this.pending && (c === 0x7b || c === 0x5b)) {
      // A list or object cannot become a string: Go fails the whole decode.
      this.typeError = true;
      this.pending = false;
    }
    return 0;
  }

  /** Records the top-level protocol value that ended at `i` (a scalar starting at `start`). */
  private take(start: number): void {
    this.pending = false;
    const b = this.b;
    if (b[start] === QUOTE) {
      const s = this.text(start, this.i);
      this.found = KNOWN.has(s) ? s : PROTOCOL_UNKNOWN;
    } else if (b[start] === NULL) {
      // go-choria's UnmarshalJSON sees null as an empty string: unknown.
      this.found = PROTOCOL_UNKNOWN;
    } else {
      this.typeError = true;
    }
  }

  /** The text of the JSON string literal between `start` (its quote) and `end` (past the closing quote). */
  private text(start: number, end: number): string {
    const b = this.b;
    for (let k = start + 1; k < end - 1; k++) {
      if (b[k] === BACKSLASH)
        return JSON.parse(
          Buffer.from(b.buffer, b.byteOffset + start, end - start).toString("utf8"),
        ) as string;
    }
    return Buffer.from(b.buffer, b.byteOffset + start + 1, end - start - 2).toString("utf8");
  }

  /** A string, number, true, false or null at `i`. */
  private scalar(): number {
    const c = this.b[this.i];
    if (c === QUOTE) return this.string();
    if (c === 0x74) return this.word("true");
    if (c === 0x66) return this.word("false");
    if (c === NULL) return this.word("null");
    return this.number();
  }

  /** The string whose quote is at `i`; returns the index past its closing quote. */
  private string(): number {
    const b = this.b;
    let i = this.i + 1;
    const n = b.length;
    while (i < n) {
      const c = b[i] as number;
      if (c === QUOTE) {
        this.i = i + 1;
        return this.i;
      }
      if (c < 0x20) return BAD;
      if (c === BACKSLASH) {
        const e = b[i + 1];
        if (e === 0x75) {
          for (let k = i + 2; k < i + 6; k++) if (!isHex(b[k])) return BAD;
          i += 6;
          continue;
        }
        // " \ / b f n r t
        if (
          e !== QUOTE &&
          e !== BACKSLASH &&
          e !== 0x2f &&
          e !== 0x62 &&
          e !== 0x66 &&
          e !== 0x6e &&
          e !== 0x72 &&
          e !== 0x74
        )
          return BAD;
        i += 2;
        continue;
      }
      i++;
    }
    return BAD;
  }

  private word(w: string): number {
    const b = this.b;
    for (let k = 0; k < w.length; k++) if (b[this.i + k] !== w.charCodeAt(k)) return BAD;
    this.i += w.length;
    return 0;
  }

  /** -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
  private number(): number {
    const b = this.b;
    let i = this.i;
    if (b[i] === 0x2d) i++;
    if (b[i] === 0x30) i++;
    else if (isDigit(b[i])) while (isDigit(b[i])) i++;
    else return BAD;
    if (b[i] === 0x2e) {
      i++;
      if (!isDigit(b[i])) return BAD;
      while (isDigit(b[i])) i++;
    }
    if (b[i] === 0x65 || b[i] === 0x45) {
      i++;
      if (b[i] === 0x2b || b[i] === 0x2d) i++;
      if (!isDigit(b[i])) return BAD;
      while (isDigit(b[i])) i++;
    }
    this.i = i;
    return 0;
  }
}

function isDigit(c: number | undefined): boolean {
  return c !== undefined && c >= 0x30 && c <= 0x39;
}

function isHex(c: number | undefined): boolean {
  return (
    c !== undefined && ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66))
  );
}
