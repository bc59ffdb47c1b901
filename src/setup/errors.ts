import { ChorusError } from "../protocol/errors.js";

export class SetupError extends ChorusError {}
