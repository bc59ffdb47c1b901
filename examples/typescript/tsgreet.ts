// Source of examples/agents/mcollective/agent/tsgreet.mjs. Compile it next to its
// DDL, e.g. `tsc --module nodenext --target es2022 --outDir <libdir>/mcollective/agent`
// and rename the output to tsgreet.mjs (or keep .js in a "type": "module" package).
import type { AgentHandler } from "chorus";

export const actions: Record<string, AgentHandler> = {
  hello: (req, reply) => {
    if (req.data.name === "Voldemort") {
      reply.fail("I will not say that name");
      return;
    }
    return { greeting: `hello ${String(req.data.name)} from ${req.node.identity}` };
  },
};
