// Property-based fuzzing of every untrusted-input parser: 100,000 cases in all (bench/fuzz runs 1M). A fixed
// seed, other than the bench's, so a run of the suite is repeatable (FUZZ_SEED explores further; a find goes
// into "regressions" below or the parser's own tests).
import { describe, expect, it } from "vitest";
import { PROPERTIES } from "../fuzz/properties.js";
import fc from "fast-check";

const TOTAL = 100_000;
const SEED = Number(process.env.FUZZ_SEED ?? 20261207);

describe("fuzzing: only typed errors, never a crash", () => {
  it("the shares add up to the whole", () => {
    expect(PROPERTIES.reduce((n, p) => n + p.share, 0)).toBeCloseTo(1, 5);
  });
  it.each(PROPERTIES.map((p) => [p.name, p] as const))("%s", (_name, p) => {
    const runs = Math.round(TOTAL * p.share);
    const r = fc.check(p.prop, { numRuns: runs, seed: SEED });
    expect(r.failed, r.failed ? fc.defaultReportMessage(r) : "").toBe(false);
    expect(r.numRuns).toBe(runs);
  }, 120_000);
});

describe("regressions the fuzzer found", () => {
  // tpm2-pcr-bank {"toString": false} made String() throw a TypeError; "constructor" looked up a function.
  it.each([[{ toString: false }], ["constructor"], ["__proto__"], [7]])("a tpm2-pcr-bank of %j is a typed error (tpm2-import) or an unsupported token (systemd-tpm2)", async (bank) => {
    const { parseImportToken } = await import("../../src/flow/convert.js");
    const { checkTpm2Token } = await import("../../src/flow/plan.js");
    const { CvmError } = await import("../../src/errors.js");
    const { importToken, importHeader } = await import("../fuzz/properties.js");
    expect(() => parseImportToken({ id: "0", type: "tpm2-import", keyslots: ["1"], json: { ...importToken, "tpm2-pcr-bank": bank } }, importHeader)).toThrow(CvmError);
    const sd = { "tpm2-pcrs": [7], "tpm2-pcr-bank": bank, "tpm2-policy-hash": "00".repeat(32) };
    expect(await checkTpm2Token({ id: "1", type: "systemd-tpm2", keyslots: ["1"], json: sd }, undefined)).toMatchObject({ state: "unsupported" });
  });
});
