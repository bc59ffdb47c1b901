import { readFileSync } from "node:fs";
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";

/**
 * Validators for the v1 and v2 layers, built from the copies of
 * Choria's published schemas under /schemas. A few schema statements disagree with what
 * go-choria actually puts on the wire; the schemas are adjusted here to follow go-choria
 * (each adjustment is pinned by a test in test/core/protocol/deviations.test.ts).
 */

type Json = Record<string, unknown>;

function load(name: string, version = 2): Json {
  // src/core/protocol and dist/core/protocol are both three levels below the package root.
  const url = new URL(`../../../schemas/choria/protocol/v${version}/${name}.json`, import.meta.url);
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
  // v1 schemas are draft-04, whose `id` ajv refuses; nothing refers to it.
  delete copy.id;
  return ajv.compile(copy);
}

// v1 (draft-04). The keywords they use mean the same in draft-07 apart from the tuple
// form of `items`, which only constrains a list's first entry in both.
const transportV1 = load("transport", 1);
{
  const fed = (props(transportV1).headers as Json).properties as Json;
  const fp = (fed.federation as Json).properties as Json;
  // go-choria's JSON tag is `target`; the schema says `targets`. `req` is omitempty too.
  fp.target = fp.targets;
  delete fp.targets;
  delete (fed.federation as Json).required;
}
const secureRequestV1 = load("secure_request", 1);
const requestV1 = load("request", 1);
{
  const env = props(requestV1).envelope as Json;
  const filter = (env.properties as Json).filter as Json;
  // go-choria's v1 request carries the same Filter struct as v2, whose compound is a list
  // of parsed expression lists; the v1 schema's list of strings predates that.
  (filter.properties as Json).compound = { type: "array", items: { type: "array" } };
}
const secureReplyV1 = load("secure_reply", 1);
const replyV1 = load("reply", 1);

const schemas = {
  transport,
  secureRequest,
  request,
  secureReply,
  reply,
  transportV1,
  secureRequestV1,
  requestV1,
  secureReplyV1,
  replyV1,
};
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
  get transportV1() {
    return get("transportV1");
  },
  get secureRequestV1() {
    return get("secureRequestV1");
  },
  get requestV1() {
    return get("requestV1");
  },
  get secureReplyV1() {
    return get("secureReplyV1");
  },
  get replyV1() {
    return get("replyV1");
  },
};

export function errorsText(errors: ErrorObject[] | null | undefined): string {
  if (!errors || errors.length === 0) return "invalid";
  return errors.map((e) => `${e.instancePath || "/"} ${e.message ?? "invalid"}`).join(", ");
}
