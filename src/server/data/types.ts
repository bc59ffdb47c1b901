/** Data plugins: node-side functions usable in compound filters and rpcutil#get_data. */
import type { MachineStateInfo } from "../machines.js";

export interface DataOutput {
  readonly description: string;
  readonly display_as: string;
  /** go-choria's output types: string, integer, float, number, boolean, list, Array, Hash, or "" (any). */
  readonly type: string;
  readonly default?: unknown;
}

/** The one input a data plugin takes (go-choria's common.InputItem). */
export interface DataInput {
  readonly prompt: string;
  readonly description: string;
  readonly type: string;
  readonly optional: boolean;
  readonly default?: unknown;
  /** A regular expression the query must match. */
  readonly validation?: string;
  readonly maxlength?: number;
}

/** go-choria's data DDL JSON (providers/data/ddl): metadata, an optional `query` input, outputs. */
export interface DataDdl {
  readonly $schema?: string;
  readonly metadata: {
    readonly name: string;
    readonly description: string;
    readonly author: string;
    readonly license: string;
    readonly version: string;
    readonly url: string;
    /** Seconds; 0 means go-choria's default of 10. */
    readonly timeout: number;
    readonly provider?: string;
  };
  /** Absent: the plugin takes no query (`choria()` in a filter). */
  readonly query?: DataInput;
  readonly output: Readonly<Record<string, DataOutput>>;
}

/** What a data plugin may ask of the node it runs for (go-choria hands plugins a ServerInfoSource). */
export interface DataNode {
  readonly identity: string;
  readonly agents: readonly string[];
  readonly classes: readonly string[];
  readonly stats: {
    readonly total: number;
    readonly validated: number;
    readonly unvalidated: number;
    readonly passed: number;
    readonly filtered: number;
    readonly replies: number;
    readonly ttlexpired: number;
    readonly events: number;
  };
  /** The node's running autonomous agents (go-choria's MachinesStatus); absent = none. */
  machineStates?(): MachineStateInfo[];
  readonly host: {
    readonly version: string;
    readonly startTime: number;
    readonly configFile?: string;
    connectedServer(): string;
  };
}

/**
 * Synchronous so compound filters, which are evaluated synchronously per node, can
 * call them. Throw DataError for a query the plugin cannot answer.
 */
export interface DataPlugin {
  readonly name: string;
  readonly ddl: DataDdl;
  run(query: string, node: DataNode): Record<string, unknown>;
}

export class DataError extends Error {
  override readonly name = "DataError";
}
