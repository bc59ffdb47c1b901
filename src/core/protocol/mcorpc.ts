/** Body of an RPC request, carried (base64) in Request.message. */
export interface RpcRequestBody {
  agent: string;
  action: string;
  data: Record<string, unknown>;
}

/** Body of an RPC reply, carried (base64) in Reply.message. */
export interface RpcReplyBody {
  action: string;
  statuscode: number;
  statusmsg: string;
  data: Record<string, unknown>;
}

export enum StatusCode {
  OK = 0,
  Aborted = 1,
  UnknownAction = 2,
  MissingData = 3,
  InvalidData = 4,
  UnknownError = 5,
}
