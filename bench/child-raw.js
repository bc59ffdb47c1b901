// Raw NATS fleet in a child process: N plain subscriptions answering with fixed-size
// payloads: the physical limit the Chorus figures are compared with.
import { rawConnect, serveParent } from "./lib.js";

let conns = [];
let subs = 0;
serveParent({
  /** N responders on the broadcast subject (and each on its own direct subject when asked). */
  async fleet(m) {
    const { cred, nodes, connections, replyBytes, direct } = m;
    conns = await Promise.all(
      Array.from({ length: connections }, (_, k) => rawConnect(cred, `raw-fleet-${k}`)),
    );
    const reply = new Uint8Array(replyBytes).fill(120);
    for (let i = 0; i < nodes; i++) {
      const nc = conns[i % connections];
      const respond = (err, msg) => {
        if (!err && msg.reply) nc.publish(msg.reply, reply);
      };
      const subject = direct ? `${cred.collective}.node.raw-${i}` : m.subject;
      nc.subscribe(subject, { callback: respond });
      subs++;
      if ((i & 4095) === 4095) await new Promise((r) => setImmediate(r));
    }
    await Promise.all(conns.map((c) => c.flush()));
    return { subs };
  },
  async stop() {
    await Promise.allSettled(conns.map((c) => c.close()));
    conns = [];
  },
});
