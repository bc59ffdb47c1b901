export {
  FILE_CONTENT_PROTOCOL,
  FileContentSource,
  INVENTORY_PROTOCOL,
  decodeRegistrationPayload,
  inventoryContentPayload,
  type InventoryData,
} from "./payloads.js";
export { encodeRegistrationMessage, registrationSubject, type RegistrationCredential } from "./message.js";
export { RegistrationPublisher, type RegistrationPublisherOptions } from "./publisher.js";
export {
  RegistrationError,
  registrationSettings,
  type RegistrationKind,
  type RegistrationSettings,
} from "./settings.js";
