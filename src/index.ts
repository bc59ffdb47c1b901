// Library entry: `import { Server, Client } from "chorus"`.
export { ChorusError } from "./protocol/errors.js";
