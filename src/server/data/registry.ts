import { DataError, type DataPlugin } from "./types.js";

/** Per-server registry of data plugins. */
export class DataRegistry {
  readonly #plugins = new Map<string, DataPlugin>();

  register(plugin: DataPlugin): void {
    if (!/^[a-z][a-z0-9_]*$/.test(plugin.name))
      throw new DataError(`invalid data plugin name ${plugin.name}`);
    this.#plugins.set(plugin.name, plugin);
  }

  get(name: string): DataPlugin | undefined {
    return this.#plugins.get(name);
  }

  names(): string[] {
    return [...this.#plugins.keys()].sort();
  }

  /** Runs a plugin; throws DataError for an unknown source or a bad query. */
  run(source: string, query: string): Record<string, unknown> {
    const p = this.#plugins.get(source);
    if (p === undefined) throw new DataError(`unknown data plugin ${source}`);
    return p.run(query);
  }
}
