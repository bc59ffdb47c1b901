// The web console in a real browser: Debian's chromium driven by playwright-core, against a
// real broker, the AAA service, the console server and an emulated fleet.
// CHORUS_UI_SCREENSHOTS=1 also saves a screenshot of each page to docs/ui/ (kept off in CI
// so runs do not rewrite the docs).
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import bcrypt from "bcrypt";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type Browser, type Page } from "playwright-core";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Emulator, emulatedFacts, emulatedIdentity } from "../../../src/apps/emulator/index.js";
import { startUi, type UiServer } from "../../../src/apps/ui/index.js";
import { Client, login } from "../../../src/client/index.js";
import { clientSettings, loadConfig } from "../../../src/core/config/index.js";
import { AaaService } from "../../../src/services/aaa/index.js";
import { parseReceiverConfig, ReceiverService } from "../../../src/services/receiver/index.js";
import { startSecureFleet, type SecureFleet } from "../../helpers/fleet.js";
import { freePort } from "../../helpers/nats.js";

const CHROMIUM = process.env.CHORUS_CHROMIUM ?? "/usr/bin/chromium";
const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const SHOTS = process.env.CHORUS_UI_SCREENSHOTS === "1" ? join(ROOT, "docs", "ui") : undefined;
const quiet = pino({ level: "silent" });
const N = 40;
const PASSWORD = "correct horse battery";
/** an AAA user whose policy allows rpcutil ping and nothing else */
const VIEWER = { username: "viewer", password: "viewer-pw-1" };

async function shot(page: Page, name: string): Promise<void> {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  // the viewport only: long tables would make multi-megabyte images for the docs
  await page.screenshot({ path: join(SHOTS, `${name}.png`) });
}

/** On the Requests page: rpcutil `action` to the nodes of a filter line, sent from the form. */
async function sendRpcutil(page: Page, action: string, filter: string): Promise<void> {
  await expect.poll(() => page.getByTestId("agent").inputValue(), { timeout: 10_000 }).toBe("rpcutil");
  await page.getByTestId("action").selectOption(action);
  await page.getByTestId("request-filter").fill(filter);
  await page.getByTestId("send").click();
}

/** On the Audit page: apply these filters. */
async function auditFilter(
  page: Page,
  f: { caller?: string; agent?: string; decision?: string },
): Promise<void> {
  await page.getByTestId("audit-caller").fill(f.caller ?? "");
  await page.getByTestId("audit-agent").fill(f.agent ?? "");
  await page.getByTestId("audit-decision").selectOption(f.decision ?? "");
  await page.getByTestId("audit-go").click();
}

async function logIn(page: Page, url: string, password = PASSWORD, username = "admin"): Promise<void> {
  await page.goto(url);
  await page.locator('input[name="username"]').fill(username);
  await page.locator('input[name="password"]').fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
}

