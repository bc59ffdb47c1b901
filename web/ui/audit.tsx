// Audit: the AAA signer's audit records, filtered on the server by caller, agent and
// decision, newest first; the page asks again every few seconds, so new records appear.
import { useEffect, useState } from "preact/hooks";
import type { AuditEntry, AuditResponse } from "../../src/apps/ui/api-types.js";
import { api, query } from "./api.js";
import { ErrorBox, Note } from "./util.js";

const PAGE = 200;
const REFRESH_MS = 3_000;

interface Applied {
  caller: string;
  agent: string;
  decision: string;
  /** paging back: records below this sequence; undefined = the newest (and live) */
  before?: number | undefined;
}

export function AuditPage() {
  const [caller, setCaller] = useState("");
  const [agent, setAgent] = useState("");
  const [decision, setDecision] = useState("");
  const [applied, setApplied] = useState<Applied>({ caller: "", agent: "", decision: "" });
  const [data, setData] = useState<AuditResponse | undefined>();
  const [error, setError] = useState<string | undefined>();

  useEffect(() => {
    let live = true;
    const load = () =>
      api<AuditResponse>("GET", `/api/audit${query({ ...applied, limit: PAGE })}`)
        .then((d) => live && (setData(d), setError(undefined)))
        .catch((e: unknown) => live && setError((e as Error).message));
    void load();
    // only the newest page follows the stream; an older page stays put
    const t = applied.before === undefined ? setInterval(() => void load(), REFRESH_MS) : undefined;
    return () => {
      live = false;
      if (t) clearInterval(t);
    };
  }, [applied]);

  const oldest = data?.records.at(-1)?.seq;
  return (
    <section>
      <h2>Audit</h2>
      <form
        class="row"
        onSubmit={(e) => {
          e.preventDefault();
          setApplied({ caller: caller.trim(), agent: agent.trim(), decision });
        }}
      >
        <input
          placeholder="caller (part of it)"
          data-testid="audit-caller"
          value={caller}
          onInput={(e) => setCaller(e.currentTarget.value)}
        />
        <input
          placeholder="agent"
          data-testid="audit-agent"
          value={agent}
          onInput={(e) => setAgent(e.currentTarget.value)}
        />
        <select
          data-testid="audit-decision"
          value={decision}
          onChange={(e) => setDecision(e.currentTarget.value)}
        >
          <option value="">any decision</option>
          <option value="allow">allow</option>
          <option value="deny">deny</option>
          <option value="unknown">unknown</option>
        </select>
        <button type="submit" data-testid="audit-go">
          Filter
        </button>
        {data?.stream && <span class="dim">stream {data.stream}</span>}
      </form>
      <ErrorBox message={error} />
      {data?.note && <Note>{data.note}</Note>}
      {data && data.records.length === 0 && !data.note && <Note>no records match</Note>}
      {data && data.records.length > 0 && (
        <>
          <div class="row summary">
            <span data-testid="audit-count">
              {data.records.length} of {data.matched} matching record{data.matched === 1 ? "" : "s"}
            </span>
            {applied.before === undefined ? (
              <span class="dim">newest first, live</span>
            ) : (
              <button onClick={() => setApplied({ ...applied, before: undefined })}>‹ Newest</button>
            )}
            <span class="grow" />
            <button
              data-testid="audit-older"
              disabled={oldest === undefined || data.records.length < PAGE}
              onClick={() => setApplied({ ...applied, before: oldest })}
            >
              Older ›
            </button>
          </div>
          <AuditTable rows={data.records} />
        </>
      )}
    </section>
  );
}

function AuditTable({ rows }: { rows: AuditEntry[] }) {
  return (
    <table class="grid" data-testid="audit-table">
      <thead>
        <tr>
          <th>time</th>
          <th>caller</th>
          <th>agent</th>
          <th>action</th>
          <th>decision</th>
          <th>reason</th>
          <th>filter</th>
          <th>request</th>
        </tr>
      </thead>
      <tbody>
        {rows.map((r) => (
          <tr key={r.seq} class={r.decision === "deny" ? "failed" : ""}>
            <td title={r.time}>{r.time.replace("T", " ").replace(/\.\d+Z$/, "Z")}</td>
            <td class="mono" title={r.claimedCaller ? `claimed ${r.claimedCaller}` : r.sender}>
              {r.caller}
              {r.claimedCaller ? ` (${r.claimedCaller})` : ""}
            </td>
            <td class="mono">{r.agent}</td>
            <td class="mono">{r.action}</td>
            <td>
              <span class={`badge decision-${r.decision}`}>{r.decision}</span>
            </td>
            <td title={r.reason}>{r.reason}</td>
            <td class="mono" title={r.filter ?? ""}>
              {r.filter ?? ""}
            </td>
            <td class="mono dim" title={`${r.collective} · ${r.site}`}>
              {r.requestid}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
