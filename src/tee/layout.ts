// Binary layouts as data: a table of fields (offset, type) drives both parse and encode, so one
// round-trip test covers both directions. Bytes not covered by a field are reserved and must be zero.
import { CvmError } from "../errors.js";

export type FieldType = "u8" | "u16" | "u32" | "u64" | { bytes: number };

export interface Field {
  name: string;
  off: number;
  type: FieldType;
}

export interface Layout {
  name: string;
  size: number;
  fields: readonly Field[];
}

export type Value = number | bigint | Uint8Array;
export type Parsed = Record<string, Value>;

/** Report or quote bytes (from the host, the firmware or a file) that do not fit their layout: a TEE error
 *  (exit 7), never INTERNAL. */
export class LayoutError extends CvmError {
  constructor(
    readonly layout: string,
    message: string,
  ) {
    super("TEE", `${layout}: ${message}`, { reason: "malformed", layout });
    this.name = "LayoutError";
  }
}

export const sizeOf = (t: FieldType): number => (t === "u8" ? 1 : t === "u16" ? 2 : t === "u32" ? 4 : t === "u64" ? 8 : t.bytes);

/** Builds a layout from fields listed in order, each given its size; offsets follow from the order unless given. */
export function layout(name: string, size: number, fields: readonly Field[]): Layout {
  // Tables are written in offset order; sorting only when one is not keeps Array.prototype.sort (compiled on
  // first use, ~0.3 ms) off the later boot's path, which builds the LUKS header's layout.
  let ordered = true;
  for (let i = 1; i < fields.length; i++) if (fields[i - 1]!.off > fields[i]!.off) ordered = false;
  const sorted = ordered ? fields.slice() : fields.slice().sort((a, b) => a.off - b.off);
  for (let i = 0; i < sorted.length; i++) {
    const f = sorted[i]!;
    const end = f.off + sizeOf(f.type);
    if (end > size) throw new Error(`${name}.${f.name} overruns the layout`);
    if (i + 1 < sorted.length && end > sorted[i + 1]!.off) throw new Error(`${name}.${f.name} overlaps ${sorted[i + 1]!.name}`);
  }
  return { name, size, fields: sorted };
}

/** The byte ranges of `l` no field covers (reserved, must be zero). */
export function reservedRanges(l: Layout): [number, number][] {
  const out: [number, number][] = [];
  let pos = 0;
  for (const f of l.fields) {
    if (f.off > pos) out.push([pos, f.off]);
    pos = Math.max(pos, f.off + sizeOf(f.type));
  }
  if (pos < l.size) out.push([pos, l.size]);
  return out;
}

export function parse(l: Layout, buf: Uint8Array, base = 0, opts: { checkReserved?: boolean } = {}): Parsed {
  if (buf.length - base < l.size) throw new LayoutError(l.name, `needs ${l.size} bytes, got ${Math.max(0, buf.length - base)}`);
  const dv = new DataView(buf.buffer, buf.byteOffset + base, l.size);
  const out: Parsed = {};
  for (const f of l.fields) {
    const t = f.type;
    out[f.name] =
      t === "u8" ? dv.getUint8(f.off) : t === "u16" ? dv.getUint16(f.off, true) : t === "u32" ? dv.getUint32(f.off, true) : t === "u64" ? dv.getBigUint64(f.off, true) : buf.slice(base + f.off, base + f.off + t.bytes);
  }
  if (opts.checkReserved !== false) {
    for (const [a, b] of reservedRanges(l)) {
      for (let i = a; i < b; i++) {
        if (buf[base + i] !== 0) throw new LayoutError(l.name, `reserved byte at 0x${i.toString(16)} is not zero`);
      }
    }
  }
  return out;
}

export function encode(l: Layout, v: Parsed): Uint8Array {
  const out = new Uint8Array(l.size);
  const dv = new DataView(out.buffer);
  for (const f of l.fields) {
    const x = v[f.name];
    if (x === undefined) throw new LayoutError(l.name, `field ${f.name} missing`);
    const t = f.type;
    if (t === "u8") dv.setUint8(f.off, Number(x));
    else if (t === "u16") dv.setUint16(f.off, Number(x), true);
    else if (t === "u32") dv.setUint32(f.off, Number(x), true);
    else if (t === "u64") dv.setBigUint64(f.off, BigInt(x as number | bigint), true);
    else {
      if (!(x instanceof Uint8Array) || x.length !== t.bytes) throw new LayoutError(l.name, `field ${f.name} must be ${t.bytes} bytes`);
      out.set(x, f.off);
    }
  }
  return out;
}

/** Fields from a compact list: [name, size] pairs placed one after another from `start`. */
export function seq(start: number, list: readonly (readonly [string, FieldType])[]): Field[] {
  let off = start;
  return list.map(([name, type]) => {
    const f = { name, off, type };
    off += sizeOf(type);
    return f;
  });
}

export const bytes = (n: number): FieldType => ({ bytes: n });
export { hex } from "../bytes.js";
export const u64hex = (x: bigint): string => `0x${x.toString(16)}`;
