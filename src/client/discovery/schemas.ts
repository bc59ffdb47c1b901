import { readFileSync } from "node:fs";
import { Ajv, type ValidateFunction } from "ajv";

type Json = Record<string, unknown>;

// src/client/discovery and dist/client/discovery are both three levels below the package root.
function load(name: string): Json {
  const url = new URL(`../../../schemas/choria/discovery/v1/${name}.json`, import.meta.url);
  const s = JSON.parse(readFileSync(url, "utf8")) as Json;
  // ajv assumes draft-07; dropping the URIs keeps it from trying to resolve them.
  delete s.$schema;
  delete s.id;
  return s;
}

const ajv = new Ajv({ allErrors: false, strict: false });
let inventory: ValidateFunction | undefined;
let externalReply: ValidateFunction | undefined;

/** Validation errors as one readable line ("/nodes/3: must have required property 'agents'"). */
function explain(v: ValidateFunction): string {
  const e = v.errors?.[0];
  if (!e) return "invalid";
  return `${e.instancePath || "(top level)"}: ${e.message ?? "invalid"}`;
}

export function checkInventory(doc: unknown): string | undefined {
  inventory ??= ajv.compile(load("inventory_file"));
  return inventory(doc) ? undefined : explain(inventory);
}

export function checkExternalReply(doc: unknown): string | undefined {
  externalReply ??= ajv.compile(load("external_reply"));
  return externalReply(doc) ? undefined : explain(externalReply);
}
