import type { Playbook } from "../../../src/services/playbooks/index.js";

/** A playbook IR with every section empty, named `name`, with `over` laid on top. */
export function testBook(name: string, source: string, over: Partial<Playbook> = {}): Playbook {
  return {
    metadata: { name, version: "1.0.0" },
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
    source,
    ...over,
  };
}
