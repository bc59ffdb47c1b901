import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Client,
  ClientError,
  ReceiverApi,
  ReceiverApiError,
  type AsyncRequestResult,
  type RequestStatus,
} from "../../src/client/index.js";
import { freePort } from "../helpers/nats.js";
import { FAILING_NODE, OK_NODE, startAsyncFleet, type AsyncFleet } from "./async-fixture.js";

// ReceiverApi against a real receiver storing the replies of real asynchronous requests.
let af: AsyncFleet;
let client: Client;
let api: ReceiverApi;

beforeAll(async () => {
  af = await startAsyncFleet();
  client = await Client.fromConfigFile(af.fleet.setup.clientConfig);
  api = new ReceiverApi({ url: af.api, timeoutMs: 5000 });
}, 60_000);

afterAll(async () => {
  await client?.close();
  await af?.stop();
});

function send(nodes: string[]): Promise<AsyncRequestResult> {
  return client.requestAsync("rpcutil", "ping", {}, { nodes });
}

describe("ReceiverApi", () => {
  it("follows a request to completion, then reads its status, replies and the list", async () => {
    const r = await send([OK_NODE, FAILING_NODE]);
    const seen: RequestStatus[] = [];
    const f = await api.follow(r.requestId, { timeoutMs: 10_000, onStatus: (s) => seen.push(s) });
    expect(f.outcome).toBe("complete");
    expect(f.status).toMatchObject({
      request_id: r.requestId,
      agent: "rpcutil",
      action: "ping",
      caller: client.callerId,
      collective: client.collective,
      discovered: 2,
      replied: 2,
      ok: 1,
      failed: 1,
      unexpected: 0,
      complete: true,
      known: true,
    });
    expect(seen.at(-1)).toEqual(f.status);

    expect(await api.status(r.requestId)).toEqual(f.status);
    const replies = await api.replies(r.requestId);
    expect(replies.map((x) => x.sender).sort()).toEqual([OK_NODE, FAILING_NODE]);
    const failed = await api.replies(r.requestId, { failed: true });
    expect(failed).toMatchObject([{ sender: FAILING_NODE, statuscode: 1, statusmsg: "failed on purpose" }]);

    const listed = await api.list({ caller: client.callerId });
    expect(listed.map((s) => s.request_id)).toContain(r.requestId);
    expect(await api.list({ agent: "no_such_agent" })).toEqual([]);
    expect(await api.healthy()).toBe(true);
  });

  it("watch yields statuses and ends with the complete one", async () => {
    const r = await send([OK_NODE]);
    const all: RequestStatus[] = [];
    for await (const s of api.watch(r.requestId)) all.push(s);
    expect(all.length).toBeGreaterThan(0);
    expect(all.at(-1)).toMatchObject({ replied: 1, ok: 1, complete: true });
  });

  it("a node that never answers: follow ends at the timeout with what is there", async () => {
    const r = await send([OK_NODE, "ghost.lab"]);
    const t0 = Date.now();
    const f = await api.follow(r.requestId, { timeoutMs: 1500 });
    expect(f.outcome).toBe("timeout");
    expect(Date.now() - t0).toBeLessThan(4000);
    expect(f.status).toMatchObject({ discovered: 2, replied: 1, ok: 1, complete: false });
  });

  it("an aborted follow ends as interrupted", async () => {
    const r = await send([OK_NODE, "ghost.lab"]);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 300);
    const f = await api.follow(r.requestId, { signal: ac.signal });
    expect(f.outcome).toBe("interrupted");
  });

  it("an unknown id is the server's 404 with its text; a malformed one is refused before any call", async () => {
    const unknown = "0000000000000000000000000Zz";
    const err = await api.status(unknown).catch((e) => e);
    expect(err).toBeInstanceOf(ReceiverApiError);
    expect(err).toMatchObject({ code: "receiver_error", status: 404 });
    expect((err as Error).message).toMatch(new RegExp(`^the receiver API at ${af.api} answered 404: .+`));
    // the receiver waits a moment for a record that may be on its way, then says 404
    const f = await api.follow(unknown).catch((e) => e);
    expect(f).toMatchObject({ code: "receiver_error", status: 404 });

    for (const bad of ["bad-id!", "../healthz", "", "x".repeat(65)]) {
      const e = await api.status(bad).catch((x) => x);
      expect(e).toBeInstanceOf(ClientError);
      expect(e).toMatchObject({ code: "bad_option", option: "requestId" });
      expect((e as Error).message).toMatch(/is not an id: 1 to 64 letters and digits/);
    }
  });

  it("an unreachable API and a bad URL are clear errors", async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const err = await new ReceiverApi({ url }).list().catch((e) => e);
    expect(err).toMatchObject({ code: "receiver_unreachable", status: undefined });
    expect((err as Error).message).toBe(`cannot reach the receiver API at ${url}: ECONNREFUSED`);
    expect(await new ReceiverApi({ url }).healthy()).toBe(false);
    expect(() => new ReceiverApi({ url: "not a url" })).toThrow(/receiver API URL "not a url" is not a URL/);
    expect(() => new ReceiverApi({ url: "ftp://x" })).toThrow(/is not an http\(s\) URL/);
  });

  it("a server that is not a receiver API is named as such", async () => {
    const other = createServer((_req, res) => {
      res.setHeader("content-type", "application/json");
      res.end('{"hello":"world"}');
    });
    await new Promise<void>((r) => other.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(other.address() as AddressInfo).port}`;
    try {
      const wrong = new ReceiverApi({ url });
      const notApi = {
        code: "receiver_unreachable",
        message: expect.stringMatching(/did not answer as a receiver API does/),
      };
      expect(await wrong.list().catch((e) => e)).toMatchObject(notApi);
      expect(await wrong.status("abc").catch((e) => e)).toMatchObject(notApi);
      expect(await wrong.follow("abc", { timeoutMs: 2000 }).catch((e) => e)).toMatchObject(notApi);
    } finally {
      other.close();
    }
  });
});
