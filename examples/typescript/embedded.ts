// An agent registered in code on an embedded Server (no libdir needed).
import { Server, type AgentDDL } from "chorus";

const ddl: AgentDDL = {
  metadata: {
    name: "greeter",
    description: "Says hello",
    author: "you",
    license: "Apache-2.0",
    version: "1.0.0",
    url: "https://example.net",
    timeout: 5,
  },
  actions: [
    {
      action: "hello",
      description: "Greets someone",
      input: {
        name: {
          prompt: "Name",
          description: "who to greet",
          type: "string",
          optional: false,
          validation: "^[a-zA-Z ]+$",
          maxlength: 64,
        },
      },
      output: { greeting: { description: "the greeting", display_as: "Greeting" } },
    },
  ],
};

const server = await Server.fromConfigFile(process.argv[2] ?? "/etc/chorus/server.conf");
server.registerAgent(ddl, {
  hello: (req) => ({ greeting: `hello ${String(req.data.name)}` }),
});
await server.start();
process.once("SIGTERM", () => void server.stop());
