/**
 * The YAML front end: Choria's playbook format, parsed with positions so every error
 * names its line. Shapes are Choria's (`- rpc: {…}`, `- mcollective: {…}`, node set
 * `type: mcollective`); validatePlaybook does the checking.
 */
import { LineCounter, isMap, isPair, isScalar, isSeq, parseDocument, type Node } from "yaml";
import { PlaybookError } from "./errors.js";
import type { Playbook } from "./types.js";
import { validatePlaybook } from "./validate.js";

/** `tasks[1].rpc.batch_size` -> ["tasks", 1, "rpc", "batch_size"] */
function splitPath(path: string): (string | number)[] {
  const out: (string | number)[] = [];
  for (const m of path.matchAll(/([^.[\]]+)|\[(\d+)\]/g))
    out.push(m[2] !== undefined ? Number(m[2]) : (m[1] as string));
  return out;
}

export function parsePlaybookYaml(text: string, file: string): Playbook {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, merge: true, uniqueKeys: true });
  const err = doc.errors[0];
  if (err) {
    const pos = lineCounter.linePos(err.pos[0]);
    // the library repeats the position in its message; ours leads with it
    const msg = (err.message.split("\n")[0] as string).replace(/ at line \d+, column \d+:?$/, "");
    throw new PlaybookError("bad_playbook", `${file}:${pos.line}:${pos.col}: YAML syntax error: ${msg}`, {
      cause: err,
    });
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 1000 });
  } catch (e) {
    throw new PlaybookError("bad_playbook", `${file}: ${(e as Error).message}`, { cause: e });
  }

  const lineAt = (offset: number | undefined) =>
    offset === undefined ? undefined : lineCounter.linePos(offset).line;
  /** The line where a path's key (or list item) is written. */
  const lines = (path: string): number | undefined => {
    let node: unknown = doc.contents;
    let line: number | undefined;
    for (const seg of splitPath(path)) {
      if (isMap(node)) {
        const pair = node.items.find(
          (p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg),
        );
        if (!pair) return undefined;
        line = lineAt((pair.key as Node).range?.[0]);
        node = pair.value;
      } else if (isSeq(node) && typeof seg === "number") {
        const item = node.items[seg] as Node | undefined;
        if (!item) return undefined;
        line = lineAt(item.range?.[0]);
        node = item;
      } else return undefined;
    }
    return line;
  };

  return validatePlaybook(raw, file, lines);
}
