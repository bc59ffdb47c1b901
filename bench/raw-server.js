// for "process start to first answer" and for idle memory. Imports nothing of Chorus.
import { connect, jwtAuthenticator } from "@nats-io/transport-node";

const [credJson, subject] = process.argv.slice(2);
const cred = JSON.parse(credJson);
const nc = await connect({
  servers: cred.servers,
  name: "raw-server",
  tls: cred.caFile ? { caFile: cred.caFile } : null,
  authenticator: jwtAuthenticator(cred.natsJwt, Uint8Array.from(cred.seed)),
});
nc.subscribe(subject, {
  callback: (err, msg) => {
    if (!err) msg.respond(new Uint8Array(300));
  },
});
process.on("SIGTERM", () => void nc.close().then(() => process.exit(0)));
