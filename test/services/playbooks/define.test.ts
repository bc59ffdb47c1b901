import { describe, expect, it } from "vitest";
import {
  PlaybookError,
  type NodeSetDef,
  type Task,
  data,
  definePlaybook,
  job,
  rpc,
  shell,
  webhook,
} from "../../../src/services/playbooks/index.js";

const META = { name: "t", version: "1.0.0" };
const NODES = {
  web: { type: "list", nodes: ["w1"] },
  db: { type: "list", nodes: ["d1"] },
} satisfies Record<string, NodeSetDef>;

describe("definePlaybook", () => {
  it("builders only add the type", () => {
    const t: Task = rpc({ nodes: "web", action: "a.b", batch_size: 2 });
    expect(t).toEqual({ type: "rpc", nodes: "web", action: "a.b", batch_size: 2 });
    expect(shell({ command: "x" })).toEqual({ type: "shell", command: "x" });
    expect(data({ action: "delete", key: "m/k" })).toEqual({ type: "data", action: "delete", key: "m/k" });
    expect(webhook({ uri: "http://x" })).toEqual({ type: "webhook", uri: "http://x" });
    expect(job({ nodes: "web", workflow: "steps: []" })).toEqual({
      type: "job",
      nodes: "web",
      workflow: "steps: []",
    });
  });

  it("compiles to the IR through validatePlaybook", () => {
    const pb = definePlaybook({
      metadata: META,
      nodes: NODES,
      data_stores: { mem: { type: "memory" } },
      inputs: { n: { type: "integer", default: 3, data: "mem/n" } },
      locks: ["mem", "mem/x", "governor:g"],
      tasks: [
        rpc({ nodes: "web", action: "a.b", pre_task: [shell({ command: "x", nodes: "db" })] }),
        { type: "shell", command: "y" },
        data({ action: "write", key: "mem/k", value: 1 }),
        rpc({ nodes: "{{{ nodes.db }}}", action: "a.b" }),
      ],
    });
    expect(pb.tasks).toHaveLength(4);
    expect(pb.tasks[0]?.pre_task?.[0]).toMatchObject({ type: "shell", nodes: "db" });
    expect(pb.source).toBe("<definePlaybook>");
  });

  it("names checked by TypeScript are refused at run time too (for plain JS books)", () => {
    const wrong = () =>
      definePlaybook({
        metadata: META,
        nodes: NODES,
        // @ts-expect-error -- "cache" is not a declared node set
        tasks: [rpc({ nodes: "cache", action: "a.b" })],
      });
    expect(wrong).toThrow(PlaybookError);
    expect(wrong).toThrow('<definePlaybook>: tasks[0].nodes: unknown node set "cache" (declared: web, db)');

    expect(() =>
      definePlaybook({
        metadata: META,
        data_stores: { mem: { type: "memory" } },
        // @ts-expect-error -- "disk" is not a declared data store
        tasks: [data({ action: "delete", key: "disk/k" })],
      }),
    ).toThrow('tasks[0].key: unknown data store "disk"');

    expect(() =>
      definePlaybook({
        metadata: META,
        data_stores: { mem: { type: "memory" } },
        // @ts-expect-error -- a lock names a declared store or a governor
        locks: ["disk"],
      }),
    ).toThrow('locks[0]: unknown data store "disk"');

    expect(() =>
      definePlaybook({
        metadata: META,
        // @ts-expect-error -- an integer input's default is a number
        inputs: { n: { type: "integer", default: "three" } },
      }),
    ).toThrow('inputs.n.default: input n: "three" is not an integer');

    expect(() =>
      definePlaybook({
        metadata: META,
        nodes: NODES,
        // @ts-expect-error -- nested hooks are checked too
        tasks: [rpc({ nodes: "web", action: "a.b", post_task: [rpc({ nodes: "nope", action: "a.b" })] })],
      }),
    ).toThrow('tasks[0].post_task[0].nodes: unknown node set "nope"');

    expect(() =>
      definePlaybook({
        metadata: META,
        data_stores: { mem: { type: "memory" } },
        // @ts-expect-error -- an input binds to a declared store
        inputs: { n: { type: "integer", data: "disk/n" } },
      }),
    ).toThrow('inputs.n.data: unknown data store "disk"');

    expect(() =>
      definePlaybook({
        metadata: META,
        // @ts-expect-error -- enum values have the input's type
        inputs: { env: { type: "string", enum: ["dev", 1] } },
      }),
    ).toThrow("inputs.env.enum[1]: input env: 1 is not a string");

    expect(() =>
      definePlaybook({
        metadata: META,
        // @ts-expect-error -- no node sets: only a template may name nodes
        tasks: [job({ nodes: "web", workflow: {} })],
      }),
    ).toThrow("tasks[0].nodes: unknown node set");
  });
});
