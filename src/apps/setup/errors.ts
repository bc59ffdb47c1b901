import { ChorusError } from "../../core/protocol/errors.js";

export class SetupError extends ChorusError {}
