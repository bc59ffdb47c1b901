// services/jobs: the workflow engine. Workflows (YAML/JSON) run as DAGs of command or
// agent steps in a detached manager process per execution, reporting through the
// submission spool.
export {
  WorkflowError,
  WORKFLOW_DEFAULTS,
  WORKFLOW_LIMITS,
  parseWorkflow,
  workflowId,
  type AgentCall,
  type Workflow,
  type WorkflowStep,
} from "./workflow.js";
export {
  idKind,
  type ExecutionMeta,
  type ExecutionState,
  type ExecutionStatus,
  type StepState,
  type StepStatus,
} from "./status.js";
export {
  JOB_EVENT_PREFIX,
  JOB_EVENT_TYPES,
  encodeJobEvent,
  jobEventSubject,
  nullSink,
  spoolSink,
  type EventSink,
  type JobEvent,
  type JobEventType,
} from "./events.js";
export { OUTPUT_EVENTS, loadExecution, runExecution, type AgentInvoker, type RunOptions } from "./runner.js";
export { Jobs, defaultManagerCommand, type JobsOptions } from "./jobs.js";
export { managerMain } from "./manager.js";
