// Jobs: the receiver's asynchronous requests and workflows, refreshed while the page is open.
import { useEffect, useState } from "preact/hooks";
import type { JobResponse, JobsResponse } from "../../src/apps/ui/api-types.js";
import { api } from "./api.js";
import { ErrorBox, fmt, Note, RecordTable } from "./util.js";

const REFRESH_MS = 2000;

function jobId(j: Record<string, unknown>): string {
  return fmt(j.request_id ?? j.id);
}

export function JobsPage() {
  const [jobs, setJobs] = useState<Record<string, unknown>[] | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [openId, setOpenId] = useState<string | undefined>();
  const [detail, setDetail] = useState<JobResponse | undefined>();
  const [detailError, setDetailError] = useState<string | undefined>();

  useEffect(() => {
    let live = true;
    const tick = async () => {
      try {
        const r = await api<JobsResponse>("GET", "/api/jobs");
        if (!live) return;
        setJobs(r.jobs);
        setError(undefined);
        if (openId) {
          try {
            const d = await api<JobResponse>("GET", `/api/jobs/${encodeURIComponent(openId)}`);
            if (live) {
              setDetail(d);
              setDetailError(undefined);
            }
          } catch (e) {
            // the job's own panel says why, instead of "loading…" for ever
            if (live) setDetailError((e as Error).message);
          }
        }
      } catch (e) {
        if (live) setError((e as Error).message);
      }
    };
    void tick();
    const t = setInterval(() => void tick(), REFRESH_MS);
    return () => {
      live = false;
      clearInterval(t);
    };
  }, [openId]);

  const job = detail?.job;
  // the receiver's RequestStatus: discovered nodes, replied so far
  const total = Number(job?.discovered ?? 0);
  const done = Number(job?.replied ?? detail?.replies.length ?? 0);
  const pct = total > 0 ? Math.min(100, Math.round((done / total) * 100)) : 0;

  return (
    <section>
      <h2>Jobs</h2>
      <p class="dim">Refreshes every {REFRESH_MS / 1000} s.</p>
      <ErrorBox message={error} />
      {jobs && jobs.length === 0 && <Note>no jobs yet</Note>}
      {jobs && jobs.length > 0 && (
        <RecordTable
          testid="jobs-table"
          rows={jobs}
          preferred={[
            "request_id",
            "agent",
            "action",
            "caller",
            "created",
            "discovered",
            "replied",
            "ok",
            "failed",
            "complete",
          ]}
          onRow={(j) => {
            setDetail(undefined);
            setDetailError(undefined);
            setOpenId(jobId(j));
          }}
        />
      )}
      {openId && (
        <div class="panel" data-testid="job-detail">
          <h3 class="mono">{openId}</h3>
          <ErrorBox message={detailError} />
          {!detail && !detailError && <Note>loading…</Note>}
          {job && (
            <>
              {total > 0 && (
                <>
                  <div>
                    {done}/{total} replies
                  </div>
                  <div class="progress" role="progressbar" aria-valuenow={pct}>
                    <div style={{ width: `${pct}%` }} />
                  </div>
                </>
              )}
              <table class="kv">
                <tbody>
                  {Object.entries(job).map(([k, v]) => (
                    <tr key={k}>
                      <th>{k}</th>
                      <td class="mono">{fmt(v)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
              <h4>Replies</h4>
              {detail.replies.length === 0 ? (
                <Note>none yet</Note>
              ) : (
                <RecordTable
                  rows={detail.replies}
                  preferred={["sender", "statuscode", "statusmsg", "time", "data"]}
                />
              )}
            </>
          )}
        </div>
      )}
    </section>
  );
}
