import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import { openReply, parseRpcReplyBody, type Client, type ReplyTrust } from "../../client/index.js";
import { decodeTransport, replyPrefix, type NetworkHop } from "../../core/protocol/index.js";
import { FederationError } from "./errors.js";

/** One hop of a traced request, with the part of the route it stands for. */
export interface TraceHop {
  /** server the message came in on */
  in: string;
  /** the client's identity, or a federation broker's identity and stages */
  processor: string;
  /** server it went out on */
  out: string;
}

/** What `federationTrace` found. */
export interface FederationTrace {
  node: string;
  requestId: string;
  /** from publishing the request to the reply's arrival */
  rttMs: number;
  /** the seen-by hops of the reply, oldest first */
  hops: TraceHop[];
  /** the reply's RPC status */
  statuscode: number;
  statusmsg: string;
  /** the reply's signature was checked against the trust given */
  verified: boolean;
}

export interface TraceOptions {
  /** how long to wait for the reply (default 10 s) */
  timeoutMs?: number;
  /** check the reply's signature (a ChoriaSecurity fits); a bad one is not accepted */
  trust?: ReplyTrust;
}

/**
 * Sends an rpcutil ping to one node through the client (federated when the client is)
 * and reads the seen-by hops off the node's reply: the client's hop, the federation
 * broker's request path and its reply path. Throws FederationError `no_answer` when no
 * acceptable reply comes in `timeoutMs`.
 */
export async function federationTrace(
  client: Client,
  node: string,
  opts: TraceOptions = {},
): Promise<FederationTrace> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const nc = await client.connect();
  const replyTo = `${replyPrefix(client.collective, client.callerId)}.trace.${randomBytes(8).toString("hex")}`;
  const replies: { data: Uint8Array; at: number }[] = [];
  let wake: () => void = () => undefined;
  const sub = nc.subscribe(replyTo, {
    callback: (err, msg) => {
      if (err) return;
      replies.push({ data: msg.data, at: performance.now() });
      wake();
    },
  });
  let sentAt = 0;
  const rejected: string[] = [];
  try {
    await nc.flush();
    const deadline = performance.now() + timeoutMs;
    const r = await client.request(
      "rpcutil",
      "ping",
      {},
      {
        nodes: [node],
        replyTo,
        ttlS: Math.max(1, Math.ceil(timeoutMs / 1000)),
        onPublish: () => void (sentAt = performance.now()),
      },
    );
    const requestId = r.stats.requestid;
    for (;;) {
      while (replies.length > 0) {
        const { data, at } = replies.shift() as { data: Uint8Array; at: number };
        const opened = openReply(data, opts.trust);
        if (!opened.ok) {
          rejected.push(`${opened.reason}: ${opened.detail}`);
          continue;
        }
        if (opened.requestId !== requestId || opened.sender !== node) continue;
        const body = parseRpcReplyBody(opened.message);
        const trace: NetworkHop[] = decodeTransport(data, { strict: false }).transport.headers?.trace ?? [];
        return {
          node,
          requestId,
          rttMs: at - sentAt,
          hops: trace.map(([i, p, o]) => ({ in: i, processor: p, out: o })),
          statuscode: body.statuscode,
          statusmsg: body.statusmsg,
          verified: opts.trust !== undefined,
        };
      }
      const left = deadline - performance.now();
      if (left <= 0) break;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      wake = () => undefined;
    }
  } finally {
    sub.unsubscribe();
  }
  const why = rejected.length > 0 ? ` (replies refused: ${rejected.slice(0, 3).join("; ")})` : "";
  throw new FederationError("no_answer", `${node} did not answer within ${timeoutMs / 1000} s${why}`);
}
