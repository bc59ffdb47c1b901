// An agent module: the server imports it and calls `actions[<action>]` for each
// request. This is what `tsc` emits for examples/typescript/tsgreet.ts; any ESM
// JavaScript with this shape works.

/** @type {Record<string, import("chorus").AgentHandler>} */
export const actions = {
  hello: (req, reply) => {
    if (req.data.name === "Voldemort") {
      reply.fail("I will not say that name");
      return;
    }
    return { greeting: `hello ${String(req.data.name)} from ${req.node.identity}` };
  },
};
