import { findAction, type AgentDDL } from "../core/ddl/index.js";
import { ChorusError } from "../core/protocol/index.js";
import type { AgentDefinition, AgentHandler, RawAgentHandler } from "./types.js";

export class ServerError extends ChorusError {}

export interface RegisterOptions {
  /** false skips the authorization hook for this agent (default true). */
  authorize?: boolean;
  /** Replace an agent already registered under this name instead of failing. */
  replace?: boolean;
}

/**
 * The agents a node hosts. One registry may be shared by many NodeRuntimes (an
 * emulator's nodes all run the same agents), so it holds no per-node state.
 */
export class AgentRegistry {
  private readonly agents = new Map<string, AgentDefinition>();
  private sortedNames: string[] | undefined;
  private readonly listeners: ((name: string) => void)[] = [];
  private readonly removeListeners: ((name: string) => void)[] = [];

  /** Registers an mcorpc agent; every handler must be for an action its DDL declares. */
  register(ddl: AgentDDL, actions: Record<string, AgentHandler>, opts: RegisterOptions = {}): void {
    for (const name of Object.keys(actions)) {
      if (!findAction(ddl, name)) {
        throw new ServerError(
          "unknown_action",
          `agent ${ddl.metadata.name}: handler for "${name}" but the DDL has no such action`,
        );
      }
    }
    this.add({ ddl, actions: { ...actions }, authorize: opts.authorize ?? true }, opts);
  }

  /** Registers a raw agent: it gets the payload bytes and answers with bytes. */
  registerRaw(ddl: AgentDDL, handler: RawAgentHandler, opts: RegisterOptions = {}): void {
    this.add({ ddl, actions: {}, raw: handler, authorize: opts.authorize ?? true }, opts);
  }

  private add(def: AgentDefinition, opts: RegisterOptions): void {
    const name = def.ddl.metadata.name;
    if (!/^[a-z0-9_]+$/.test(name)) throw new ServerError("bad_agent", `invalid agent name "${name}"`);
    if (this.agents.has(name) && !opts.replace)
      throw new ServerError("duplicate_agent", `agent ${name} is already registered`);
    this.agents.set(name, def);
    this.sortedNames = undefined;
    for (const l of this.listeners) l(name);
  }

  /**
   * Removes an agent (agent reload). Requests already running keep the definition
   * they started with; new ones for this agent are dropped as unknown.
   */
  unregister(name: string): boolean {
    if (!this.agents.delete(name)) return false;
    this.sortedNames = undefined;
    for (const l of this.removeListeners) l(name);
    return true;
  }

  get(name: string): AgentDefinition | undefined {
    return this.agents.get(name);
  }

  has(name: string): boolean {
    return this.agents.has(name);
  }

  /** Agent names, sorted; the same array until the registry changes (filters read it a lot), so do not modify it. */
  names(): string[] {
    this.sortedNames ??= [...this.agents.keys()].sort();
    return this.sortedNames;
  }

  definitions(): AgentDefinition[] {
    return this.names().map((n) => this.agents.get(n) as AgentDefinition);
  }

  /** Called with the agent name whenever one is added (the Server subscribes it). */
  onRegister(listener: (name: string) => void): void {
    this.listeners.push(listener);
  }

  /** Called with the agent name whenever one is removed (the Server unsubscribes it). */
  onUnregister(listener: (name: string) => void): void {
    this.removeListeners.push(listener);
  }
}
