// Compile-time test, checked by the project typecheck (`tsc -p tsconfig.json`), never run:
// each @ts-expect-error must meet a type error, so if a DDL change made a wrong call
// legal (or a right one illegal) the typecheck fails.
import type { Client } from "../../../src/client/index.js";
import { RpcutilClient } from "../../../src/client/generated/index.js";

export async function typedCalls(client: Client): Promise<void> {
  const rpc = new RpcutilClient(client, { discoveryWindowed: true });

  const facts = await rpc.getFact({ fact: "os" }, { limit: 10, filter: { identity: ["web1"] } });
  const value: unknown = facts.replies[0]?.data.value;
  const name: string | undefined = facts.replies[0]?.data.fact;
  void value;
  void name;

  // @ts-expect-error fact is a string input, not a number
  await rpc.getFact({ fact: 42 });

  // @ts-expect-error fact is required (no default in the DDL)
  await rpc.getFact({});

  // @ts-expect-error unknown input
  await rpc.getFact({ fact: "os", nope: true });

  // @ts-expect-error the DDL declares no such action
  await rpc.reboot();

  const inv = await rpc.inventory();
  const agents: unknown[] | undefined = inv.replies[0]?.data.agents;
  // @ts-expect-error agents is a list, not a string
  const wrong: string = inv.replies[0]!.data.agents;
  void agents;
  void wrong;

  // @ts-expect-error the DDL is supplied by the generated client
  await rpc.ping({}, { ddl: undefined as never });
}
