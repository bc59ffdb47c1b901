// Small shared view pieces: messages, generic record tables, value formatting.
import type { ComponentChildren } from "preact";

export function ErrorBox({ message, testid }: { message: string | undefined; testid?: string }) {
  if (!message) return null;
  return (
    <div class="error" role="alert" data-testid={testid}>
      {message}
    </div>
  );
}

export function Note({ children }: { children: ComponentChildren }) {
  return <div class="note">{children}</div>;
}

export function fmt(v: unknown): string {
  if (v === undefined || v === null) return "";
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  return JSON.stringify(v);
}

export function fmtAge(seconds: number): string {
  if (!Number.isFinite(seconds)) return "";
  const s = Math.max(0, Math.round(seconds));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}

/** Columns for records whose shape the server does not fix: the preferred keys first, then the rest seen. */
export function columnsOf(rows: Record<string, unknown>[], preferred: string[], max = 10): string[] {
  const seen = new Set<string>();
  for (const r of rows.slice(0, 50)) for (const k of Object.keys(r)) seen.add(k);
  const cols = preferred.filter((k) => seen.has(k));
  for (const k of seen) if (!cols.includes(k)) cols.push(k);
  return cols.slice(0, max);
}

export function RecordTable({
  rows,
  preferred,
  onRow,
  testid,
}: {
  rows: Record<string, unknown>[];
  preferred: string[];
  onRow?: (r: Record<string, unknown>) => void;
  testid?: string;
}) {
  const cols = columnsOf(rows, preferred);
  return (
    <table class="grid" data-testid={testid}>
      <thead>
        <tr>
          {cols.map((c) => (
            <th key={c}>{c}</th>
          ))}
        </tr>
      </thead>
      <tbody>
        {rows.map((r, i) => (
          <tr key={i} class={onRow ? "clickable" : ""} onClick={onRow ? () => onRow(r) : undefined}>
            {cols.map((c) => (
              <td key={c} title={fmt(r[c])}>
                {fmt(r[c])}
              </td>
            ))}
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** Horizontal bar chart in plain SVG: label, bar, count; biggest first. */
export function BarChart({ counts, max = 20 }: { counts: Record<string, number>; max?: number }) {
  const entries = Object.entries(counts)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .slice(0, max);
  if (entries.length === 0) return <Note>no values</Note>;
  const top = Math.max(...entries.map((e) => e[1]));
  const rowH = 22;
  const labelW = 160;
  const barW = 360;
  return (
    <svg
      class="chart"
      data-testid="fact-chart"
      width={labelW + barW + 70}
      height={entries.length * rowH + 4}
      role="img"
      aria-label="counts by fact value"
    >
      {entries.map(([label, n], i) => {
        const w = top === 0 ? 0 : Math.max(1, Math.round((n / top) * barW));
        const y = i * rowH + 2;
        return (
          <g key={label}>
            <text x={labelW - 6} y={y + 15} text-anchor="end" class="chart-label">
              {label.length > 24 ? `${label.slice(0, 23)}…` : label}
            </text>
            <rect x={labelW} y={y + 2} width={w} height={rowH - 6} class="chart-bar" />
            <text x={labelW + w + 6} y={y + 15} class="chart-count">
              {n}
            </text>
          </g>
        );
      })}
    </svg>
  );
}
