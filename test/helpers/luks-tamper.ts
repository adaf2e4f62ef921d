// What a hostile host can do to a LUKS2 header it serves: rewrite the JSON of both copies and recompute
// their SHA-256 checksums (no key is needed for that). Used by tests and by the e2e cipher-swap boot.
import { createHash } from "node:crypto";

const be64 = (b: Uint8Array, off: number) => Number(new DataView(b.buffer, b.byteOffset + off, 8).getBigUint64(0, false));

/** Rewrites the JSON area of both header copies in place with mutate(json), checksums recomputed. */
export function rewriteLuksJson(img: Uint8Array, mutate: (j: any) => void): Uint8Array {
  const hdrSize = be64(img, 8);
  for (const off of [0, hdrSize]) {
    const area = img.subarray(off + 4096, off + hdrSize);
    const end = area.indexOf(0);
    const j = JSON.parse(new TextDecoder().decode(area.subarray(0, end < 0 ? area.length : end)));
    mutate(j);
    const text = new TextEncoder().encode(JSON.stringify(j));
    if (text.length >= area.length) throw new Error("rewritten JSON does not fit the area");
    area.fill(0);
    area.set(text);
    img.fill(0, off + 448, off + 512);
    const sum = createHash("sha256").update(img.subarray(off, off + hdrSize)).digest();
    img.set(sum, off + 448);
  }
  return img;
}
