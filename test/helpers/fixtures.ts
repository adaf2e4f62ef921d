// The TPM/LUKS fixtures of shared/fixtures/tpm (read-only): headers decompressed into temp files.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { tempDir } from "./bin.js";
import { SHARED } from "./vectors.js";

export const FIXTURES = join(SHARED, "fixtures/tpm");
export const fixtureText = (rel: string): string => readFileSync(join(FIXTURES, rel), "utf8");
export const fixtureBytes = (rel: string): Buffer => readFileSync(join(FIXTURES, rel));
export const headerBytes = (set: string): Uint8Array => new Uint8Array(gunzipSync(readFileSync(join(FIXTURES, set, "hdr.img.gz"))));

/** A writable copy of a fixture header, as a LUKS2 "device" file. */
export function headerFile(set: string): string {
  const p = join(tempDir("hdr-"), "hdr.img");
  writeFileSync(p, headerBytes(set));
  return p;
}
