// The closed set of failures. Every error the agent can end with is a CvmError with one of these codes;
// each code maps, here and only here, to a process exit code and a one-line description.
// Messages never contain secrets: callers pass Secret values only through Secret's redacting forms.

export const ERROR_CODES = {
  USAGE: { exit: 2, what: "bad command line" },
  CONFIG: { exit: 3, what: "invalid configuration or kernel command line" },
  ATTESTATION_REFUSED: { exit: 4, what: "the broker refused attestation or release" },
  BROKER_UNREACHABLE: { exit: 5, what: "the broker could not be reached within the deadline" },
  BROKER_PROTOCOL: { exit: 6, what: "the broker answered outside the protocol" },
  TEE: { exit: 7, what: "no usable TEE evidence" },
  TPM: { exit: 8, what: "TPM failure" },
  LUKS: { exit: 9, what: "LUKS volume failure" },
  KEYRING: { exit: 10, what: "kernel keyring failure" },
  EFI: { exit: 11, what: "UEFI boot entry, variable or ESP failure" },
  INTERNAL: { exit: 1, what: "internal error" },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class CvmError extends Error {
  readonly code: ErrorCode;
  /** Extra facts for the failure record and --json output; plain values only, never secrets. */
  readonly details: Record<string, string | number | boolean>;
  constructor(code: ErrorCode, message: string, details: Record<string, string | number | boolean> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "CvmError";
    this.code = code;
    this.details = details;
  }
  get exitCode(): number {
    return ERROR_CODES[this.code].exit;
  }
}

/** Any thrown value as a CvmError; foreign errors become INTERNAL with their message kept. */
export function asCvmError(e: unknown): CvmError {
  if (e instanceof CvmError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  return new CvmError("INTERNAL", msg, {}, { cause: e });
}

export const EXIT_OK = 0;

export function exitCodeTable(): { code: ErrorCode; exit: number; what: string }[] {
  return (Object.keys(ERROR_CODES) as ErrorCode[])
    .map((code) => ({ code, exit: ERROR_CODES[code].exit, what: ERROR_CODES[code].what }))
    .sort((a, b) => a.exit - b.exit);
}
