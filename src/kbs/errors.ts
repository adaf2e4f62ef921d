// Trustee's error model → what the agent does. Trustee answers 401 for nearly everything and names the
// cause in `type`, so this branches on the type, not the status (shared/reference/kbs-protocol.md §9).
import { CvmError, type ErrorCode } from "../errors.js";

/** Retry classes, each with its own budget in the attempt loop; null = fail at once. */
export type RetryClass = "network" | "attestation" | "token" | "plugin" | "protocol" | "busy";

export const RETRY_BUDGET: Record<RetryClass, number> = {
  network: Infinity, // until the deadline
  busy: Infinity, // 5xx, 429, AS challenge failure: until the deadline
  attestation: 5,
  token: 2,
  plugin: 3,
  protocol: 3,
};

export class AttemptError extends CvmError {
  constructor(
    code: ErrorCode,
    message: string,
    readonly retry: RetryClass | null,
    details: Record<string, string | number | boolean> = {},
  ) {
    super(code, message, { ...details, retry: retry ?? "none" });
    this.name = "AttemptError";
  }
}

const TYPE_PREFIX = "https://github.com/confidential-containers/kbs/errors/";

/** Maps an ErrorInformation body ({type, detail}) received at `step` to the agent's decision. */
export function classifyKbsError(step: "auth" | "attest" | "resource", status: number, info: { type: string; detail: string }): AttemptError {
  const kind = info.type.startsWith(TYPE_PREFIX) ? info.type.slice(TYPE_PREFIX.length) : info.type;
  const detail = info.detail.slice(0, 300);
  const said = `${step}: broker said ${kind} (${status}): ${detail}`;
  const d = { kbs_error: kind, status };
  switch (kind) {
    case "AttestationError":
      if (step === "auth") {
        if (/Version Mismatch/i.test(detail)) return new AttemptError("BROKER_PROTOCOL", `${said} — the broker speaks another KBS protocol version (cvm-unlock speaks 0.4.0: Trustee v0.14.0 or later)`, null, d);
        if (/deserialize Request|failed to parse KBS version/i.test(detail)) return new AttemptError("BROKER_PROTOCOL", said, null, d);
        return new AttemptError("BROKER_UNREACHABLE", said, "busy", d);
      }
      return new AttemptError("ATTESTATION_REFUSED", said, "attestation", d);
    case "TokenNotFound":
    case "TokenVerifierError":
      return new AttemptError("BROKER_PROTOCOL", said, "token", d);
    case "PolicyDeny":
      return new AttemptError("ATTESTATION_REFUSED", `${step}: access denied by the broker's policy`, null, d);
    case "PolicyEngineError":
      return new AttemptError("ATTESTATION_REFUSED", `${said} (broker policy is broken)`, null, d);
    case "PluginInternalError":
      return new AttemptError("ATTESTATION_REFUSED", `${said} (resource unavailable or missing)`, "plugin", d);
    case "SerdeError":
      return new AttemptError("BROKER_PROTOCOL", said, "protocol", d);
    case "JweError":
      return new AttemptError("BROKER_PROTOCOL", `${said} (the broker cannot encrypt to our key)`, null, d);
    case "PluginNotFound":
    case "InvalidRequestPath":
      return new AttemptError("BROKER_PROTOCOL", `${said} (wrong broker URL or plugin disabled?)`, null, d);
    default:
      return new AttemptError("BROKER_PROTOCOL", said, "protocol", d);
  }
}
