import { ChorusError } from "../../core/protocol/errors.js";

/** Problems creating, checking or using Choria Streams (JetStream). */
export class StreamsError extends ChorusError {}
