import { BUILTIN_DATA_PLUGINS } from "./builtins.js";
import { DATA_PLUGIN_NAME, checkQuery } from "./ddl.js";
import { DataError, type DataDdl, type DataNode, type DataPlugin } from "./types.js";

/**
 * The data plugins of one server, shared by its nodes: plugins get the node they run
 * for as an argument, so one registry serves every node of a process.
 */
export class DataRegistry {
  readonly #plugins = new Map<string, DataPlugin>();

  /** A registry holding the built-in plugins (choria, fstat, sysctl). */
  static withBuiltins(): DataRegistry {
    const r = new DataRegistry();
    for (const p of BUILTIN_DATA_PLUGINS) r.register(p);
    return r;
  }

  /** Adds (or replaces) a plugin; its name must be a valid plugin name and match its DDL. */
  register(plugin: DataPlugin): void {
    if (!DATA_PLUGIN_NAME.test(plugin.name)) throw new DataError(`invalid data plugin name ${plugin.name}`);
    if (plugin.ddl.metadata.name !== plugin.name)
      throw new DataError(
        `data plugin ${plugin.name} has a DDL named ${JSON.stringify(plugin.ddl.metadata.name)}`,
      );
    this.#plugins.set(plugin.name, plugin);
  }

  get(name: string): DataPlugin | undefined {
    return this.#plugins.get(name);
  }

  names(): string[] {
    return [...this.#plugins.keys()].sort();
  }

  ddls(): DataDdl[] {
    return this.names().map((n) => (this.#plugins.get(n) as DataPlugin).ddl);
  }

  /** Runs a plugin for `node`; throws DataError for an unknown source, a bad query or a failed run. */
  run(source: string, query: string, node: DataNode): Record<string, unknown> {
    const p = this.#plugins.get(source);
    if (p === undefined) throw new DataError(`unknown data plugin ${source}`);
    checkQuery(p.ddl, query);
    return p.run(query, node);
  }
}

/** Built-ins only: what a NodeRuntime uses when its server gives it no registry. */
export const defaultDataRegistry = DataRegistry.withBuiltins();
