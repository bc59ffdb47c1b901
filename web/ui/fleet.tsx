// Fleet: nodes from registration/lifecycle data, searched with the CLI's filter flags.
import { useEffect, useState } from "preact/hooks";
import type {
  FilterSpec,
  FleetCountsResponse,
  FleetNode,
  FleetResponse,
} from "../../src/apps/ui/api-types.js";
import { api, ApiFailure, filterQuery, query } from "./api.js";
import { parseFilterLine } from "./filter.js";
import { BarChart, ErrorBox, fmt, fmtAge, Note } from "./util.js";

const PAGE_SIZE = 100;

function errText(e: unknown): string {
  return e instanceof ApiFailure || e instanceof Error ? e.message : String(e);
}

/** Where node data comes from, in words. */
function sources(d: FleetResponse): string {
  const poll = d.inventoryEveryS > 0 ? `inventory polled every ${d.inventoryEveryS} s` : "inventory at start";
  if (d.registration === "live") return `registration live · ${poll}`;
  if (d.registration === "refused") return `registration not permitted to the console's credential · ${poll}`;
  return poll;
}

export function FleetPage() {
  const [line, setLine] = useState("");
  const [filter, setFilter] = useState<FilterSpec>({});
  const [offset, setOffset] = useState(0);
  const [data, setData] = useState<FleetResponse | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [selected, setSelected] = useState<FleetNode | undefined>();
  const [chartFact, setChartFact] = useState("os");
  const [counts, setCounts] = useState<FleetCountsResponse | undefined>();
  const [chartError, setChartError] = useState<string | undefined>();

  useEffect(() => {
    let live = true;
    api<FleetResponse>("GET", `/api/fleet${query({ ...filterQuery(filter), offset, limit: PAGE_SIZE })}`)
      .then((d) => live && (setData(d), setError(undefined)))
      .catch((e: unknown) => live && setError(errText(e)));
    return () => {
      live = false;
    };
  }, [filter, offset]);

  useEffect(() => {
    if (chartFact.trim() === "") return;
    let live = true;
    // `fact` names the fact counted here, so the filter's fact matches travel as `where`
    const q = query({ ...filterQuery(filter), fact: chartFact, where: filter.fact });
    api<FleetCountsResponse>("GET", `/api/fleet/counts${q}`)
      .then((c) => live && (setCounts(c), setChartError(undefined)))
      .catch((e: unknown) => live && setChartError(errText(e)));
    return () => {
      live = false;
    };
  }, [filter, chartFact]);

  const search = (e: Event) => {
    e.preventDefault();
    try {
      setFilter(parseFilterLine(line));
      setOffset(0);
      setError(undefined);
    } catch (err) {
      setError(errText(err));
    }
  };

  const open = async (identity: string) => {
    try {
      setSelected(await api<FleetNode>("GET", `/api/fleet/${encodeURIComponent(identity)}`));
    } catch (e) {
      setError(errText(e));
    }
  };

  return (
    <section>
      <h2>Fleet</h2>
      <form class="row" onSubmit={search}>
        <input
          class="grow mono"
          data-testid="fleet-search"
          placeholder="-F os=linux -C web -I /web/ -A rpcutil -S 'facts.cores >= 4'   (or a node name)"
          value={line}
          onInput={(e) => setLine(e.currentTarget.value)}
        />
        <button type="submit" data-testid="fleet-search-go">
          Search
        </button>
      </form>
      <ErrorBox message={error} />
      {data && (
        <div class="row summary">
          <span data-testid="fleet-total">
            {data.total} node{data.total === 1 ? "" : "s"}
          </span>
          <span class="status-alive">{data.summary.alive} alive</span>
          <span class="status-stale">{data.summary.stale} stale</span>
          <span class="status-gone">{data.summary.gone} gone</span>
          <span class="dim" data-testid="fleet-sources" title="where the console learns about nodes">
            {sources(data)}
          </span>
          <span class="grow" />
          <button disabled={offset === 0} onClick={() => setOffset(Math.max(0, offset - PAGE_SIZE))}>
            ‹ Prev
          </button>
          <span>
            {data.total === 0 ? 0 : offset + 1}–{Math.min(offset + PAGE_SIZE, data.total)}
          </span>
          <button disabled={offset + PAGE_SIZE >= data.total} onClick={() => setOffset(offset + PAGE_SIZE)}>
            Next ›
          </button>
        </div>
      )}
      <div class="split">
        <div class="grow">
          {data && (
            <table class="grid" data-testid="fleet-table">
              <thead>
                <tr>
                  <th>identity</th>
                  <th>status</th>
                  <th>age</th>
                </tr>
              </thead>
              <tbody>
                {data.nodes.map((n) => (
                  <tr
                    key={n.identity}
                    class={`clickable ${selected?.identity === n.identity ? "selected" : ""}`}
                    onClick={() => void open(n.identity)}
                  >
                    <td class="mono">{n.identity}</td>
                    <td>
                      <span class={`badge status-${n.status}`}>{n.status}</span>
                    </td>
                    <td title={n.lastSeen}>{fmtAge(n.ageS)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </div>
        <aside>
          {selected && (
            <div class="panel" data-testid="node-facts">
              <h3 class="mono">{selected.identity}</h3>
              <p>
                <span class={`badge status-${selected.status}`}>{selected.status}</span> last seen{" "}
                {fmtAge(selected.ageS)} ago
              </p>
              <h4>Facts</h4>
              <table class="kv">
                <tbody>
                  {Object.entries(selected.facts)
                    .sort((a, b) => a[0].localeCompare(b[0]))
                    .map(([k, v]) => (
                      <tr key={k}>
                        <th>{k}</th>
                        <td class="mono">{fmt(v)}</td>
                      </tr>
                    ))}
                </tbody>
              </table>
              {selected.classes.length > 0 && (
                <>
                  <h4>Classes</h4>
                  <p class="mono">{selected.classes.join(", ")}</p>
                </>
              )}
              {selected.agents.length > 0 && (
                <>
                  <h4>Agents</h4>
                  <p class="mono">{selected.agents.join(", ")}</p>
                </>
              )}
            </div>
          )}
          <div class="panel">
            <h3>
              Counts by{" "}
              <input
                class="mono inline"
                data-testid="chart-fact"
                value={chartFact}
                onChange={(e) => setChartFact(e.currentTarget.value)}
                size={14}
              />
            </h3>
            <ErrorBox message={chartError} />
            {counts && counts.fact === chartFact && <BarChart counts={counts.counts} />}
            {!counts && !chartError && <Note>loading…</Note>}
          </div>
        </aside>
      </div>
    </section>
  );
}
