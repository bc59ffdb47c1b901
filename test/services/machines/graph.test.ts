import { describe, expect, it } from "vitest";
import { machineGraph, parseManifest } from "../../../src/services/machines/index.js";

const manifest = parseManifest(
  `
name: web
version: 1.0.0
initial_state: unknown
transitions:
  - name: healthy
    from: [unknown, failed]
    destination: ok
  - name: unhealthy
    from: [unknown, ok]
    destination: failed
watchers:
  - name: check
    type: exec
    properties:
      command: /bin/true
`,
  "machine.yaml",
);

describe("machineGraph", () => {
  it("draws Mermaid", () => {
    expect(machineGraph(manifest, "mermaid")).toBe(
      [
        "stateDiagram-v2",
        "    [*] --> unknown",
        "    unknown --> ok : healthy",
        "    failed --> ok : healthy",
        "    unknown --> failed : unhealthy",
        "    ok --> failed : unhealthy",
        "",
      ].join("\n"),
    );
  });

  it("draws DOT", () => {
    expect(machineGraph(manifest, "dot")).toBe(
      [
        'digraph "web" {',
        "    rankdir=LR;",
        '    "[*]" [shape=point];',
        '    "unknown" [peripheries=2];',
        '    "failed";',
        '    "ok";',
        '    "[*]" -> "unknown";',
        '    "unknown" -> "ok" [label="healthy"];',
        '    "failed" -> "ok" [label="healthy"];',
        '    "unknown" -> "failed" [label="unhealthy"];',
        '    "ok" -> "failed" [label="unhealthy"];',
        "}",
        "",
      ].join("\n"),
    );
  });
});
