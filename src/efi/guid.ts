// EFI GUIDs on the wire: the first three fields little-endian, the last two as bytes ("mixed endian"),
// as in EFI_GUID, GPT partition entries and hard-drive device path nodes.
import { CvmError } from "../errors.js";

const TEXT = /^([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})$/i;

export function guidBytes(text: string): Uint8Array {
  const m = TEXT.exec(text);
  if (!m) throw new CvmError("EFI", `not a GUID: ${JSON.stringify(text.slice(0, 40))}`);
  const b = Buffer.from(m.slice(1).join(""), "hex");
  b.subarray(0, 4).reverse();
  b.subarray(4, 6).reverse();
  b.subarray(6, 8).reverse();
  return new Uint8Array(b);
}

export function guidText(bytes: Uint8Array): string {
  const b = Buffer.from(bytes.subarray(0, 16));
  b.subarray(0, 4).reverse();
  b.subarray(4, 6).reverse();
  b.subarray(6, 8).reverse();
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
