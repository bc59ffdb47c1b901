/** Data plugins: node-side functions usable in compound filters and rpcutil#get_data. */

export interface DataOutput {
  readonly description: string;
  readonly display_as: string;
  readonly type: string;
}

/** Choria's data DDL shape (metadata, one query input, outputs). */
export interface DataDdl {
  readonly metadata: {
    readonly name: string;
    readonly description: string;
    readonly author: string;
    readonly license: string;
    readonly version: string;
    readonly url: string;
    readonly timeout: number;
  };
  readonly input?: {
    readonly query: {
      readonly prompt: string;
      readonly description: string;
      readonly type: string;
      readonly optional: boolean;
    };
  };
  readonly output: Readonly<Record<string, DataOutput>>;
}

/** Synchronous so compound filters, which are evaluated synchronously per node, can call them. */
export interface DataPlugin {
  readonly name: string;
  readonly ddl: DataDdl;
  run(query: string): Record<string, unknown>;
}

export class DataError extends Error {
  override readonly name = "DataError";
}
