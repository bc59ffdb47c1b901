// Requests: a form generated from the DDL, a target preview, and live results over SSE.
import { useEffect, useRef, useState } from "preact/hooks";
import type {
  DdlAction,
  DdlAgent,
  DdlInput,
  DdlResponse,
  DiscoverResponse,
  EndEvent,
  ErrorEvent,
  ProgressEvent,
  ReplyEvent,
  StartRequest,
  StartRequestResponse,
  SummaryEvent,
  TargetsEvent,
} from "../../src/apps/ui/api-types.js";
import { api, ApiFailure } from "./api.js";
import { isEmptyFilter, parseFilterLine } from "./filter.js";
import { ErrorBox, fmt, Note } from "./util.js";

/** Rows rendered at most; the summary still counts them all. */
const MAX_ROWS = 500;

function errText(e: unknown): string {
  return e instanceof ApiFailure || e instanceof Error ? e.message : String(e);
}

const NAMED_VALIDATIONS: Record<string, (v: string) => boolean> = {
  shellsafe: (v) => !/[`$;|&><]/.test(v),
  ipv4address: (v) => /^(\d{1,3})(\.\d{1,3}){3}$/.test(v) && v.split(".").every((p) => Number(p) <= 255),
  ipv6address: (v) => v.includes(":") && /^[0-9a-fA-F:.]+$/.test(v),
  ipaddress: (v) => NAMED_VALIDATIONS.ipv4address!(v) || NAMED_VALIDATIONS.ipv6address!(v),
};

/**
 * The DDL's own checks, run as the user types; the server checks again (it is the authority:
 * a regex this browser cannot compile is left to it).
 */
/** DDLs write `default: null` for "no default". */
function hasDefault(spec: DdlInput): boolean {
  return spec.default !== undefined && spec.default !== null;
}

export function checkInput(spec: DdlInput, raw: string): { value?: unknown; problem?: string } {
  if (raw === "") {
    return spec.optional || hasDefault(spec) ? {} : { problem: "required" };
  }
  switch (spec.type) {
    case "integer":
      return /^[-+]?\d+$/.test(raw.trim()) ? { value: Number(raw) } : { problem: "must be an integer" };
    case "float":
    case "number":
      return raw.trim() !== "" && Number.isFinite(Number(raw))
        ? { value: Number(raw) }
        : { problem: "must be a number" };
    case "boolean":
      return { value: raw === "true" };
    case "list":
      return spec.list && !spec.list.includes(raw)
        ? { problem: `must be one of ${spec.list.join(", ")}` }
        : { value: raw };
    case "hash":
    case "Hash":
    case "array":
    case "Array": {
      try {
        const v: unknown = JSON.parse(raw);
        const wantArray = spec.type.toLowerCase() === "array";
        if (wantArray !== Array.isArray(v) || v === null || typeof v !== "object")
          return { problem: wantArray ? "must be a JSON array" : "must be a JSON object" };
        return { value: v };
      } catch {
        return { problem: "is not valid JSON" };
      }
    }
    default: {
      if (spec.maxlength && spec.maxlength > 0 && raw.length > spec.maxlength)
        return { problem: `at most ${spec.maxlength} characters` };
      const val = spec.validation;
      if (val) {
        const named = NAMED_VALIDATIONS[val];
        if (named) {
          if (!named(raw)) return { problem: `must be ${val}` };
        } else {
          let re: RegExp | undefined;
          try {
            re = new RegExp(val);
          } catch {
            re = undefined;
          }
          if (re && !re.test(raw)) return { problem: `must match ${val}` };
        }
      }
      return { value: raw };
    }
  }
}

function rules(spec: DdlInput): string {
  const r: string[] = [spec.type];
  r.push(spec.optional ? "optional" : "required");
  if (spec.validation) r.push(`validation ${spec.validation}`);
  if (spec.maxlength) r.push(`max ${spec.maxlength} chars`);
  if (hasDefault(spec)) r.push(`default ${fmt(spec.default)}`);
  return r.join(" · ");
}

function InputField({ spec, raw, onChange }: { spec: DdlInput; raw: string; onChange: (v: string) => void }) {
  const { problem } = checkInput(spec, raw);
  const id = `in-${spec.name}`;
  let control;
  if (spec.type === "list" && spec.list) {
    control = (
      <select id={id} value={raw} onChange={(e) => onChange(e.currentTarget.value)}>
        <option value="">—</option>
        {spec.list.map((o) => (
          <option key={o} value={o}>
            {o}
          </option>
        ))}
      </select>
    );
  } else if (spec.type === "boolean") {
    control = (
      <select id={id} value={raw} onChange={(e) => onChange(e.currentTarget.value)}>
        <option value="">—</option>
        <option value="true">true</option>
        <option value="false">false</option>
      </select>
    );
  } else {
    control = (
      <input
        id={id}
        class="mono"
        data-testid={id}
        value={raw}
        placeholder={hasDefault(spec) ? fmt(spec.default) : ""}
        {...(spec.maxlength ? { maxLength: spec.maxlength } : {})}
        onInput={(e) => onChange(e.currentTarget.value)}
      />
    );
  }
  return (
    <div class={`field ${problem ? "invalid" : ""}`}>
      <label for={id}>
        {spec.prompt || spec.name} <span class="mono dim">{spec.name}</span>
      </label>
      {control}
      <div class="hint">
        {spec.description} <span class="dim">({rules(spec)})</span>
      </div>
      {problem && raw !== "" && <div class="problem">{problem}</div>}
      {problem && raw === "" && <div class="problem dim">{problem}</div>}
    </div>
  );
}

/** The pacing fields as the server takes them, or what is wrong with them. */
export function checkPacing(p: { batch: string; sleep: string; canary: string }): {
  value: Pick<StartRequest, "batch_size" | "batch_sleep" | "canary">;
  problems: Record<string, string>;
} {
  const value: Pick<StartRequest, "batch_size" | "batch_sleep" | "canary"> = {};
  const problems: Record<string, string> = {};
  const whole = (raw: string, name: "batch_size" | "canary") => {
    if (raw.trim() === "") return;
    const n = Number(raw);
    if (!/^\d+$/.test(raw.trim()) || n < 1 || n > 100_000) problems[name] = "a whole number from 1 to 100000";
    else value[name] = n;
  };
  whole(p.batch, "batch_size");
  whole(p.canary, "canary");
  if (p.sleep.trim() !== "") {
    const n = Number(p.sleep);
    if (!Number.isFinite(n) || n < 0 || n > 3600) problems.batch_sleep = "seconds from 0 to 3600";
    else if (p.batch.trim() === "") problems.batch_sleep = "needs a batch size";
    else value.batch_sleep = n;
  }
  return { value, problems };
}

interface Run {
  id: string;
  /** the action's output names when it was sent: the form may have moved on since */
  outputs: string[];
  total?: number;
  done: number;
  replies: ReplyEvent[];
  summary?: SummaryEvent;
  error?: string;
  ended: boolean;
}

export function RequestsPage() {
  const [ddl, setDdl] = useState<DdlAgent[]>([]);
  const [error, setError] = useState<string | undefined>();
  const [agentName, setAgentName] = useState("rpcutil");
  const [actionName, setActionName] = useState("ping");
  const [raw, setRaw] = useState<Record<string, string>>({});
  const [line, setLine] = useState("");
  const [batch, setBatch] = useState("");
  const [sleep, setSleep] = useState("");
  const [canary, setCanary] = useState("");
  const [preview, setPreview] = useState<DiscoverResponse | undefined>();
  const [run, setRun] = useState<Run | undefined>();
  const source = useRef<EventSource | undefined>(undefined);

  useEffect(() => {
    api<DdlResponse>("GET", "/api/ddl")
      .then((d) => setDdl(d.agents))
      .catch((e: unknown) => setError(errText(e)));
    return () => source.current?.close();
  }, []);

  const agent = ddl.find((a) => a.name === agentName);
  const action: DdlAction | undefined = agent?.actions.find((a) => a.name === actionName);

  const pickAgent = (name: string) => {
    setAgentName(name);
    setActionName(ddl.find((a) => a.name === name)?.actions[0]?.name ?? "");
    setRaw({});
    setPreview(undefined);
  };

  const filterOrError = () => {
    try {
      return parseFilterLine(line);
    } catch (e) {
      setError(errText(e));
      return undefined;
    }
  };

  const doPreview = async () => {
    const filter = filterOrError();
    if (!filter) return;
    setError(undefined);
    try {
      setPreview(await api<DiscoverResponse>("POST", "/api/discover", { agent: agentName, filter }));
    } catch (e) {
      setError(errText(e));
    }
  };

  const pacing = checkPacing({ batch, sleep, canary });
  const problems = [
    ...(action
      ? action.inputs
          .map((i) => [i.name, checkInput(i, raw[i.name] ?? "").problem] as const)
          .filter((p) => p[1])
      : []),
    ...Object.entries(pacing.problems),
  ];

  const send = async (e: Event) => {
    e.preventDefault();
    if (!action) return;
    const filter = filterOrError();
    if (!filter) return;
    const inputs: Record<string, unknown> = {};
    for (const i of action.inputs) {
      const r = raw[i.name] ?? "";
      const c = checkInput(i, r);
      if (c.value !== undefined) inputs[i.name] = c.value;
    }
    const body: StartRequest = { agent: agentName, action: actionName, inputs };
    if (!isEmptyFilter(filter)) body.filter = filter;
    Object.assign(body, pacing.value);
    setError(undefined);
    source.current?.close();
    try {
      const { id } = await api<StartRequestResponse>("POST", "/api/requests", body);
      watch(
        id,
        action.outputs.map((o) => o.name),
      );
    } catch (err) {
      setError(errText(err));
    }
  };

  const watch = (id: string, outputs: string[]) => {
    let state: Run = { id, outputs, done: 0, replies: [], ended: false };
    const seen = new Set<string>();
    setRun(state);
    const update = (patch: Partial<Run>) => {
      state = { ...state, ...patch };
      setRun(state);
    };
    const es = new EventSource(`/api/requests/${encodeURIComponent(id)}/events`);
    source.current = es;
    const on = <T,>(name: string, f: (d: T) => void) =>
      es.addEventListener(name, (ev) => f(JSON.parse((ev as MessageEvent<string>).data) as T));
    on<TargetsEvent>("targets", (d) => update({ total: d.total }));
    on<ProgressEvent>("progress", (d) => update({ done: d.done, total: d.total }));
    on<ReplyEvent>("reply", (d) => {
      // a reconnect replays the stream from the start: keep one reply per node
      if (seen.has(d.sender)) return;
      seen.add(d.sender);
      update({ replies: [...state.replies, d] });
    });
    on<SummaryEvent>("summary", (d) => update({ summary: d }));
    on<ErrorEvent>("error", (d) => update({ error: d.error }));
    on<EndEvent>("end", () => {
      update({ ended: true });
      es.close();
    });
    es.onerror = () => {
      // EventSource retries by itself; once the request ended there is nothing to wait for
      if (state.ended) es.close();
    };
  };

  return (
    <section>
      <h2>Requests</h2>
      <ErrorBox message={error} />
      <form onSubmit={send} class="panel">
        <div class="row">
          <label>
            Agent{" "}
            <select data-testid="agent" value={agentName} onChange={(e) => pickAgent(e.currentTarget.value)}>
              {ddl.map((a) => (
                <option key={a.name} value={a.name}>
                  {a.name}
                </option>
              ))}
            </select>
          </label>
          <label>
            Action{" "}
            <select
              data-testid="action"
              value={actionName}
              onChange={(e) => {
                setActionName(e.currentTarget.value);
                setRaw({});
              }}
            >
              {agent?.actions.map((a) => (
                <option key={a.name} value={a.name}>
                  {a.name}
                </option>
              ))}
            </select>
          </label>
          {action && <span class="dim">{action.description}</span>}
        </div>
        {action && action.inputs.length > 0 && (
          <fieldset>
            <legend>Inputs</legend>
            {action.inputs.map((i) => (
              <InputField
                key={`${agentName}.${actionName}.${i.name}`}
                spec={i}
                raw={raw[i.name] ?? ""}
                onChange={(v) => setRaw({ ...raw, [i.name]: v })}
              />
            ))}
          </fieldset>
        )}
        <div class="row">
          <input
            class="grow mono"
            data-testid="request-filter"
            placeholder="targets: -F os=linux -C web …  (empty: every node with the agent)"
            value={line}
            onInput={(e) => {
              setLine(e.currentTarget.value);
              setPreview(undefined);
            }}
          />
          <button type="button" data-testid="preview" onClick={() => void doPreview()}>
            Preview targets
          </button>
          {preview && (
            <span data-testid="preview-count" title={preview.nodes.join("\n")}>
              {preview.count} node{preview.count === 1 ? "" : "s"}
            </span>
          )}
        </div>
        <div class="row pacing">
          <PacingField
            label="Batch size"
            hint="nodes at a time"
            testid="batch"
            value={batch}
            problem={pacing.problems.batch_size}
            onInput={setBatch}
          />
          <PacingField
            label="Batch sleep"
            hint="seconds between batches (default 1)"
            testid="batch-sleep"
            value={sleep}
            problem={pacing.problems.batch_sleep}
            onInput={setSleep}
          />
          <PacingField
            label="Canary"
            hint="nodes first; the rest only if all answer OK"
            testid="canary"
            value={canary}
            problem={pacing.problems.canary}
            onInput={setCanary}
          />
          <span class="grow" />
          <button
            type="submit"
            class="primary"
            data-testid="send"
            disabled={!action || problems.length > 0 || (run !== undefined && !run.ended)}
            title={problems.map((p) => `${p[0]}: ${p[1]}`).join("\n")}
          >
            Send
          </button>
        </div>
      </form>
      {run && <RunView run={run} />}
    </section>
  );
}

function PacingField(p: {
  label: string;
  hint: string;
  testid: string;
  value: string;
  problem: string | undefined;
  onInput: (v: string) => void;
}) {
  return (
    <label class={p.problem ? "invalid" : ""} title={p.hint}>
      {p.label}{" "}
      <input
        class="mono"
        inputMode="decimal"
        size={6}
        placeholder={p.hint.startsWith("seconds") ? "1" : ""}
        data-testid={p.testid}
        value={p.value}
        onInput={(e) => p.onInput(e.currentTarget.value)}
      />
      {p.problem && <span class="problem"> {p.problem}</span>}
    </label>
  );
}

function RunView({ run }: { run: Run }) {
  const total = run.total ?? 0;
  const pct = total > 0 ? Math.min(100, Math.round((run.done / total) * 100)) : run.ended ? 100 : 0;
  const outCols = run.outputs;
  const dataCols =
    outCols.length > 0 ? outCols : [...new Set(run.replies.slice(0, 20).flatMap((r) => Object.keys(r.data)))];
  return (
    <div class="panel" data-testid="run">
      <div class="row">
        <span class="mono dim">{run.id}</span>
        <span data-testid="run-progress-text">
          {run.done}/{run.total ?? "?"} {run.ended ? "done" : "running…"}
        </span>
      </div>
      <div class="progress" role="progressbar" aria-valuenow={pct} aria-valuemin={0} aria-valuemax={100}>
        <div style={{ width: `${pct}%` }} />
      </div>
      <ErrorBox message={run.error} testid="run-error" />
      {run.summary && (
        <div class="row summary" data-testid="summary">
          <span>discovered {run.summary.discovered}</span>
          <span data-testid="summary-responses">{run.summary.responses} replies</span>
          <span class="status-alive">{run.summary.ok} ok</span>
          <span class={run.summary.failed > 0 ? "status-gone" : ""}>{run.summary.failed} failed</span>
          {run.summary.noResponses.length > 0 && (
            <span class="status-stale" title={run.summary.noResponses.join("\n")}>
              {run.summary.noResponses.length} no reply
            </span>
          )}
          <span class="dim">{run.summary.requestMs} ms</span>
          <span class="dim mono" data-testid="summary-requestid" title="the request id (as in the audit)">
            {run.summary.requestid}
          </span>
        </div>
      )}
      {run.summary?.canaryStopped && (
        <div class="error" role="alert" data-testid="canary-stopped">
          canary failed: not every canary node answered OK, so {run.summary.skipped ?? 0} node
          {run.summary.skipped === 1 ? " was" : "s were"} not sent the request
        </div>
      )}
      {run.replies.length === 0 ? (
        <Note>{run.ended ? "no replies" : "waiting for replies…"}</Note>
      ) : (
        <table class="grid" data-testid="replies">
          <thead>
            <tr>
              <th>node</th>
              <th>status</th>
              {dataCols.map((c) => (
                <th key={c}>{c}</th>
              ))}
            </tr>
          </thead>
          <tbody>
            {run.replies.slice(0, MAX_ROWS).map((r) => (
              <tr key={r.sender} class={r.statuscode === 0 ? "" : "failed"}>
                <td class="mono">{r.sender}</td>
                <td>{r.statuscode === 0 ? "OK" : r.statusmsg}</td>
                {dataCols.map((c) => (
                  <td key={c} class="mono">
                    {fmt(r.data[c])}
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {run.replies.length > MAX_ROWS && (
        <Note>
          showing {MAX_ROWS} of {run.replies.length} replies
        </Note>
      )}
    </div>
  );
}
