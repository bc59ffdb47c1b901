import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chorusAsync } from "../../helpers/cli.js";
import { freePort } from "../../helpers/nats.js";
import { FAILING_NODE, OK_NODE, startAsyncFleet, type AsyncFleet } from "../../client/async-fixture.js";

// `chorus req --async` and `chorus job` as a user runs them (the built CLI) against a
// secure fleet and a real receiver.
let af: AsyncFleet;
let env: Record<string, string>;

beforeAll(async () => {
  af = await startAsyncFleet();
  env = { CHORUS_CONFIG: af.fleet.setup.clientConfig, CHORUS_RECEIVER_API: af.api };
}, 60_000);

afterAll(async () => {
  await af?.stop();
});

/** `chorus req rpcutil ping --async` to these nodes; returns the request id. */
async function sendAsync(nodes: string[]): Promise<string> {
  const r = await chorusAsync(["req", "rpcutil", "ping", "--async", ...nodes.flatMap((n) => ["-I", n])], env);
  expect(r.stderr).toMatch(/follow the replies with: chorus job watch \S+/);
  expect(r.status).toBe(0);
  const id = r.stdout.trim();
  expect(id).toMatch(/^[0-9A-Za-z]{27}$/);
  expect(r.stderr).toContain(`chorus job watch ${id}`);
  return id;
}

describe("chorus req --async and chorus job", () => {
  it("a request with a failing node: watch exits 2, status and list show it", async () => {
    const id = await sendAsync([OK_NODE, FAILING_NODE]);
    const w = await chorusAsync(["job", "watch", id, "--json", "--timeout", "10"], env);
    expect(w.status).toBe(2);
    expect(JSON.parse(w.stdout)).toMatchObject({
      request_id: id,
      agent: "rpcutil",
      action: "ping",
      discovered: 2,
      replied: 2,
      ok: 1,
      failed: 1,
      complete: true,
      outcome: "complete",
    });
    // plain lines when not a terminal, then the outcome
    const plain = await chorusAsync(["job", "watch", id], env);
    expect(plain.status).toBe(2);
    expect(plain.stdout.trim().split("\n").at(-1)).toBe("Complete: 2 / 2 replied, 1 ok, 1 failed");

    const s = await chorusAsync(["job", "status", id, "--api", af.api], { CHORUS_RECEIVER_API: "" });
    expect(s.status).toBe(0);
    expect(s.stdout).toContain(`Request:   ${id}`);
    expect(s.stdout).toContain("Action:    rpcutil#ping");
    expect(s.stdout).toContain("Replies:   2 / 2 replied, 1 ok, 1 failed");
    expect(s.stdout).toContain("Complete:  yes");

    const l = await chorusAsync(["job", "list", "--json", "--agent", "rpcutil", "--limit", "5"], env);
    expect(l.status).toBe(0);
    const listed = JSON.parse(l.stdout) as { requests: { request_id: string }[] };
    expect(listed.requests.map((x) => x.request_id)).toContain(id);
    const text = await chorusAsync(["job", "list"], env);
    expect(text.stdout.split("\n")[0]).toMatch(
      /^Request\s+Created\s+Action\s+Caller\s+Replied\s+OK\s+Failed\s+Complete$/,
    );
    expect(text.stdout).toMatch(new RegExp(`^${id}\\s.*rpcutil#ping.*2/2\\s+1\\s+1\\s+yes$`, "m"));
  });

  it("every node OK: watch exits 0; --json on req prints the id, reply subject and count", async () => {
    const r = await chorusAsync(["req", "rpcutil", "ping", "--async", "--json", "-I", OK_NODE], env);
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as { requestid: string; reply_to: string; discovered: number };
    expect(out.discovered).toBe(1);
    expect(out.reply_to).toMatch(
      new RegExp(`^mcollective\\.reply\\.[0-9a-f]{32}\\.async\\.${out.requestid}$`),
    );
    const w = await chorusAsync(["job", "watch", out.requestid, "--json"], env);
    expect(w.status).toBe(0);
    expect(JSON.parse(w.stdout)).toMatchObject({ replied: 1, ok: 1, complete: true, outcome: "complete" });
  });

  it("a node that never answers: watch --timeout exits 2, and ^C exits 130", async () => {
    const id = await sendAsync([OK_NODE, "ghost.lab"]);
    const t0 = Date.now();
    const w = await chorusAsync(["job", "watch", id, "--json", "--timeout", "1.5"], env);
    expect(w.status).toBe(2);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(JSON.parse(w.stdout)).toMatchObject({
      discovered: 2,
      replied: 1,
      complete: false,
      outcome: "timeout",
    });
    expect(w.stderr).toContain("chorus job watch: not complete after --timeout");

    // ^C once, when the first status line is out
    let pressed = false;
    const i = await chorusAsync(["job", "watch", id], env, 20_000, "", (_out, child) => {
      if (!pressed) child.kill("SIGINT");
      pressed = true;
    });
    expect(i.status).toBe(130);
    expect(i.stdout).toContain("1 / 2 replied, 1 ok, 0 failed");
    expect(i.stderr).toContain("chorus job watch: interrupted (^C)");
  });

  it("bad and unknown ids, and an unreachable API, are clear errors", async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const unreachable = (cmd: string) =>
      `chorus job ${cmd}: cannot reach the receiver API at ${url}: ECONNREFUSED\n`;
    const badId = (cmd: string) =>
      `chorus job ${cmd}: request id "bad-id!" is not an id: 1 to 64 letters and digits\n`;
    const cases: [string[], string | RegExp][] = [
      [["job", "status", "bad-id!"], badId("status")],
      [["job", "watch", "bad-id!"], badId("watch")],
      [
        ["job", "status", "0000000000000000000000000Zz"],
        /^chorus job status: the receiver API at \S+ answered 404: .+\n$/,
      ],
      [["job", "list", "--api", url], unreachable("list")],
      [["job", "watch", "abc", "--api", url], unreachable("watch")],
      [["job", "status", "abc", "--api", url], unreachable("status")],
    ];
    // independent commands: run at once
    const results = await Promise.all(cases.map(([args]) => chorusAsync(args, env)));
    results.forEach((r, i) => {
      const want = (cases[i] as [string[], string | RegExp])[1];
      expect(r.status).toBe(1);
      if (typeof want === "string") expect(r.stderr).toBe(want);
      else expect(r.stderr).toMatch(want);
    });
  });

  it("--async refuses what needs waiting for replies, before sending", async () => {
    const cases: [string[], RegExp][] = [
      [["--reply-to", "x.y"], /--reply-to cannot be used with an asynchronous request/],
      [["--batch", "1"], /--batch cannot be used with an asynchronous request/],
      [["--canary", "1"], /--canary cannot be used with an asynchronous request/],
      [["--retry", "1"], /--retry cannot be used with an asynchronous request/],
      [["--service"], /--service cannot be used with an asynchronous request/],
      [["--jsonl"], /^chorus req: --async and --jsonl exclude each other\n$/],
      [["--timeout", "5"], /^chorus req: --async and --timeout exclude each other\n$/],
    ];
    const before = af.responders.reduce((n, r) => n + r.received.length, 0);
    const results = await Promise.all(
      cases.map(([flags]) =>
        chorusAsync(["req", "rpcutil", "ping", "--async", "-I", OK_NODE, ...flags], env),
      ),
    );
    results.forEach((r, i) => {
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch((cases[i] as [string[], RegExp])[1]);
      expect(r.stdout).toBe("");
    });
    expect(af.responders.reduce((n, r) => n + r.received.length, 0)).toBe(before);
  });
});