// scripts/bootstrap.sh installs chromium: a missing browser fails here, it is not skipped
describe("web console in chromium", () => {
  it("has Debian's chromium to drive", () => {
    expect(existsSync(CHROMIUM), `${CHROMIUM} is missing: run make bootstrap`).toBe(true);
  });
  let fleet: SecureFleet;
  let emulator: Emulator;
  let ui: UiServer;
  /** the console in AAA mode: users log in to the AAA service, the signer signs their requests */
  let aaaUi: UiServer;
  let aaa: AaaService;
  let receiver: ReceiverService;
  let receiverUrl: string;
  let client: Client;
  let browser: Browser;
  let webRoot: string;
  const dbs = Array.from({ length: N }, (_, i) => emulatedFacts(i + 1)).filter((f) => f.role === "db").length;

  const uiOptions = () => ({
    config: fleet.setup.clientConfig,
    cert: join(fleet.setup.dir, "tls", "broker.pem"),
    key: join(fleet.setup.dir, "tls", "broker.key"),
    devPassword: PASSWORD,
    webRoot,
    receiverUrl,
    // the audit stream and (when allowed) registration are read with the admin credential
    auditConfig: fleet.setup.adminClientConfig,
    discoveryTimeoutMs: 1_500,
    logger: quiet,
  });

  beforeAll(async () => {
    // the bundle the package ships, built fresh so the test sees the current sources
    webRoot = mkdtempSync(join(tmpdir(), "chorus-ui-web-"));
    execFileSync(process.execPath, [join(ROOT, "scripts", "build-ui.mjs"), "--out", webRoot]);
    fleet = await startSecureFleet({ aaa: { port: await freePort() } });
    const a = fleet.setup.aaa!;
    // a second AAA user with a narrow policy, for the denied request
    const users = JSON.parse(readFileSync(a.usersFile, "utf8")) as unknown[];
    users.push({
      username: VIEWER.username,
      password: bcrypt.hashSync(VIEWER.password, 4),
      acls: ["rpcutil.ping"],
      // nodes take requests the signer signed only for callers with this right
      broker_permissions: { signed_fleet_management: true },
    });
    writeFileSync(a.usersFile, JSON.stringify(users), { mode: 0o600 });
    // in-process, as the demo runs it: login, signing, and audit to the file and CHORUS_AAA_AUDIT
    aaa = AaaService.fromFile(a.serviceConfig, { logger: quiet });
    await aaa.start();
    emulator = Emulator.fromConfigFile(fleet.setup.emulatorConfig, {
      nodes: N,
      logger: quiet,
      // two Scout checks a node, every 7th node's failing: the Scout page has states to show
      machines: { scoutChecks: 2, failEvery: 7 },
    });
    await emulator.start();
    // the receiver stores asynchronous requests' replies: the Jobs page reads its API
    const port = await freePort();
    receiverUrl = `http://127.0.0.1:${port}`;
    receiver = new ReceiverService(
      parseReceiverConfig(
        {
          // creating the replies stream needs streams_admin
          choria_config: fleet.setup.adminClientConfig,
          store: "sqlite:receiver.db",
          http_listen: `127.0.0.1:${port}`,
          flush_interval: "20ms",
        },
        join(fleet.setup.dir, "receiver.yaml"),
      ),
      { logger: quiet, watchIntervalMs: 50 },
    );
    await receiver.start();
    client = await Client.fromConfigFile(fleet.setup.clientConfig, { logger: quiet });
    ui = await startUi(uiOptions());
    // The AAA console's own credential: its fleet polls go through the signer like any
    // caller's (so it needs an agents claim and a validity the signer accepts), and its
    // connection carries every user's replies, which come to each user's own inbox.
    // the console's own credential as `chorus setup dev --aaa` writes it
    const consoleConf = a.consoleConfig;
    const { devPassword: _local, ...common } = uiOptions();
    aaaUi = await startUi({ ...common, config: consoleConf });
    await Promise.all([ui.refreshFleet(), aaaUi.refreshFleet()]);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      // playwright gives each launch a fresh temporary profile (the user-data-dir)
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await ui?.close();
    await aaaUi?.close();
    await aaa?.stop();
    await client?.close();
    await receiver?.stop();
    await emulator?.stop();
    await fleet?.stop();
    if (webRoot) rmSync(webRoot, { recursive: true, force: true });
  });

  // the dev CA is not in the browser's trust store
  const newPage = async () => {
    const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 900 } });
    // fail a step in 15 s with the locator named, rather than hang to the test timeout
    ctx.setDefaultTimeout(15_000);
    return ctx.newPage();
  };

  it("a wrong password shows the server's message and stays on the login page", async () => {
    const page = await newPage();
    await logIn(page, ui.url, "not the password");
    await expect.poll(() => page.getByRole("alert").textContent()).toMatch(/wrong username or password/);
    await expect(page.locator('input[name="password"]').count()).resolves.toBe(1);
    await shot(page, "login");
    await page.context().close();
  }, 60_000);

  it("logs in, searches the fleet with a fact filter and shows the right count and a node's facts", async () => {
    const page = await newPage();
    await logIn(page, ui.url);
    await expect.poll(() => page.getByTestId("who").textContent()).toContain("admin");
    await expect
      .poll(() => page.getByTestId("fleet-total").textContent(), { timeout: 10_000 })
      .toBe(`${N} nodes`);

    await page.getByTestId("fleet-search").fill("-F role=db");
    await page.getByTestId("fleet-search-go").click();
    await expect
      .poll(() => page.getByTestId("fleet-total").textContent())
      .toBe(`${dbs} node${dbs === 1 ? "" : "s"}`);
    const rows = page.locator('[data-testid="fleet-table"] tbody tr');
    await expect.poll(() => rows.count()).toBe(dbs);

    await rows.first().click();
    const facts = page.getByTestId("node-facts");
    await expect.poll(() => facts.textContent()).toMatch(/role\s*db/);
    // the chart counts by the chosen fact over the filtered set: one bar, role=db
    await page.getByTestId("chart-fact").fill("role");
    await page.getByTestId("chart-fact").press("Enter");
    await expect.poll(() => page.locator('[data-testid="fact-chart"] rect').count()).toBe(1);

    // a bad filter is the server's message, not a blank page
    await page.getByTestId("fleet-search").fill("-F 'role=~/['");
    await page.getByTestId("fleet-search-go").click();
    await expect.poll(() => page.getByRole("alert").first().textContent()).toBeTruthy();

    await page.getByTestId("fleet-search").fill("-F role=db");
    await page.getByTestId("fleet-search-go").click();
    await expect.poll(() => rows.count()).toBe(dbs);
    await rows.first().click();
    await shot(page, "fleet");
    await page.context().close();
  }, 60_000);

  it("sends rpcutil ping to a filtered set and shows one reply per node", async () => {
    const page = await newPage();
    await logIn(page, new URL("#/requests", ui.url).href);
    await expect.poll(() => page.getByTestId("agent").inputValue(), { timeout: 10_000 }).toBe("rpcutil");
    await page.getByTestId("action").selectOption("ping");
    await page.getByTestId("request-filter").fill("-F role=db");
    await page.getByTestId("preview").click();
    await expect
      .poll(() => page.getByTestId("preview-count").textContent(), { timeout: 10_000 })
      .toBe(`${dbs} node${dbs === 1 ? "" : "s"}`);

    await page.getByTestId("send").click();
    await expect
      .poll(() => page.getByTestId("summary-responses").textContent(), { timeout: 20_000 })
      .toBe(`${dbs} replies`);
    await expect.poll(() => page.locator('[data-testid="replies"] tbody tr').count()).toBe(dbs);
    // every reply is from a db node
    const senders = await page.locator('[data-testid="replies"] tbody tr td:first-child').allTextContents();
    const dbNames = Array.from({ length: N }, (_, i) => i + 1)
      .filter((i) => emulatedFacts(i).role === "db")
      .map(emulatedIdentity);
    expect(senders.sort()).toEqual(dbNames.sort());
    await expect(page.getByTestId("run-progress-text").textContent()).resolves.toContain("done");

    // the form shows the DDL's validation inline: rpcutil get_fact's fact is required
    await page.getByTestId("action").selectOption("get_fact");
    await expect.poll(() => page.locator(".field .problem").first().textContent()).toContain("required");
    await expect(page.getByTestId("send").isDisabled()).resolves.toBe(true);
    await page.getByTestId("in-fact").fill("role");
    await expect.poll(() => page.locator(".field .problem").count()).toBe(0);
    await expect(page.getByTestId("send").isEnabled()).resolves.toBe(true);
    // get_facts' validation regex is checked as the user types
    await page.getByTestId("action").selectOption("get_facts");
    await page.getByTestId("in-facts").fill("role; rm -rf");
    await expect.poll(() => page.locator(".field .problem").first().textContent()).toMatch(/^must match/);
    await expect(page.getByTestId("send").isDisabled()).resolves.toBe(true);
    // the finished run keeps the columns of the action it sent, not the form's new one
    await expect(page.locator('[data-testid="replies"] thead').textContent()).resolves.toContain("pong");
    await shot(page, "requests");

    // pacing: a batch sleep without a batch size is refused in the form
    await page.getByTestId("batch-sleep").fill("0");
    await expect.poll(() => page.locator(".pacing .problem").textContent()).toContain("needs a batch size");
    await expect(page.getByTestId("send").isDisabled()).resolves.toBe(true);
    // a canary that fails (every node fails an unknown config item) stops the request
    await page.getByTestId("batch").fill("5");
    await page.getByTestId("canary").fill("1");
    await page.getByTestId("action").selectOption("get_config_item");
    await page.getByTestId("in-item").fill("no.such.item");
    await expect(page.getByTestId("send").isEnabled()).resolves.toBe(true);
    await page.getByTestId("send").click();
    await expect
      .poll(() => page.getByTestId("canary-stopped").textContent(), { timeout: 20_000 })
      .toMatch(new RegExp(`canary failed: .* so ${dbs - 1} nodes were not sent the request`));
    await expect(page.locator('[data-testid="replies"] tbody tr').count()).resolves.toBe(1);
    await page.context().close();
  }, 60_000);

  it("the other pages render and show their state or the server's reason", async () => {
    const page = await newPage();
    await logIn(page, ui.url);
    await expect.poll(() => page.getByTestId("who").textContent()).toContain("admin");
    const open = async (name: string) => {
      await page.getByTestId(`nav-${name}`).click();
      await expect
        .poll(() => page.locator("main h2").textContent())
        .toBe(name[0]!.toUpperCase() + name.slice(1));
    };
    // every node's two checks, with their states counted in the chart
    await open("scout");
    await expect
      .poll(() => page.locator('[data-testid="scout-table"] tbody tr').count(), { timeout: 15_000 })
      .toBe(2 * N);
    await expect.poll(() => page.locator('[data-testid="fact-chart"] rect').count()).toBeGreaterThan(0);
    await shot(page, "scout");
    await page.context().close();
  }, 60_000);

  it("watches an asynchronous request finish on the Jobs page", async () => {
    const nodes = Array.from({ length: N }, (_, i) => i + 1)
      .filter((i) => emulatedFacts(i).role === "db")
      .map(emulatedIdentity);
    const sent = await client.requestAsync("rpcutil", "ping", {}, { nodes });
    const page = await newPage();
    await logIn(page, new URL("#/jobs", ui.url).href);
    const row = page.locator('[data-testid="jobs-table"] tbody tr', { hasText: sent.requestId });
    await expect.poll(() => row.count(), { timeout: 15_000 }).toBe(1);
    // the list refreshes itself: the replies arrive and the job completes without a reload
    const cell = async (col: string) => {
      const cols = await page.locator('[data-testid="jobs-table"] thead th').allTextContents();
      return row.locator("td").nth(cols.indexOf(col)).textContent();
    };
    await expect.poll(() => cell("complete"), { timeout: 15_000 }).toBe("true");
    await expect(cell("discovered")).resolves.toBe(String(dbs));
    await expect(cell("replied")).resolves.toBe(String(dbs));
    await expect(cell("ok")).resolves.toBe(String(dbs));
    await shot(page, "jobs");
    await row.click();
    await expect.poll(() => page.getByTestId("job-detail").textContent()).toContain(sent.requestId);
    await page.context().close();
  }, 60_000);

  it("an expired session sends the user back to the login page with the message", async () => {
    const short = await startUi({ ...uiOptions(), sessionTtlMs: 1_500 });
    try {
      const page = await newPage();
      await logIn(page, short.url);
      await expect.poll(() => page.getByTestId("who").textContent()).toContain("admin");
      await page.waitForTimeout(2_000);
      await page.getByTestId("fleet-search").fill("-F role=db");
      await page.getByTestId("fleet-search-go").click();
      await expect.poll(() => page.getByRole("alert").textContent()).toMatch(/session expired/);
      await expect(page.locator('input[name="password"]').count()).resolves.toBe(1);
      await page.context().close();
    } finally {
      await short.close();
    }
  }, 60_000);

  it("AAA: a wrong password is refused by the AAA service with the console's message", async () => {
    const page = await newPage();
    await logIn(page, aaaUi.url, "not the password");
    await expect.poll(() => page.getByRole("alert").textContent()).toMatch(/wrong username or password/);
    await expect(page.locator('input[name="password"]').count()).resolves.toBe(1);
    await page.context().close();
  }, 60_000);

  it("AAA: logs in through the AAA service and sends rpcutil ping signed by the AAA signer", async () => {
    const a = fleet.setup.aaa!;
    const page = await newPage();
    await logIn(page, new URL("#/requests", aaaUi.url).href, a.password, a.username);
    await expect.poll(() => page.getByTestId("who").textContent()).toContain(`${a.username} · AAA`);
    await sendRpcutil(page, "ping", "-F role=db");
    await expect
      .poll(() => page.getByTestId("summary-responses").textContent(), { timeout: 20_000 })
      .toBe(`${dbs} replies`);
    const requestId = (await page.getByTestId("summary-requestid").textContent()) ?? "";
    expect(requestId).toMatch(/^[0-9A-Za-z]{20,}$/);

    // the signer audited it as the person, not the console: the Audit page has the record
    await page.getByTestId("nav-audit").click();
    await auditFilter(page, { caller: a.username, agent: "rpcutil" });
    const row = page.locator('[data-testid="audit-table"] tbody tr', { hasText: requestId });
    await expect.poll(() => row.count(), { timeout: 15_000 }).toBe(1);
    await expect(row.textContent()).resolves.toMatch(/up=admin\s*rpcutil\s*ping\s*allow/);
    await page.context().close();
  }, 60_000);

  it("AAA: an action the policy denies says 'not authorised' and shows in the audit view as denied", async () => {
    const page = await newPage();
    await logIn(page, new URL("#/requests", aaaUi.url).href, VIEWER.password, VIEWER.username);
    await expect.poll(() => page.getByTestId("who").textContent()).toContain("viewer · AAA");
    await sendRpcutil(page, "inventory", "-F role=db");
    await expect
      .poll(() => page.getByTestId("run-error").textContent(), { timeout: 20_000 })
      .toBe(
        "not authorised: the AAA service refused rpcutil#inventory for viewer (its reason is on the Audit page)",
      );
    await expect(page.locator('[data-testid="replies"] tbody tr').count()).resolves.toBe(0);

    await page.getByTestId("nav-audit").click();
    await auditFilter(page, { decision: "deny" });
    const rows = page.locator('[data-testid="audit-table"] tbody tr');
    await expect.poll(() => rows.count(), { timeout: 15_000 }).toBe(1);
    await expect(rows.first().textContent()).resolves.toMatch(/up=viewer\s*rpcutil\s*inventory\s*deny/);

    // live: the viewer's allowed ping, sent while the page stays open, appears by itself
    await auditFilter(page, { caller: "viewer" });
    const ping = page.locator('[data-testid="audit-table"] tbody tr', { hasText: /rpcutil\s*ping\s*allow/ });
    await expect.poll(() => rows.count(), { timeout: 15_000 }).toBeGreaterThan(1);
    expect(await ping.count()).toBe(0);
    const sent = await page.request.post(new URL("/api/requests", aaaUi.url).href, {
      data: { agent: "rpcutil", action: "ping", filter: { fact: ["role=db"] } },
    });
    expect(sent.status()).toBe(200);
    await expect.poll(() => ping.count(), { timeout: 15_000 }).toBe(1);
    await expect(page.locator('[data-testid="audit-table"] .decision-deny').count()).resolves.toBe(1);
    await shot(page, "audit");
    await page.context().close();
  }, 60_000);

  it("AAA: a console whose credential cannot read a user's replies refuses that login and says why", async () => {
    // the setup's aaa-client.conf: the admin user's own credential, which reads only admin's inbox
    const a = fleet.setup.aaa!;
    const s = clientSettings(loadConfig(a.clientConfig));
    await login({
      urls: s.loginUrls,
      username: a.username,
      password: a.password,
      seedFile: s.seedFile,
      tokenFile: s.tokenFile,
      caFile: s.caFile,
    });
    const { devPassword: _local, auditConfig: _audit, ...common } = uiOptions();
    const narrow = await startUi({ ...common, config: a.clientConfig });
    try {
      const page = await newPage();
      await logIn(page, narrow.url, VIEWER.password, VIEWER.username);
      await expect
        .poll(() => page.getByRole("alert").textContent())
        .toMatch(/^the console cannot receive replies for up=viewer: its credential may not subscribe to /);
      await expect(page.locator('input[name="password"]').count()).resolves.toBe(1);
      await page.context().close();
    } finally {
      await narrow.close();
    }
  }, 60_000);
});
