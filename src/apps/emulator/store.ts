import type { ProvisionAgentOptions } from "../../server/index.js";

/** What the provisioning agent keeps a node's files in (server/provision's ProvisionStore). */
export type ProvisionStore = NonNullable<ProvisionAgentOptions["store"]>;

/**
 * An emulated node's files, in memory: thousands of nodes writing seeds, tokens and
 * configs through fsync would measure the disk, not provisioning. A Map assignment is
 * atomic, which is all the agent asks of a write.
 */
export class MemoryStore implements ProvisionStore {
  private readonly files = new Map<string, string>();

  read(path: string): string | undefined {
    return this.files.get(path);
  }

  write(path: string, data: string): void {
    this.files.set(path, data);
  }

  remove(path: string): void {
    this.files.delete(path);
  }

  /** Paths held, sorted (tests look at what configure wrote). */
  paths(): string[] {
    return [...this.files.keys()].sort();
  }
}
