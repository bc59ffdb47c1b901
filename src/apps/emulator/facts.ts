// Deterministic, varied facts so filters have something to select on in demos and tests.
const OS = ["linux", "linux", "linux", "freebsd", "windows"];
const ROLES = ["web", "db", "cache", "queue", "batch"];
const LOCATIONS = ["lon", "nyc", "ams", "sin"];
const ENVS = ["production", "production", "staging", "development"];
// Shared by every node's facts (read-only to filters): one array instead of 50 000.
const INTERFACES = Object.freeze(["lo", "eth0"]);

/** node-00001.emulated.chorus style names; sortable for up to 99 999 nodes. */
export function emulatedIdentity(i: number): string {
  return `node-${String(i).padStart(5, "0")}.emulated.chorus`;
}

/** FNV-1a (32 bit) of `identity/fact`: each fact varies independently of the others. */
function factHash(identity: string, fact: string): number {
  let h = 0x811c9dc5;
  const s = `${identity}/${fact}`;
  for (let k = 0; k < s.length; k++) {
    h ^= s.charCodeAt(k);
    h = Math.imul(h, 0x01000193);
  }
  // final avalanche so neighbouring identities spread over small ranges too
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  return h >>> 0;
}

/**
 * A node's facts. Each one comes from its own hash of (identity, fact name), so every
 * combination occurs (role=web on linux and on windows), and the same node always
 * gets the same facts.
 */
export function emulatedFacts(i: number): Record<string, unknown> {
  const identity = emulatedIdentity(i);
  const pick = <T>(xs: readonly T[], fact: string): T => xs[factHash(identity, fact) % xs.length] as T;
  const n = (fact: string, m: number): number => factHash(identity, fact) % m;
  return {
    index: i,
    os: pick(OS, "os"),
    role: pick(ROLES, "role"),
    location: pick(LOCATIONS, "location"),
    environment: pick(ENVS, "environment"),
    cores: 2 ** n("cores", 5),
    memory_gb: 4 * (1 + n("memory_gb", 8)),
    kernel: `6.${n("kernel_minor", 10)}.${n("kernel_patch", 7)}`,
    network: { interfaces: INTERFACES, primary: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` },
  };
}
