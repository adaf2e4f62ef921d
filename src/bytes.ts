// Small byte helpers shared by the TPM and crypto code.
export function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export const u32be = (v: number): Uint8Array => Uint8Array.of((v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Lowercase hex of the bytes (no Buffer: the same in Node and Bun). A plain loop: the first Array.from of a
 *  compiled start costs ~0.4 ms, and a later boot's "nothing to do" hexes a policy digest. */
export function hex(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i++) s += (b[i]! < 16 ? "0" : "") + b[i]!.toString(16);
  return s;
}

/** A GUID string as the bytes firmware stores (the first three fields little-endian). */
export function guidBytes(g: string): Uint8Array {
  const b = Uint8Array.from(g.replace(/-/g, "").match(/../g)!.map((x) => parseInt(x, 16)));
  return Uint8Array.of(b[3]!, b[2]!, b[1]!, b[0]!, b[5]!, b[4]!, b[7]!, b[6]!, ...b.subarray(8));
}
