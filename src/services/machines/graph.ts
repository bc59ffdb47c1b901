import type { MachineManifest } from "./types.js";

function states(m: MachineManifest): string[] {
  const out: string[] = [m.initial_state];
  for (const t of m.transitions) {
    for (const s of [...t.from, t.destination]) if (!out.includes(s)) out.push(s);
  }
  return out;
}

const dq = (s: string): string => `"${s.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;

/**
 * The machine's states and transitions as a Mermaid `stateDiagram-v2` or Graphviz DOT
 * graph; edges are labelled with transition names and the initial state is entered from
 * the start marker. Output follows manifest order, so the same manifest gives the same text.
 */
export function machineGraph(m: MachineManifest, format: "mermaid" | "dot"): string {
  const lines: string[] = [];
  if (format === "mermaid") {
    lines.push("stateDiagram-v2");
    lines.push(`    [*] --> ${m.initial_state}`);
    for (const t of m.transitions) {
      for (const f of t.from) lines.push(`    ${f} --> ${t.destination} : ${t.name}`);
    }
    return lines.join("\n") + "\n";
  }
  lines.push(`digraph ${dq(m.name)} {`);
  lines.push("    rankdir=LR;");
  lines.push('    "[*]" [shape=point];');
  for (const s of states(m)) {
    lines.push(`    ${dq(s)}${s === m.initial_state ? " [peripheries=2]" : ""};`);
  }
  lines.push(`    "[*]" -> ${dq(m.initial_state)};`);
  for (const t of m.transitions) {
    for (const f of t.from) lines.push(`    ${dq(f)} -> ${dq(t.destination)} [label=${dq(t.name)}];`);
  }
  lines.push("}");
  return lines.join("\n") + "\n";
}
