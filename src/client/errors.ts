import { ChorusError } from "../core/protocol/index.js";

export type ClientErrorCode =
  | "closed"
  | "bad_option"
  | "connect_failed"
  | "usage"
  | "discovery_failed"
  /** the remote signer refused to sign the request: nothing was sent */
  | "signer_denied"
  /** the remote signer could not be used (unreachable, bad answer): nothing was sent */
  | "signer_failed"
  /** the login token has expired (log in again) */
  | "token_expired"
  /** remote signing is configured but there is no login token (log in first) */
  | "no_token"
  /** no login endpoint issued a token */
  | "login_failed"
  /** no stream stores asynchronous request records (no receiver has created it): nothing was sent */
  | "no_replies_stream"
  /** the broker refused this client publishing an asynchronous request record: nothing was sent */
  | "record_denied"
  /** the asynchronous request record was not acknowledged as stored: nothing was sent */
  | "record_failed"
  /** the receiver API could not be reached, or answered something that is not its API */
  | "receiver_unreachable"
  /** the receiver API answered with an error status (see ReceiverApiError.status) */
  | "receiver_error";

/**
 * An option as a message names it: a property of the call's options (`limit`,
 * `replyTo`, `discoveryOptions`, `filter.identity`), or `property=value` for one
 * value of it (`mode=broadcast`). `words` is what the library writes for it when
 * that is not the property's name (or, for `property=value`, the value).
 */
export interface OptionName {
  readonly option: string;
  readonly words?: string;
}

/** A message as text and the options it names. */
export type MessagePart = string | OptionName;

/** How a program names options (the CLI: by its flags); undefined keeps the library's words. */
export type OptionNamer = (option: string) => string | undefined;

/** An option named in a message (see `naming`). */
export function opt(option: string, words?: string): OptionName {
  return words === undefined ? { option } : { option, words };
}

/** Tagged template for a message that names options: `${opt("limit")}` is an option, anything else text. */
export function naming(strings: TemplateStringsArray, ...values: unknown[]): MessagePart[] {
  const parts: MessagePart[] = [strings[0] as string];
  values.forEach((v, i) => {
    parts.push(typeof v === "object" && v !== null && "option" in v ? (v as OptionName) : String(v));
    parts.push(strings[i + 1] as string);
  });
  return parts;
}

function libraryWords(n: OptionName): string {
  return n.words ?? n.option.slice(n.option.indexOf("=") + 1);
}

function say(parts: readonly MessagePart[], name: OptionNamer): string {
  let s = "";
  for (const p of parts) s += typeof p === "string" ? p : (name(p.option) ?? libraryWords(p));
  return s;
}

const libraryNames: OptionNamer = () => undefined;

/**
 * Errors raised by the RPC client before or instead of talking to the fleet. One
 * about an option has `option`, the property at fault as the call's options name it,
 * and a message in the library's words ("limit needs direct mode (not broadcast or
 * service)"); `describe` says the same with a program's own names for the options,
 * which is how the CLI speaks of its flags.
 */
export class ClientError extends ChorusError {
  declare readonly code: ClientErrorCode;
  readonly option?: string;
  private readonly parts?: readonly MessagePart[];

  constructor(
    code: ClientErrorCode,
    message: string | readonly MessagePart[],
    options?: { cause?: unknown; option?: string },
  ) {
    super(code, typeof message === "string" ? message : say(message, libraryNames), options);
    if (typeof message !== "string") this.parts = message;
    if (options?.option !== undefined) this.option = options.option;
  }

  /** The message with each option it names as `name` says (the library's words where it says nothing). */
  describe(name: OptionNamer): string {
    return this.parts ? say(this.parts, name) : this.message;
  }
}

/** A bad option or combination of options (code bad_option), found before anything was sent. */
export function badOption(option: string, message: readonly MessagePart[]): ClientError {
  return new ClientError("bad_option", message, { option });
}
