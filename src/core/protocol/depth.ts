/**
 * Nesting limits for JSON that arrives from the network. V8's JSON.parse copes with
 * any depth, but most code that walks the result (JSON.stringify, renderers, deep
 * freezing, schema validation, structured comparisons) recurses once per level and
 * overflows the stack somewhere between a few thousand and a few tens of thousands of
 * levels. Checking the text first, without recursion, keeps one hostile or broken
 * message from taking the process down.
 */

/**
 * Deepest `[`/`{` nesting accepted in a network payload. Choria's layers are 2-3
 * levels deep and RPC bodies rarely exceed 10 (body, data, facts, a few nested
 * hashes); 64 leaves ample room while staying far below any recursion limit.
 */
export const MAX_JSON_DEPTH = 64;

const QUOTE = 0x22; // "
const BACKSLASH = 0x5c; // \
const OPEN_ARRAY = 0x5b; // [
const OPEN_OBJECT = 0x7b; // {
const CLOSE_ARRAY = 0x5d; // ]
const CLOSE_OBJECT = 0x7d; // }
// strings up to this long are walked byte by byte before switching to indexOf
const SHORT = 32;

/**
 * Where the string whose opening quote is at `from - 1` ends: the index of its closing
 * quote, or -1 when it is not closed. Short strings (keys, words) are walked; longer
 * ones (base64 layers) are skipped with native searches, a quote counting as escaped
 * when an odd number of backslashes precede it.
 */
function stringEndBytes(b: Uint8Array, from: number): number {
  const stop = Math.min(b.length, from + SHORT);
  for (let i = from; i < stop; i++) {
    const c = b[i];
    if (c === QUOTE) return i;
    if (c === BACKSLASH) return stringEndBytesLong(b, from);
  }
  return stop === b.length ? -1 : stringEndBytesLong(b, stop);
}

function stringEndBytesLong(b: Uint8Array, from: number): number {
  let q = b.indexOf(QUOTE, from);
  while (q >= 0) {
    let k = q - 1;
    while (k >= from && b[k] === BACKSLASH) k--;
    if ((q - 1 - k) % 2 === 0) return q;
    q = b.indexOf(QUOTE, q + 1);
  }
  return -1;
}

/**
 * The deepest `[`/`{` nesting in JSON text (UTF-8 bytes or a string), counting only
 * brackets outside strings; stops early once `max` is exceeded, returning max + 1.
 * "1" is 0 deep, "[]" and "{}" 1, `[{"a":[]}]` 3. One pass, no recursion, no
 * allocation. Text that is not JSON is scanned the same way and gives some number
 * (stray closing brackets never count below 0); it does not throw.
 */
export function jsonDepth(input: Uint8Array | string, max = Infinity): number {
  // one scanner, over bytes: quotes and brackets are ASCII, so UTF-8 keeps them as they are
  const text = typeof input === "string" ? Buffer.from(input, "utf8") : input;
  let depth = 0;
  let deepest = 0;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text[i];
    if (c === QUOTE) {
      const end = stringEndBytes(text, i + 1);
      if (end < 0) break;
      i = end;
    } else if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      if (++depth > deepest) {
        deepest = depth;
        if (deepest > max) return deepest;
      }
    } else if ((c === CLOSE_ARRAY || c === CLOSE_OBJECT) && depth > 0) {
      depth--;
    }
  }
  return deepest;
}

/**
 * True when JSON text nests `[`/`{` more than `max` levels deep (outside strings).
 * Meant to run before JSON.parse on anything received from the network; linear time,
 * stops at the first level past the limit.
 */
export function jsonDepthExceeds(text: Uint8Array | string, max: number = MAX_JSON_DEPTH): boolean {
  return jsonDepth(text, max) > max;
}

/**
 * True when a value (a JSON.parse result, or any plain data) has arrays or objects
 * nested more than `max` levels deep; `[]` and `{}` are 1 deep, scalars 0. Iterative,
 * and it gives up as soon as the limit is passed, so a cyclic value counts as too deep
 * rather than looping. Shared sub-objects are walked once per reference: meant for
 * trees such as parsed JSON.
 */
export function valueDepthExceeds(value: unknown, max: number = MAX_JSON_DEPTH): boolean {
  if (value === null || typeof value !== "object") return false;
  const stack: unknown[] = [value];
  const depths: number[] = [1];
  while (stack.length > 0) {
    const v = stack.pop() as object;
    const d = depths.pop() as number;
    if (d > max) return true;
    const children: unknown[] = Array.isArray(v) ? v : Object.values(v);
    for (const c of children) {
      if (c !== null && typeof c === "object") {
        stack.push(c);
        depths.push(d + 1);
      }
    }
  }
  return false;
}
