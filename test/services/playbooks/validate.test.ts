import { describe, expect, it } from "vitest";
import { PlaybookError, validatePlaybook } from "../../../src/services/playbooks/index.js";

const META = { name: "t", version: "1.0.0" };

function bad(raw: unknown): string {
  try {
    validatePlaybook(raw, "t.ts");
  } catch (e) {
    expect(e).toBeInstanceOf(PlaybookError);
    expect((e as PlaybookError).code).toBe("bad_playbook");
    return (e as Error).message;
  }
  throw new Error("expected bad_playbook");
}

describe("validatePlaybook", () => {
  it("fills every section's default", () => {
    expect(validatePlaybook({ metadata: META }, "t.ts")).toEqual({
      metadata: META,
      uses: {},
      inputs: {},
      nodes: {},
      data_stores: {},
      locks: [],
      pre_book: [],
      tasks: [],
      on_success: [],
      on_fail: [],
      post_book: [],
      source: "t.ts",
    });
    // YAML's empty sections (null) are the defaults too
    expect(validatePlaybook({ metadata: META, tasks: null, inputs: null }, "t.ts").tasks).toEqual([]);
  });

  it("accepts Choria's and the IR's task shapes alike, and an IR validates to itself", () => {
    const nodes = { web: { type: "list", nodes: ["a"] } };
    const choria = validatePlaybook(
      { metadata: META, nodes, tasks: [{ mcollective: { nodes: "web", action: "a.b", try_sleep: 5 } }] },
      "t.ts",
    );
    const ir = validatePlaybook(
      { metadata: META, nodes, tasks: [{ type: "rpc", nodes: "web", action: "a.b", try_sleep: "5s" }] },
      "t.ts",
    );
    // a bare number of seconds is a duration, as in Choria
    expect(choria.tasks[0]).toEqual({
      type: "rpc",
      nodes: "web",
      action: "a.b",
      try_sleep: "5s",
      source: { file: "t.ts", path: "tasks[0]" },
    });
    expect(ir).toEqual(choria);
    expect(validatePlaybook(JSON.parse(JSON.stringify(ir)), "t.ts")).toEqual(ir);
  });

  it("without line information the error names the file and key", () => {
    expect(bad({ metadata: META, tasks: [{ type: "shell", command: "x", tries: 0 }] })).toBe(
      "t.ts: tasks[0].tries: must be a positive integer",
    );
    expect(bad({ metadata: { ...META, owner: "me" } })).toBe(
      "t.ts: metadata.owner: unknown key (expected one of: name, version, author, description, run_as, loglevel, on_fail, tags)",
    );
    expect(bad({ tasks: [] })).toBe("t.ts: metadata: is required (name and version)");
    expect(bad(null)).toBe("t.ts: must be a mapping with metadata, nodes, tasks, …");
  });

  it.each<[string, unknown, string]>([
    [
      "a task with two type keys",
      { tasks: [{ rpc: {}, shell: {} }] },
      "t.ts: tasks[0]: a task has one key naming its type",
    ],
    [
      "an unknown IR task type",
      { tasks: [{ type: "bolt" }] },
      "t.ts: tasks[0].type: must be one of: rpc, shell, data, webhook, job",
    ],
    [
      "an rpc task with an array of nodes",
      {
        nodes: { web: { type: "list", nodes: [] } },
        tasks: [{ type: "rpc", nodes: ["web"], action: "a.b" }],
      },
      "t.ts: tasks[0].nodes: must be a string",
    ],
    [
      "a job without a workflow",
      { nodes: { web: { type: "list", nodes: [] } }, tasks: [{ type: "job", nodes: "web" }] },
      "t.ts: tasks[0]: workflow is required",
    ],
    [
      "a data write without a value",
      { data_stores: { m: { type: "memory" } }, tasks: [{ type: "data", action: "write", key: "m/k" }] },
      "t.ts: tasks[0]: value is required",
    ],
    [
      "a data key with no key part",
      { data_stores: { m: { type: "memory" } }, tasks: [{ type: "data", action: "delete", key: "m" }] },
      't.ts: tasks[0].key: must be "store/key", got "m"',
    ],
    [
      "a webhook to ftp",
      { tasks: [{ webhook: { uri: "ftp://x" } }] },
      "t.ts: tasks[0].webhook.uri: must be an http:// or https:// URL",
    ],
    [
      "a webhook PUT",
      { tasks: [{ webhook: { uri: "http://x", method: "PUT" } }] },
      "t.ts: tasks[0].webhook.method: must be one of: GET, POST",
    ],
    [
      "post other than summarize",
      {
        nodes: { w: { type: "list", nodes: [] } },
        tasks: [{ rpc: { nodes: "w", action: "a.b", post: ["graph"] } }],
      },
      "t.ts: tasks[0].rpc.post[0]: must be one of: summarize",
    ],
    [
      "a node set of Choria's pql type",
      { nodes: { w: { type: "pql", query: "x" } } },
      "t.ts: nodes.w.type: must be one of: discovery, file, shell, list",
    ],
    [
      "a node set without type",
      { nodes: { w: { nodes: [] } } },
      "t.ts: nodes.w: type is required (discovery, file, shell, list)",
    ],
    [
      "a negative at_least",
      { nodes: { w: { type: "list", nodes: [], at_least: -1 } } },
      "t.ts: nodes.w.at_least: must be an integer >= 0",
    ],
    [
      "a file store without file",
      { data_stores: { f: { type: "file" } } },
      "t.ts: data_stores.f: file is required",
    ],
    [
      "a consul store",
      { data_stores: { c: { type: "consul" } } },
      "t.ts: data_stores.c.type: must be one of: memory, environment, file, kv, shell",
    ],
    [
      "a bad KV bucket",
      { data_stores: { k: { type: "kv", bucket: "a.b" } } },
      "t.ts: data_stores.k.bucket: a KV bucket name may hold letters, digits, _ and - only",
    ],
    [
      "save without data",
      { inputs: { x: { type: "string", save: true } } },
      't.ts: inputs.x.save: needs data: "store/key" to save to',
    ],
    [
      "dynamic without data",
      { inputs: { x: { type: "string", dynamic: true } } },
      't.ts: inputs.x.dynamic: needs data: "store/key" to read from',
    ],
    ["an input without type", { inputs: { x: {} } }, "t.ts: inputs.x: type is required"],
    [
      "an unknown validator",
      { inputs: { x: { type: "string", validation: ":email" } } },
      "t.ts: inputs.x.validation: unknown validator :email",
    ],
    [
      "a prototype name as validator",
      { inputs: { x: { type: "string", validation: ":toString" } } },
      "t.ts: inputs.x.validation: unknown validator :toString",
    ],
    [
      "a bad regex",
      { inputs: { x: { type: "string", validation: "/([a-z]/" } } },
      "t.ts: inputs.x.validation: bad regular expression",
    ],
    [
      "validation on a boolean",
      { inputs: { x: { type: "boolean", validation: ":shellsafe" } } },
      "t.ts: inputs.x.validation: does not apply to a boolean input",
    ],
    [
      "an empty enum",
      { inputs: { x: { type: "string", enum: [] } } },
      "t.ts: inputs.x.enum: must be a non-empty list",
    ],
    [
      "an enum of the wrong type",
      { inputs: { x: { type: "integer", enum: [1, "2"] } } },
      't.ts: inputs.x.enum[1]: input x: "2" is not an integer',
    ],
    [
      "an input name that is no flag",
      { inputs: { "--x": { type: "string" } } },
      "t.ts: inputs.--x: an input name must start with a letter",
    ],
    ["a lock on no governor", { locks: ["governor:"] }, "t.ts: locks[0]: names no governor"],
    [
      "a template naming an unknown node set",
      { tasks: [{ shell: { command: "echo {{{ nodes.db }}}" } }] },
      't.ts: tasks[0].shell.command: template {{{ nodes.db }}} names unknown node set "db"',
    ],
    [
      "a template that does not parse",
      { tasks: [{ shell: { command: "echo {{{ 1 + 1 }}}" } }] },
      "t.ts: tasks[0].shell.command: cannot parse template {{{ 1 + 1 }}}",
    ],
    [
      "a template with an unknown name",
      {
        metadata: { ...META, on_fail: "{{{ oops }}}" },
        tasks: [{ shell: { command: "echo {{{ oops }}}" } }],
      },
      't.ts: metadata.on_fail: unknown name "oops"',
    ],
  ])("refuses %s", (_what, raw, want) => {
    expect(bad({ metadata: META, ...(raw as object) }).startsWith(want)).toBe(true);
  });

  it("accepts templates where names are expected, and leaves a job's workflow to its own language", () => {
    const pb = validatePlaybook(
      {
        metadata: META,
        inputs: {
          hosts: { type: "array", default: ["a"] },
          port: { type: "integer", default: "{{{ inputs.hosts }}}" },
        },
        data_stores: { m: { type: "memory" } },
        locks: ["m", "m/deploys", "governor:web"],
        tasks: [
          { rpc: { nodes: "{{{ inputs.hosts }}}", action: "a.b", batch_sleep_time: "{{{ inputs.port }}}" } },
          {
            job: {
              nodes: "{{{ inputs.hosts }}}",
              workflow: { steps: [{ cmd: "echo {{{ not.ours }}} {{ inputs.x }}" }] },
            },
          },
          { data: { action: "write", key: "m/{{{ inputs.port }}}", value: null } },
          { webhook: { uri: "{{{ inputs.hosts.0 }}}", method: "post" } },
        ],
      },
      "t.ts",
    );
    expect(pb.locks).toEqual(["m", "m/deploys", "governor:web"]);
    expect(pb.tasks[3]).toMatchObject({ type: "webhook", method: "POST" });
    expect(pb.tasks[2]).toMatchObject({ type: "data", value: null });
  });

  it("keeps discovery node sets' keys and Choria's mcollective alias", () => {
    const pb = validatePlaybook(
      {
        metadata: META,
        nodes: {
          web: {
            type: "mcollective",
            discovery_method: "inventory",
            discovery_options: { file: "x.yaml", port: 5 },
            identities: ["/web/"],
            classes: ["a"],
            agents: ["rpcutil"],
            facts: ["os=linux"],
            compound: "with('x')",
            collective: "c1",
            empty_ok: true,
          },
          f: { type: "file", file: "nodes.txt" },
          s: { type: "shell", script: "./nodes", timeout: "5s" },
        },
      },
      "t.ts",
    );
    expect(pb.nodes.web).toEqual({
      type: "discovery",
      discovery_method: "inventory",
      discovery_options: { file: "x.yaml", port: "5" },
      identities: ["/web/"],
      classes: ["a"],
      agents: ["rpcutil"],
      facts: ["os=linux"],
      compound: "with('x')",
      collective: "c1",
      empty_ok: true,
    });
    expect(pb.nodes.s).toEqual({ type: "shell", script: "./nodes", timeout: "5s" });
  });
});
