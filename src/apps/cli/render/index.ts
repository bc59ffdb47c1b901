// What the CLI prints: results of req, ping and discover (text, JSON, JSON lines,
// tables), DDL summaries, reports, exit codes and the progress bar. The client returns
// data; turning it into output is the CLI's job.
export * from "./results.js";
export * from "./output.js";
export * from "./words.js";
export {
  computeSummaries,
  renderSummaries,
  formatValue,
  histogram,
  AGGREGATE_FUNCTIONS,
  type Summary,
  type AggregateFunction,
} from "./aggregate.js";
export { factReport, renderFactReport, renderInventory, renderDDLDoc, type FactReport } from "./reports.js";
export { countProgress, replyProgress, type CountProgress, type Progress } from "./progress.js";
