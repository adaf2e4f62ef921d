// The binary layout table (src/tee/layout.ts) and the byte comparison the LUKS header check uses.
import { describe, expect, it } from "vitest";
import { equalBytes } from "../../src/bytes.js";
import { bytes, encode, layout, parse, reservedRanges } from "../../src/tee/layout.js";

describe("layout", () => {
  it("keeps a table written in offset order, and orders one that is not", () => {
    const inOrder = layout("t", 16, [
      { name: "a", off: 0, type: "u32" },
      { name: "b", off: 8, type: bytes(4) },
    ]);
    const shuffled = layout("t", 16, [
      { name: "b", off: 8, type: bytes(4) },
      { name: "a", off: 0, type: "u32" },
    ]);
    expect(inOrder.fields.map((f) => f.name)).toEqual(["a", "b"]);
    expect(shuffled.fields.map((f) => f.name)).toEqual(["a", "b"]);
    expect(reservedRanges(shuffled)).toEqual([[4, 8], [12, 16]]);
    const v = { a: 0x01020304, b: new Uint8Array([9, 8, 7, 6]) };
    expect(parse(shuffled, encode(inOrder, v))).toEqual(v);
  });

  it("refuses fields that overlap or run past the end, in whichever order they are listed", () => {
    expect(() => layout("t", 8, [{ name: "a", off: 4, type: "u32" }, { name: "b", off: 0, type: "u64" }])).toThrow(/t\.b overlaps a/);
    expect(() => layout("t", 8, [{ name: "a", off: 6, type: "u32" }])).toThrow(/t\.a overruns/);
  });
});

describe("equalBytes", () => {
  it("compares length and every byte", () => {
    expect(equalBytes(new Uint8Array([1, 2, 3]), new Uint8Array([1, 2, 3]))).toBe(true);
    expect(equalBytes(new Uint8Array([1, 2, 3]), new Uint8Array([1, 2, 4]))).toBe(false);
    expect(equalBytes(new Uint8Array([1, 2]), new Uint8Array([1, 2, 3]))).toBe(false);
    expect(equalBytes(new Uint8Array(0), new Uint8Array(0))).toBe(true);
  });
});
