import { describe, expect, it } from "vitest";
import { asCvmError, CvmError, ERROR_CODES, exitCodeTable } from "../../src/errors.js";

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
});
