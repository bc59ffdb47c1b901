// The console's shell: session check, login, hash routing between the pages.
import { render } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import type { LoginResponse, SessionInfo } from "../../src/apps/ui/api-types.js";
import { api, ApiFailure, setUnauthorisedHandler } from "./api.js";
import { ErrorBox } from "./util.js";
import { FleetPage } from "./fleet.js";
import { RequestsPage } from "./requests.js";
import { JobsPage } from "./jobs.js";
import { AuditPage } from "./audit.js";
import { ScoutPage } from "./scout.js";

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

const PAGES = [
  ["fleet", "Fleet"],
  ["requests", "Requests"],
  ["jobs", "Jobs"],
  ["audit", "Audit"],
  ["scout", "Scout"],
] as const;
type Page = (typeof PAGES)[number][0];

function currentPage(): Page {
  const h = location.hash.replace(/^#\/?/, "").split("?")[0];
  return (PAGES.find((p) => p[0] === h)?.[0] ?? "fleet") as Page;
}

function Login({ message, onLogin }: { message: string | undefined; onLogin: (s: SessionInfo) => void }) {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | undefined>(message);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      onLogin(await api<LoginResponse>("POST", "/api/login", { username, password }));
    } catch (err) {
      setError(err instanceof ApiFailure ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="login">
      <form onSubmit={submit} data-testid="login-form">
        <h1>Chorus</h1>
        <ErrorBox message={error} />
        <label>
          Username
          <input
            name="username"
            autocomplete="username"
            value={username}
            onInput={(e) => setUsername(e.currentTarget.value)}
            required
          />
        </label>
        <label>
          Password
          <input
            name="password"
            type="password"
            autocomplete="current-password"
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
            required
          />
        </label>
        <button type="submit" disabled={busy}>
          {busy ? "Logging in…" : "Log in"}
        </button>
      </form>
    </main>
  );
}

function App() {
  // undefined = still asking the server whether the cookie is good
  const [session, setSession] = useState<SessionInfo | null | undefined>(undefined);
  const [loginMessage, setLoginMessage] = useState<string | undefined>();
  const [page, setPage] = useState<Page>(currentPage());
  const expiresAt = useRef<number | undefined>(undefined);
  if (session) expiresAt.current = Date.parse(session.expiresAt);

  useEffect(() => {
    setUnauthorisedHandler((msg) => {
      // The cookie's Max-Age ends with the session, so the browser drops it and the server
      // can only say "not logged in"; past expiresAt, that is an expired session.
      // Only the first 401 of a session speaks: calls in flight answer 401 too.
      if (expiresAt.current === undefined) return;
      const expired = Date.now() >= expiresAt.current;
      setLoginMessage(expired && /not logged in/i.test(msg) ? "session expired: log in again" : msg);
      expiresAt.current = undefined;
      setSession(null);
    });
    const onHash = () => setPage(currentPage());
    addEventListener("hashchange", onHash);
    api<SessionInfo>("GET", "/api/session")
      .then(setSession)
      .catch((e: unknown) => {
        // no cookie at all is the normal first visit: no message for that
        if (!(e instanceof ApiFailure && /not logged in/i.test(e.message))) setLoginMessage(errText(e));
        setSession(null);
      });
    return () => removeEventListener("hashchange", onHash);
  }, []);

  if (session === undefined) return <div class="note">Loading…</div>;
  if (session === null)
    return (
      <Login
        key={loginMessage ?? ""}
        message={loginMessage}
        onLogin={(s) => {
          setLoginMessage(undefined);
          setSession(s);
        }}
      />
    );

  const logout = async () => {
    try {
      await api("POST", "/api/logout");
    } catch {
      // the session may already be gone; the user wants out either way
    }
    setLoginMessage(undefined);
    setSession(null);
  };

  return (
    <div class="shell">
      <header>
        <span class="brand">Chorus</span>
        <nav>
          {PAGES.map(([id, label]) => (
            <a key={id} href={`#/${id}`} class={id === page ? "active" : ""} data-testid={`nav-${id}`}>
              {label}
            </a>
          ))}
        </nav>
        <span class="who" data-testid="who">
          {session.username} · {session.mode === "aaa" ? "AAA" : "local"} · {session.collective}
        </span>
        <button class="link" onClick={logout} data-testid="logout">
          Log out
        </button>
      </header>
      <main>
        {page === "fleet" && <FleetPage />}
        {page === "requests" && <RequestsPage />}
        {page === "jobs" && <JobsPage />}
        {page === "audit" && <AuditPage />}
        {page === "scout" && <ScoutPage />}
      </main>
    </div>
  );
}

render(<App />, document.getElementById("app") as HTMLElement);
