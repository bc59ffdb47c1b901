// One-off measurement (not a test): median latency of one request through the node
// pipeline (decode, verify, dispatch, signed reply) for a built-in agent, an agent
// module and the example external agents. Run `npm run build` first, then
// `node examples/latency/external-latency.mjs`.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { registerBuiltinAgents } from "../../dist/agents/index.js";
import {
  encodeMessage,
  encodeRequest,
  encodeSecureRequest,
  encodeTransport,
  newRequestId,
  nowNanos,
  replySubject,
} from "../../dist/protocol/index.js";
import {
  ChoriaSecurity,
  createClientToken,
  createServerToken,
  generateKeyPair,
  orgIssuer,
  sign,
  writeSeedFile,
} from "../../dist/security/index.js";
import { AgentRegistry, NodeRuntime, RequestDecoder, scanAgentDirs } from "../../dist/server/index.js";

const dir = mkdtempSync(join(tmpdir(), "lat-"));
const org = orgIssuer(generateKeyPair());
const skp = generateKeyPair();
writeSeedFile(join(dir, "s.seed"), skp);
writeFileSync(
  join(dir, "s.jwt"),
  createServerToken(
    { identity: "lat", collectives: ["mcollective"], publicKeyHex: skp.publicHex, validityS: 3600 },
    org,
  ),
);
const sec = new ChoriaSecurity({
  seedFile: join(dir, "s.seed"),
  tokenFile: join(dir, "s.jwt"),
  issuers: [org.publicHex],
});
const ckp = generateKeyPair();
const ctok = createClientToken(
  {
    callerid: "choria=bench",
    publicKeyHex: ckp.publicHex,
    validityS: 3600,
    permissions: { fleet_management: true },
  },
  org,
);

const registry = new AgentRegistry();
registerBuiltinAgents(registry);
const scan = await scanAgentDirs([new URL("../agents", import.meta.url).pathname], {
  activationTimeoutMs: 10_000,
});
for (const a of scan.agents) registry.register(a.ddl, a.actions);
const node = new NodeRuntime({
  identity: "lat",
  collectives: ["mcollective"],
  registry,
  credential: { token: sec.token, sign: (d) => sec.sign(d) },
  facts: { os: "linux" },
});
const decoder = new RequestDecoder({ security: sec });

function req(agent, action, data) {
  const id = newRequestId();
  const rb = encodeRequest({
    message: encodeMessage(JSON.stringify({ agent, action, data })),
    id,
    sender: "bench",
    caller: "choria=bench",
    collective: "mcollective",
    agent,
    ttl: 60,
    time: nowNanos(),
  });
  return encodeTransport(encodeSecureRequest(rb, sign(ckp.seedHex, rb), ctok), {
    reply: replySubject("mcollective", "choria=bench", id),
  });
}
async function bench(label, agent, action, data, n) {
  const t = [];
  for (let i = 0; i < n + 10; i++) {
    const bytes = req(agent, action, data);
    const t0 = process.hrtime.bigint();
    const r = await node.handle(decoder.decode(bytes));
    const dt = Number(process.hrtime.bigint() - t0) / 1e6;
    if (!r) throw new Error(`${label}: no reply`);
    if (i >= 10) t.push(dt);
  }
  t.sort((a, b) => a - b);
  const q = (p) => t[Math.floor(p * (t.length - 1))].toFixed(3);
  console.log(`${label.padEnd(28)} n=${n} median=${q(0.5)}ms p10=${q(0.1)}ms p90=${q(0.9)}ms`);
  return Number(q(0.5));
}
const b1 = await bench("built-in rpcutil#ping", "rpcutil", "ping", {}, 500);
const b2 = await bench("module tsgreet#hello", "tsgreet", "hello", { name: "Ada" }, 500);
const e1 = await bench("external shell shuptime#greet", "shuptime", "greet", { name: "Ada" }, 300);
const e2 = await bench("external python pyecho#echo", "pyecho", "echo", { message: "hi" }, 300);
console.log(
  `added latency: shell +${(e1 - b1).toFixed(2)}ms, python +${(e2 - b1).toFixed(2)}ms (median vs built-in)`,
);
