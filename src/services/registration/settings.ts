import { isAbsolute, resolve, dirname } from "node:path";
import type { Config } from "../../core/config/index.js";
import { ChorusError } from "../../core/protocol/errors.js";

export class RegistrationError extends ChorusError {}

export type RegistrationKind = "inventory_content" | "file_content";

/** Registration settings under go-choria's key names. */
export interface RegistrationSettings {
  /** `registration`: which payloads to send; empty = registration off (Choria's default) */
  kinds: RegistrationKind[];
  /** `registerinterval` (seconds in the file), default 300 s */
  intervalMs: number;
  /** `registration_splay`, default true */
  splay: boolean;
  /** `registration_collective`, default the main collective */
  collective?: string;
  inventoryCompression: boolean;
  inventoryTarget?: string;
  fileContentFile?: string;
  fileContentCompression: boolean;
  fileContentTarget?: string;
  /** Chorus-only `plugin.chorus.registration.change_check_interval`, default 10 s; 0 disables the size trigger */
  changeCheckMs: number;
}

export function registrationSettings(cfg: Config): RegistrationSettings {
  const kinds = cfg.list("registration", []).map((k) => {
    if (k !== "inventory_content" && k !== "file_content")
      throw cfg.error(
        "registration",
        `registration "${k}" is not supported (inventory_content, file_content)`,
      );
    return k;
  });
  const fileKey = "plugin.choria.registration.file_content.data";
  const file = cfg.get(fileKey);
  if (kinds.includes("file_content") && !file)
    throw cfg.error(fileKey, `file_content registration needs ${fileKey}`);
  const opt = <K extends string, V>(k: K, v: V | undefined) =>
    v === undefined || v === "" ? {} : { [k]: v };
  const intervalMs = cfg.duration("registerinterval", 300_000);
  if (intervalMs < 1) throw cfg.error("registerinterval", "registerinterval must be positive");
  return {
    kinds,
    intervalMs,
    splay: cfg.bool("registration_splay", true),
    ...opt("collective", cfg.get("registration_collective")),
    inventoryCompression: cfg.bool("plugin.choria.registration.inventory_content.compression", true),
    ...opt("inventoryTarget", cfg.get("plugin.choria.registration.inventory_content.target")),
    ...opt("fileContentFile", file && (isAbsolute(file) ? file : resolve(dirname(resolve(cfg.file)), file))),
    fileContentCompression: cfg.bool("plugin.choria.registration.file_content.compression", true),
    ...opt("fileContentTarget", cfg.get("plugin.choria.registration.file_content.target")),
    changeCheckMs: cfg.duration("plugin.chorus.registration.change_check_interval", 10_000),
  } as RegistrationSettings;
}
