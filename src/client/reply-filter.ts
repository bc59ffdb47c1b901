import { COMMON_FUNCTIONS, compileExpression, lookupFact, type ExprEnv } from "../core/filter/index.js";
import { StatusCode } from "../core/protocol/index.js";
import type { RpcReply } from "./types.js";

/**
 * `--filter-replies`: the compound language over reply fields, as Choria's reply
 * filter: `ok()`, `code`, `msg`, `sender()`, `data("path")` (also `data.x`), plus
 * `include()` and `semver()`.
 */
export const REPLY_ENV: ExprEnv<RpcReply> = {
  what: "reply filter",
  vars: {
    code: (r) => r.statuscode,
    msg: (r) => r.statusmsg,
    statusmsg: (r) => r.statusmsg,
    sender: (r) => r.sender,
    data: (r) => r.data,
  },
  funcs: {
    ...COMMON_FUNCTIONS,
    ok: { min: 0, max: 0, call: (r) => r.statuscode === StatusCode.OK },
    code: { min: 0, max: 0, call: (r) => r.statuscode },
    sender: { min: 0, max: 0, call: (r) => r.sender },
    data: {
      min: 0,
      max: 1,
      call: (r, [path]) =>
        path === undefined ? r.data : typeof path === "string" ? lookupFact(r.data, path) : undefined,
    },
  },
};

/** Compiles a reply filter; throws ExpressionError (with the column) before anything is sent. */
export function compileReplyFilter(expr: string): (r: RpcReply) => boolean {
  return compileExpression(expr, REPLY_ENV);
}
