// Scout: check states across the fleet, asked of the nodes when the page opens.
import { useEffect, useState } from "preact/hooks";
import type { ScoutResponse } from "../../src/apps/ui/api-types.js";
import { api } from "./api.js";
import { BarChart, ErrorBox, fmt, Note } from "./util.js";

export function ScoutPage() {
  const [data, setData] = useState<ScoutResponse | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const [state, setState] = useState("");

  const load = async () => {
    setBusy(true);
    try {
      setData(await api<ScoutResponse>("GET", "/api/scout"));
      setError(undefined);
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  useEffect(() => void load(), []);

  const checks = data?.checks.filter((c) => state === "" || c.state === state) ?? [];
  return (
    <section>
      <h2>Scout</h2>
      <div class="row">
        <button onClick={() => void load()} disabled={busy}>
          {busy ? "Asking the fleet…" : "Refresh"}
        </button>
        {data && (
          <select value={state} onChange={(e) => setState(e.currentTarget.value)}>
            <option value="">every state</option>
            {Object.keys(data.counts).map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        )}
      </div>
      <ErrorBox message={error} />
      {data && (
        <>
          <div class="panel">
            <h3>Checks by state</h3>
            <BarChart counts={data.counts} />
            {data.noResponses.length > 0 && (
              <Note>
                {data.noResponses.length} node(s) did not answer: {data.noResponses.slice(0, 10).join(", ")}
              </Note>
            )}
          </div>
          {checks.length === 0 ? (
            <Note>no checks</Note>
          ) : (
            <table class="grid" data-testid="scout-table">
              <thead>
                <tr>
                  <th>node</th>
                  <th>check</th>
                  <th>state</th>
                  <th>since</th>
                  <th>output</th>
                </tr>
              </thead>
              <tbody>
                {checks.slice(0, 1000).map((c) => (
                  <tr key={`${c.node}/${c.name}`}>
                    <td class="mono">{c.node}</td>
                    <td>{c.name}</td>
                    <td>
                      <span class={`badge scout-${c.state.toLowerCase()}`}>{c.state}</span>
                    </td>
                    <td>{fmt(c.since)}</td>
                    <td class="mono">{fmt(c.output)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </>
      )}
    </section>
  );
}
