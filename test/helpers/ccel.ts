// A TDX CC event log built in the tests (no TDX guest exists here), in the layout TDVF writes.
import { sha384 } from "@noble/hashes/sha2.js";
import { EV } from "../../src/measured-boot/eventlog.js";

/** A CCEL as TDVF writes it: the Spec ID header with SHA-384 only, events whose index is the MR index
 *  (1..4 = RTMR0..3), then the unused rest of the area as 0xFF. */
export function ccel(events: { mr: number; data: string }[]): Uint8Array {
  const le32 = (n: number) => new Uint8Array(new Uint32Array([n]).buffer);
  const spec = new Uint8Array(33 + 4);
  spec.set(new TextEncoder().encode("Spec ID Event03\0"));
  spec[20] = 0; spec[21] = 2; spec[23] = 2;
  new DataView(spec.buffer).setUint32(24, 1, true);
  new DataView(spec.buffer).setUint16(28, 0x000c, true);
  new DataView(spec.buffer).setUint16(30, 48, true);
  const parts: Uint8Array[] = [le32(0), le32(EV.NO_ACTION), new Uint8Array(20), le32(spec.length), spec];
  for (const e of events) {
    const data = new TextEncoder().encode(e.data);
    parts.push(le32(e.mr), le32(EV.EFI_ACTION), le32(1), Uint8Array.of(0x0c, 0), sha384(data), le32(data.length), data);
  }
  const used = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(used + 4096).fill(0xff);
  let off = 0;
  for (const p of parts) (out.set(p, off), (off += p.length));
  return out;
}

