// Load generator for bench/aaa.ts, in its own process so that the client's cost is not
// charged to the signer's event loop. Argument: one JSON object; prints one JSON line.
//   {mode:"http", url, token, seedHex, seconds, conc}
//   {mode:"rpc", natsUrl, askerSeedFile, askerTokenFile, issuer, token, seedHex, seconds, conc}
import { Agent, request as httpRequest } from "node:http";
import { Client } from "../src/client/index.js";
import { builtinDDL } from "../src/core/ddl/index.js";
import { encodeMessage, encodeRequest, newRequestId, nowNanos } from "../src/core/protocol/index.js";
import { ChoriaSecurity, sign } from "../src/core/security/index.js";

interface Args {
  mode: "http" | "rpc";
  seconds: number;
  conc: number;
  token: string;
  seedHex: string;
  url?: string;
  natsUrl?: string;
  askerSeedFile?: string;
  askerTokenFile?: string;
  issuer?: string;
}

const args = JSON.parse(process.argv[2] ?? "{}") as Args;

function request(): Buffer {
  return encodeRequest({
    message: encodeMessage(JSON.stringify({ agent: "rpcutil", action: "ping", data: {} })),
    id: newRequestId(),
    sender: "bench.example",
    caller: "up=alice",
    collective: "mcollective",
    agent: "rpcutil",
    ttl: 300,
    time: nowNanos(),
  });
}

/** Runs `one` with `conc` in flight for the given seconds; returns completions per second. */
async function rate(one: () => Promise<void>, conc: number, seconds: number): Promise<number> {
  const end = performance.now() + seconds * 1000;
  let n = 0;
  const worker = async () => {
    while (performance.now() < end) {
      await one();
      n++;
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: conc }, worker));
  return (n / (performance.now() - t0)) * 1000;
}

async function main(): Promise<void> {
  // Signed before the clock starts: the figure is the signer's, not this client's signing.
  const pool = Array.from({ length: 40_000 }, () => {
    const req = request();
    return { req, sig: sign(args.seedHex, req).toString("hex") };
  });
  let next = 0;
  const take = () => pool[next++ % pool.length]!;

  if (args.mode === "http") {
    const agent = new Agent({ keepAlive: true, maxSockets: args.conc });
    const post = (body: string) =>
      new Promise<void>((resolve, reject) => {
        const r = httpRequest(
          `${args.url}/choria/v1/sign`,
          { method: "POST", agent, headers: { "content-type": "application/json" } },
          (res) => {
            res.resume();
            res.on("end", () =>
              res.statusCode === 200 ? resolve() : reject(new Error(`sign: ${res.statusCode}`)),
            );
          },
        );
        r.on("error", reject);
        r.end(body);
      });
    const r = await rate(
      async () => {
        const { req, sig } = take();
        await post(JSON.stringify({ token: args.token, signature: sig, request: req.toString("base64") }));
      },
      args.conc,
      args.seconds,
    );
    agent.destroy();
    process.stdout.write(`${JSON.stringify({ rate: r })}\n`);
    return;
  }

  const client = new Client({
    security: new ChoriaSecurity({
      seedFile: args.askerSeedFile!,
      tokenFile: args.askerTokenFile!,
      issuers: [args.issuer!],
    }),
    servers: [args.natsUrl!],
    collective: "mcollective",
  });
  client.registerDDL(builtinDDL("aaa_signer"));
  const r = await rate(
    async () => {
      const { req, sig } = take();
      const res = await client.request(
        "aaa_signer",
        "sign",
        { request: req.toString("utf8"), token: args.token, signature: sig },
        { mode: "service", timeoutMs: 10_000 },
      );
      if (res.replies[0]?.statuscode !== 0) throw new Error(`rpc sign: ${JSON.stringify(res.replies[0])}`);
    },
    args.conc,
    args.seconds,
  );
  await client.close();
  process.stdout.write(`${JSON.stringify({ rate: r })}\n`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
