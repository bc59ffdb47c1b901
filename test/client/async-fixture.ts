import { join } from "node:path";
import { pino } from "pino";
import { parseReceiverConfig, ReceiverService } from "../../src/services/receiver/index.js";
import { startSecureFleet, type SecureFleet } from "../helpers/fleet.js";
import { freePort } from "../helpers/nats.js";
import { startServerResponder, type Responder } from "./fleet.js";

/** Nodes of the async fleet: the first answers OK, the second fails. */
export const OK_NODE = "s1.lab";
export const FAILING_NODE = "s2.lab";

export interface AsyncFleet {
  fleet: SecureFleet;
  responders: Responder[];
  receiver: ReceiverService;
  /** the receiver API's base URL */
  api: string;
  stop(): Promise<void>;
}

/**
 * A secure dev fleet of two responders (one failing every action) and a real receiver
 * (stream mode, SQLite in the fleet's dir, its HTTP API on a free port), which creates
 * the replies stream as a deployed one does.
 */
export async function startAsyncFleet(): Promise<AsyncFleet> {
  const fleet = await startSecureFleet({ servers: [OK_NODE, FAILING_NODE] });
  const responders: Responder[] = [];
  for (const [identity, path] of Object.entries(fleet.setup.serverConfigs)) {
    responders.push(
      await startServerResponder(path, identity, {
        handler: (_action, data) =>
          identity === FAILING_NODE
            ? { statuscode: 1, statusmsg: "failed on purpose", data: {} }
            : { statuscode: 0, statusmsg: "OK", data: { message: data.message ?? "pong" } },
      }),
    );
  }
  const port = await freePort();
  const file = join(fleet.setup.dir, "receiver.yaml");
  const receiver = new ReceiverService(
    parseReceiverConfig(
      {
        // creating the stream needs streams_admin
        choria_config: fleet.setup.adminClientConfig,
        store: "sqlite:receiver.db",
        http_listen: `127.0.0.1:${port}`,
        flush_interval: "20ms",
      },
      file,
    ),
    { logger: pino({ level: "silent" }), watchIntervalMs: 50 },
  );
  await receiver.start();
  return {
    fleet,
    responders,
    receiver,
    api: `http://127.0.0.1:${port}`,
    async stop() {
      await receiver.stop();
      await Promise.all(responders.map((r) => r.stop()));
      await fleet.stop();
    },
  };
}
