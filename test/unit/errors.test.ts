import { describe, expect, it } from "vitest";
import { asCvmError, CvmError, ERROR_CODES, exitCodeTable } from "../../src/errors.js";
import { LayoutError } from "../../src/tee/layout.js";
import { DerError } from "../../src/tee/verify/der.js";
import { TpmFormatError } from "../../src/tpm/marshal.js";

describe("errors", () => {
  it("gives every code its own non-zero exit code", () => {
    const exits = Object.values(ERROR_CODES).map((c) => c.exit);
    expect(new Set(exits).size).toBe(exits.length);
    expect(exits.every((e) => e > 0 && e < 64)).toBe(true);
    expect(exitCodeTable()[0]!.exit).toBe(1);
  });
  it("wraps foreign errors as INTERNAL and keeps CvmErrors", () => {
    const e = new CvmError("LUKS", "x");
    expect(asCvmError(e)).toBe(e);
    const w = asCvmError(new TypeError("boom"));
    expect(w.code).toBe("INTERNAL");
    expect(w.exitCode).toBe(1);
    expect(w.message).toBe("boom");
  });
  it("gives malformed host and firmware bytes the TEE and TPM exit codes, not INTERNAL", () => {
    expect(asCvmError(new LayoutError("SNP report", "truncated"))).toMatchObject({ code: "TEE", exitCode: 7, details: { reason: "malformed" } });
    expect(asCvmError(new DerError("truncated header"))).toMatchObject({ code: "TEE", exitCode: 7 });
    expect(asCvmError(new TpmFormatError("short read"))).toMatchObject({ code: "TPM", exitCode: 8 });
  });
});
