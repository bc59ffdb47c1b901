import { readFileSync } from "node:fs";
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";

/**
 * Validators for the v2 layers, built from the copies of
 * Choria's published schemas under /schemas. A few schema statements disagree with what
 * go-choria actually puts on the wire; the schemas are adjusted here to follow go-choria
 * (each adjustment is pinned by a test in test/core/protocol/deviations.test.ts).
 */

type Json = Record<string, unknown>;

function load(name: string): Json {
  // src/core/protocol and dist/core/protocol are both three levels below the package root.
  const url = new URL(`../../../schemas/choria/protocol/v2/${name}.json`, import.meta.url);
  return JSON.parse(readFileSync(url, "utf8")) as Json;
}

function props(schema: Json): Json {
  return schema.properties as Json;
}

const transport = load("transport");
{
  const headers = props(transport).headers as Json;
  const hp = headers.properties as Json;
  // go-choria's JSON tag for the hop list is `trace`; the schema only knows `seen-by`.
  // Validate `trace` with the same shape (a list of string triplets).
  hp.trace = {
    type: "array",
    items: { type: "array", minItems: 3, maxItems: 3, items: { type: "string" } },
  };
  // go-choria marks federation.request omitempty, so a federation header may lack it.
  const fed = hp.federation as Json;
  delete fed.required;
}

const secureRequest = load("secure_request");
const request = load("request");
const secureReply = load("secure_reply");

const reply = load("reply");
// The published v2 reply schema has the request's protocol const; go-choria sends
// io.choria.protocol.v2.reply (the bug stays latent there because replies are not validated).
(props(reply).protocol as Json).const = "io.choria.protocol.v2.reply";

// strict:false because the transport schema uses the draft-07 tuple form of `items`
// without `minItems`/`additionalItems`, which strict mode rejects.
// unicode:false measures strings with .length instead of walking them for surrogate
// pairs: every length rule in these schemas is `minLength: 1`, which both agree on,
// and walking would cost about 5 ns per character of every base64 payload field (5 µs
// for a 1 KB body, 17 ms for 4 MB) on each encode and decode. ajv calls the option
// deprecated and says so on the console, its only message for these fixed schemas,
// hence logger:false.
const ajv = new Ajv({ allErrors: false, strict: false, unicode: false, logger: false });

function compile(schema: Json): ValidateFunction {
  const copy = { ...schema };
  // The meta-schema is implied (ajv's default is draft-07); drop the URI so ajv does not look it up.
  delete copy.$schema;
  return ajv.compile(copy);
}

const schemas = { transport, secureRequest, request, secureReply, reply };
type Layer = keyof typeof schemas;
const compiled: Partial<Record<Layer, ValidateFunction>> = {};
const get = (k: Layer): ValidateFunction => (compiled[k] ??= compile(schemas[k]));

/**
 * Compiled on first use: a server never validates reply layers and a client rarely
 * validates request layers, and each compiled validator costs start-up time and memory.
 */
export const validators: Readonly<Record<Layer, ValidateFunction>> = {
  get transport() {
    return get("transport");
  },
  get secureRequest() {
    return get("secureRequest");
  },
  get request() {
    return get("request");
  },
  get secureReply() {
    return get("secureReply");
  },
  get reply() {
    return get("reply");
  },
};

export function errorsText(errors: ErrorObject[] | null | undefined): string {
  if (!errors || errors.length === 0) return "invalid";
  return errors.map((e) => `${e.instancePath || "/"} ${e.message ?? "invalid"}`).join(", ");
}
