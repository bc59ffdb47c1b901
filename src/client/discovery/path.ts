/**
 * A small gjson-like selector for `--do filter=`: dotted keys, numeric indexes, and
 * `#` to map over every element of an array (`replies.#.sender`, `data.hosts`).
 */
export function selectPath(doc: unknown, path: string): unknown {
  const segs = path.split(".").filter((s) => s !== "");
  const walk = (cur: unknown, i: number): unknown => {
    if (i === segs.length) return cur;
    const seg = segs[i] as string;
    if (seg === "#") {
      if (!Array.isArray(cur)) return undefined;
      return cur.map((x) => walk(x, i + 1)).filter((x) => x !== undefined);
    }
    if (Array.isArray(cur)) {
      if (!/^\d+$/.test(seg)) return undefined;
      return walk(cur[Number(seg)], i + 1);
    }
    if (cur === null || typeof cur !== "object" || !Object.hasOwn(cur, seg)) return undefined;
    return walk((cur as Record<string, unknown>)[seg], i + 1);
  };
  return walk(doc, 0);
}
