// Property-based fuzzing of every untrusted-input parser: 100,000 cases in all (bench/fuzz runs 1M).
import { describe, expect, it } from "vitest";
import { PROPERTIES } from "../fuzz/properties.js";
import fc from "fast-check";

const TOTAL = 100_000;

describe("fuzzing: only typed errors, never a crash", () => {
  it("the shares add up to the whole", () => {
    expect(PROPERTIES.reduce((n, p) => n + p.share, 0)).toBeCloseTo(1, 5);
  });
  it.each(PROPERTIES.map((p) => [p.name, p] as const))("%s", (_name, p) => {
    const runs = Math.round(TOTAL * p.share);
    const r = fc.check(p.prop, { numRuns: runs });
    expect(r.failed, r.failed ? fc.defaultReportMessage(r) : "").toBe(false);
    expect(r.numRuns).toBe(runs);
  }, 120_000);
});
