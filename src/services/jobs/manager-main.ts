// The engine's own job manager (command steps only): `node manager-main.js <execution dir>`.
// Jobs starts it detached; servers ship one with an agent invoker (server/job-manager).
import { managerMain } from "./manager.js";

process.exitCode = await managerMain(process.argv.slice(2), {});
