import { describe, expect, it } from "vitest";
import { PlaybookError, parsePlaybookYaml } from "../../../src/services/playbooks/index.js";

const F = "book.yaml";

/** The error message parsing `text` gives (fails the test when it parses). */
function err(text: string): string {
  try {
    parsePlaybookYaml(text, F);
  } catch (e) {
    expect(e).toBeInstanceOf(PlaybookError);
    expect((e as PlaybookError).code).toBe("bad_playbook");
    return (e as Error).message;
  }
  throw new Error("expected the playbook to be refused");
}

// Line numbers below are those of this text: line 1 is `metadata:`.
const BASE = `metadata:
  name: demo
  version: "1.0.0"
data_stores:
  mem:
    type: memory
inputs:
  count:
    type: integer
    default: 2
nodes:
  web:
    type: list
    nodes: [a, b]
tasks:
  - rpc:
      nodes: web
      action: rpcutil.ping
  - shell:
      command: echo hi
      pre_task:
        - data:
            action: write
            key: mem/x
            value: 1
`;

describe("parsePlaybookYaml", () => {
  it("reads Choria's shapes: one key naming the task type, mcollective aliases", () => {
    const pb = parsePlaybookYaml(
      `metadata: {name: demo, version: "1.0.0"}
nodes:
  web: {type: mcollective, classes: [roles::web]}
tasks:
  - mcollective:
      nodes: web
      action: rpcutil.ping
`,
      F,
    );
    expect(pb.nodes.web).toEqual({ type: "discovery", classes: ["roles::web"] });
    expect(pb.tasks[0]).toEqual({
      type: "rpc",
      nodes: "web",
      action: "rpcutil.ping",
      source: { file: F, line: 5, path: "tasks[0]" },
    });
    // defaults for every section
    expect(pb.uses).toEqual({});
    expect(pb.inputs).toEqual({});
    expect(pb.data_stores).toEqual({});
    expect(pb.locks).toEqual([]);
    for (const l of ["pre_book", "on_success", "on_fail", "post_book"] as const) expect(pb[l]).toEqual([]);
    expect(pb.source).toBe(F);
  });

  it("records the line of every task, nested ones too", () => {
    const pb = parsePlaybookYaml(BASE, F);
    expect(pb.tasks.map((t) => t.source?.line)).toEqual([16, 19]);
    expect(pb.tasks[1]?.pre_task?.[0]?.source).toEqual({
      file: F,
      line: 22,
      path: "tasks[1].shell.pre_task[0]",
    });
  });

  it("a YAML syntax error names the line and column", () => {
    expect(err(`metadata:\n  name: demo\n  version: "1.0.0"\n   bad: x\ntasks: []\n`)).toBe(
      "book.yaml:4:1: YAML syntax error: All mapping items must start at the same column",
    );
    expect(err(`metadata: name: demo\n`)).toBe(
      "book.yaml:1:11: YAML syntax error: Nested mappings are not allowed in compact mappings",
    );
    expect(err(`metadata:\n\t- x\n`)).toBe(
      "book.yaml:2:1: YAML syntax error: Tabs are not allowed as indentation",
    );
    // a duplicate key is an error too, at the second one
    expect(err(`metadata:\n  name: a\n  name: b\n`)).toMatch(
      /^book\.yaml:3:3: YAML syntax error: .*[Uu]nique/,
    );
  });

  it("an empty document or a list is refused", () => {
    expect(err("")).toBe("book.yaml: must be a mapping with metadata, nodes, tasks, …");
    expect(err("- a\n")).toBe("book.yaml: must be a mapping with metadata, nodes, tasks, …");
  });

  const replace = (from: string, to: string) => {
    expect(BASE).toContain(from);
    return BASE.replace(from, to);
  };

  it.each([
    ["top level", replace("tasks:\n", "colour: blue\ntasks:\n"), "book.yaml:15: colour: unknown key"],
    [
      "metadata",
      replace('  version: "1.0.0"\n', '  version: "1.0.0"\n  owner: me\n'),
      "book.yaml:4: metadata.owner: unknown key",
    ],
    [
      "data store",
      replace("    type: memory\n", "    type: memory\n    ttl: 5\n"),
      "book.yaml:7: data_stores.mem.ttl: unknown key",
    ],
    [
      "input",
      replace("    default: 2\n", "    default: 2\n    optional: true\n"),
      "book.yaml:11: inputs.count.optional: unknown key",
    ],
    [
      "node set",
      replace("    nodes: [a, b]\n", "    nodes: [a, b]\n    query: x\n"),
      "book.yaml:15: nodes.web.query: unknown key",
    ],
    [
      "task",
      replace("      action: rpcutil.ping\n", "      action: rpcutil.ping\n      retries: 2\n"),
      "book.yaml:19: tasks[0].rpc.retries: unknown key",
    ],
    [
      "nested task",
      replace("            value: 1\n", "            value: 1\n            ttl: 3\n"),
      "book.yaml:26: tasks[1].shell.pre_task[0].data.ttl: unknown key",
    ],
    ["task type", replace("  - shell:\n", "  - bolt:\n"), "book.yaml:19: tasks[1].bolt: unknown task type"],
  ])("an unknown key in the %s names its line", (_what, text, want) => {
    expect(err(text).startsWith(want)).toBe(true);
  });

  it.each([
    [
      "batch_size",
      replace("      action: rpcutil.ping\n", "      action: rpcutil.ping\n      batch_size: 0\n"),
      "book.yaml:19: tasks[0].rpc.batch_size: must be a positive integer",
    ],
    [
      "tries",
      replace("      action: rpcutil.ping\n", "      action: rpcutil.ping\n      tries: two\n"),
      "book.yaml:19: tasks[0].rpc.tries: must be a positive integer",
    ],
    [
      "fail_ok",
      replace("      command: echo hi\n", "      command: echo hi\n      fail_ok: maybe\n"),
      "book.yaml:21: tasks[1].shell.fail_ok: must be true or false",
    ],
    [
      "duration",
      replace("      command: echo hi\n", "      command: echo hi\n      timeout: soon\n"),
      'book.yaml:21: tasks[1].shell.timeout: "soon" is not a duration',
    ],
    [
      "action",
      replace("rpcutil.ping", "ping"),
      'book.yaml:18: tasks[0].rpc.action: must be "agent.action", got "ping"',
    ],
    [
      "node list",
      replace("    nodes: [a, b]\n", "    nodes: a\n"),
      "book.yaml:14: nodes.web.nodes: must be a list of strings",
    ],
    [
      "input type",
      replace("    type: integer\n", "    type: int\n"),
      "book.yaml:9: inputs.count.type: must be one of: string, integer",
    ],
    [
      "input default",
      replace("    default: 2\n", "    default: two\n"),
      'book.yaml:10: inputs.count.default: input count: "two" is not an integer',
    ],
    [
      "metadata.version",
      replace('  version: "1.0.0"\n', "  version: 1.0\n"),
      'book.yaml:3: metadata.version: must be a quoted string such as "1.0.0"',
    ],
    [
      "SemVer version",
      replace('  version: "1.0.0"\n', "  version: one\n"),
      'book.yaml:3: metadata.version: "one" is not a SemVer version',
    ],
    ["missing metadata.name", replace("  name: demo\n", ""), "book.yaml:1: metadata: name is required"],
    [
      "missing action",
      replace("      action: rpcutil.ping\n", ""),
      "book.yaml:16: tasks[0].rpc: action is required",
    ],
    [
      "a task that is not a mapping",
      replace("  - rpc:\n      nodes: web\n      action: rpcutil.ping\n", "  - rpcutil.ping\n"),
      "book.yaml:16: tasks[0]: must be a task",
    ],
  ])("a wrong %s names its line and key", (_what, text, want) => {
    expect(err(text).startsWith(want)).toBe(true);
  });

  it("an unknown node set names its line", () => {
    expect(err(replace("      nodes: web\n", "      nodes: db\n"))).toBe(
      'book.yaml:17: tasks[0].rpc.nodes: unknown node set "db" (declared: web)',
    );
  });

  it("an unknown data store names its line: data task, input binding, lock", () => {
    expect(err(replace("key: mem/x", "key: disk/x"))).toBe(
      'book.yaml:24: tasks[1].shell.pre_task[0].data.key: unknown data store "disk" (declared: mem)',
    );
    expect(err(replace("    default: 2\n", "    default: 2\n    data: disk/count\n"))).toBe(
      'book.yaml:11: inputs.count.data: unknown data store "disk" (declared: mem)',
    );
    expect(err(replace("tasks:\n", "locks:\n  - mem\n  - disk/deploys\ntasks:\n"))).toMatch(
      /^book\.yaml:17: locks\[1\]: unknown data store "disk"/,
    );
  });

  it("a bad SemVer range names its line", () => {
    expect(err(replace("tasks:\n", 'uses:\n  puppet: "~> banana"\ntasks:\n'))).toMatch(
      /^book\.yaml:16: uses\.puppet: "~> banana" is not a SemVer range/,
    );
    expect(
      err(replace("    nodes: [a, b]\n", '    nodes: [a, b]\n    uses:\n      rpcutil: ">= x"\n')),
    ).toMatch(/^book\.yaml:16: nodes\.web\.uses\.rpcutil: ">= x" is not a SemVer range/);
  });

  it("a default failing the input's validation names its line", () => {
    expect(
      err(
        replace(
          "inputs:\n",
          'inputs:\n  host:\n    type: string\n    validation: ":shellsafe"\n    default: "a; rm -rf /"\n',
        ),
      ),
    ).toBe(
      'book.yaml:11: inputs.host.default: input host: "a; rm -rf /" does not pass validation :shellsafe',
    );
    expect(err(replace("    default: 2\n", "    default: 2\n    enum: [1, 3]\n"))).toBe(
      "book.yaml:10: inputs.count.default: input count: 2 is not one of 1, 3",
    );
  });

  it("a template naming an unknown input names its line", () => {
    expect(err(replace("command: echo hi", 'command: "echo {{{ inputs.nope }}}"'))).toBe(
      'book.yaml:20: tasks[1].shell.command: template {{{ inputs.nope }}} names unknown input "nope"',
    );
  });
});
