import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MachineHostServices, TransitionEventData } from "../../../src/services/machines/index.js";

export function tempDir(prefix = "chorus-machines-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export async function waitFor(cond: () => boolean, timeoutMs = 8000, what = "condition"): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** services whose event sink records what machines report */
export function recordingServices(extra: Partial<MachineHostServices> = {}): {
  services: MachineHostServices;
  transitions: TransitionEventData[];
  states: { type: string; data: Record<string, unknown> }[];
} {
  const transitions: TransitionEventData[] = [];
  const states: { type: string; data: Record<string, unknown> }[] = [];
  return {
    transitions,
    states,
    services: {
      identity: "node1.example.net",
      events: {
        transition: (ev) => transitions.push(ev),
        watcherState: (type, data) => states.push({ type, data }),
      },
      ...extra,
    },
  };
}
