// Child process for scenario (b): M nodes whose replies are built (signed) before any
// is sent, then published back to back, so the client's reply processing is isolated.
import { pino } from "pino";
import { registerBuiltinAgents } from "../dist/server/agents/index.js";
import { AgentRegistry, NodeRuntime, RequestDecoder } from "../dist/server/index.js";
import {
  ChoriaSecurity,
  createServerToken,
  generateKeyPair,
  loadSeedFile,
  orgIssuer,
  sign,
} from "../dist/core/security/index.js";
import { loadConfig, serverSettings } from "../dist/core/config/index.js";
import { emulatedFacts, emulatedIdentity } from "../dist/apps/emulator/index.js";
import { rawConnect, serveParent } from "./lib.js";

let nc;
let nodes = [];
let decoder;
let built = [];
let lastSubject = "";

serveParent({
  async prepare(m) {
    const cfg = loadConfig(m.config);
    const s = serverSettings(cfg);
    const sec = new ChoriaSecurity({
      seedFile: s.seedFile,
      tokenFile: s.tokenFile,
      issuers: s.issuers,
      natsJwtFile: s.natsJwtFile,
    });
    decoder = new RequestDecoder({ security: sec });
    const issuerPath = new URL(cfg.get("plugin.chorus.emulator.issuer_seed_file"), `file://${s.configDir}/`)
      .pathname;
    const issuer = orgIssuer(loadSeedFile(issuerPath));
    const registry = new AgentRegistry();
    registerBuiltinAgents(registry);
    const log = pino({ level: "warn" });
    for (let i = 1; i <= m.count; i++) {
      const kp = generateKeyPair();
      const identity = emulatedIdentity(i);
      const token = createServerToken(
        { identity, collectives: [s.mainCollective], publicKeyHex: kp.publicHex, validityS: 86_400 },
        issuer,
      );
      nodes.push(
        new NodeRuntime({
          identity,
          collectives: [s.mainCollective],
          facts: emulatedFacts(i),
          registry,
          credential: { token, sign: (d) => sign(kp.seedHex, d) },
          events: { drop: (r, d) => log.warn({ r }, d) },
        }),
      );
    }
    nc = await rawConnect(m.cred, "bench-responder");
    nc.subscribe(`${s.mainCollective}.broadcast.agent.discovery`, {
      callback: async (err, msg) => {
        if (err) return;
        const decoded = decoder.decode(msg.data);
        const replies = await Promise.all(nodes.map((n) => n.handle(decoded)));
        built = replies.filter(Boolean);
        lastSubject = built[0]?.subject ?? "";
        // all built and signed: now send back to back
        for (let i = 0; i < built.length; i++) {
          nc.publish(built[i].subject, built[i].data);
          if ((i & 1023) === 1023) await new Promise((r) => setImmediate(r));
        }
      },
    });
    await nc.flush();
    return { nodes: nodes.length };
  },
  /** The same bytes again, to a raw subscriber: the baseline for this scenario. */
  async blast(m) {
    for (let i = 0; i < built.length; i++) {
      nc.publish(m.subject, built[i].data);
      if ((i & 1023) === 1023) await new Promise((r) => setImmediate(r));
    }
    await nc.flush();
    return { sent: built.length, bytes: built[0]?.data.length ?? 0, subject: lastSubject };
  },
  async stop() {
    await nc?.close();
  },
});
