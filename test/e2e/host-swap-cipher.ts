// The host's side of e2e boot 10: rewrites a LUKS2 image's header in place so its data segment is
// cipher_null-ecb (keyslots and digest untouched, checksums recomputed), as a host that serves the disk can.
// Run with bun: bun test/e2e/host-swap-cipher.ts IMAGE
import { readFileSync, writeFileSync } from "node:fs";
import { rewriteLuksJson } from "../helpers/luks-tamper.js";

const path = process.argv[2];
if (!path) {
  console.error("usage: bun test/e2e/host-swap-cipher.ts IMAGE");
  process.exit(2);
}
const img = new Uint8Array(readFileSync(path));
let offset = "";
rewriteLuksJson(img, (j) => {
  j.segments["0"].encryption = "cipher_null-ecb";
  offset = j.segments["0"].offset;
});
writeFileSync(path, img);
console.log(offset);
