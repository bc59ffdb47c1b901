import { writeFileSync } from "node:fs";
import type { Command } from "commander";
import { ClientError, inventoryFromReplies } from "../../client/index.js";
import {
  addConfigOption,
  addDiscoveryOptions,
  addFilterOptions,
  discoveryFromFlags,
  filterFromFlags,
  withClient,
  type DiscoveryFlags,
} from "./common.js";
import { guarded } from "./errors.js";
import { plural, renderInventory } from "./render/index.js";

interface InventoryFlags extends DiscoveryFlags {
  json?: boolean;
  save?: string;
}

/**
 * `chorus inventory NODE`: one node's agents, facts, classes, collectives and stats.
 * `chorus inventory --save FILE [filters]`: snapshot matching nodes as an inventory file.
 */
export function register(program: Command): void {
  const cmd = program
    .command("inventory [node]")
    .description("Show a node's agents, facts, classes and statistics, or --save an inventory file");
  addConfigOption(cmd);
  addFilterOptions(cmd);
  addDiscoveryOptions(cmd);
  cmd
    .option("--json", "print the raw inventory as JSON")
    .option("--save <file>", "write matching nodes as an inventory file for --dm inventory")
    .action(
      guarded("inventory", async (node: string | undefined, o: InventoryFlags) => {
        if ((node === undefined) === (o.save === undefined)) {
          throw new ClientError("usage", "name one NODE, or use --save FILE (with optional filters)");
        }
        const filter = filterFromFlags(o);
        const { method, options } = discoveryFromFlags(o);
        await withClient(o.config, async (client, signal) => {
          if (o.save !== undefined) {
            const r = await client.request(
              "rpcutil",
              "inventory",
              {},
              {
                signal,
                filter,
                ...(method !== undefined && { discoveryMethod: method }),
                discoveryOptions: options,
                discoveryWindowed: o.discoveryWindow === true,
              },
            );
            const inv = inventoryFromReplies(r.replies);
            writeFileSync(o.save, JSON.stringify(inv, null, 1) + "\n");
            process.stderr.write(
              `chorus inventory: wrote ${plural(inv.nodes.length, "node")} to ${o.save}\n`,
            );
            process.exitCode = inv.nodes.length === 0 ? 1 : 0;
            return;
          }
          const id = node as string;
          const [inv, stats] = await Promise.all([
            client.request("rpcutil", "inventory", {}, { signal, nodes: [id] }),
            client.request("rpcutil", "daemon_stats", {}, { signal, nodes: [id] }),
          ]);
          const reply = inv.replies[0];
          if (!reply) throw new ClientError("usage", `${id} did not answer`);
          if (reply.statuscode !== 0) throw new ClientError("usage", `${id}: ${reply.statusmsg}`);
          const s = stats.replies[0]?.statuscode === 0 ? stats.replies[0].data : undefined;
          process.stdout.write(
            o.json
              ? JSON.stringify({ identity: id, ...reply.data, ...(s && { stats: s }) }, null, 2) + "\n"
              : renderInventory(id, reply.data, s),
          );
        });
      }),
    );
}
