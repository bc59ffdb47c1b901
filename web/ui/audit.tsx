// Audit: the audit stream's records, filtered on the server by caller, agent and decision.
import { useEffect, useState } from "preact/hooks";
import type { AuditResponse } from "../../src/apps/ui/api-types.js";
import { api, query } from "./api.js";
import { ErrorBox, Note, RecordTable } from "./util.js";

export function AuditPage() {
  const [caller, setCaller] = useState("");
  const [agent, setAgent] = useState("");
  const [decision, setDecision] = useState("");
  const [applied, setApplied] = useState({ caller: "", agent: "", decision: "" });
  const [data, setData] = useState<AuditResponse | undefined>();
  const [error, setError] = useState<string | undefined>();

  useEffect(() => {
    let live = true;
    api<AuditResponse>("GET", `/api/audit${query({ ...applied, limit: 200 })}`)
      .then((d) => live && (setData(d), setError(undefined)))
      .catch((e: unknown) => live && setError((e as Error).message));
    return () => {
      live = false;
    };
  }, [applied]);

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
          placeholder="caller"
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
        </select>
        <button type="submit">Filter</button>
      </form>
      <ErrorBox message={error} />
      {data?.note && <Note>{data.note}</Note>}
      {data && data.records.length === 0 && !data.note && <Note>no records match</Note>}
      {data && data.records.length > 0 && (
        <RecordTable
          testid="audit-table"
          rows={data.records}
          preferred={[
            "time",
            "timestamp",
            "caller",
            "agent",
            "action",
            "decision",
            "allowed",
            "reason",
            "node",
          ]}
        />
      )}
    </section>
  );
}
