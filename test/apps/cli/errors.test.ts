import { describe, expect, it } from "vitest";
import { ClientError } from "../../../src/client/index.js";
import { cliMessage } from "../../../src/apps/cli/errors.js";

describe("CLI error wording", () => {
  it("tells the user to log in when the signer's token is missing or expired", () => {
    expect(cliMessage(new ClientError("token_expired", "token expired at 2026-12-05T10:00:00Z"))).toBe(
      "token expired at 2026-12-05T10:00:00Z: run chorus login",
    );
    expect(cliMessage(new ClientError("no_token", "no login token in /tmp/t"))).toBe(
      "no login token in /tmp/t: run chorus login",
    );
    expect(cliMessage(new ClientError("signer_denied", "Request denied"))).toBe("Request denied");
  });
});
