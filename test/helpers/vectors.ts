// Where the shared, read-only vectors live, and small loaders.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./bin.js";

/** shared/ sits beside the checkout (as in CI); CVM_UNLOCK_SHARED overrides. */
export const SHARED = process.env.CVM_UNLOCK_SHARED ?? join(ROOT, "../shared");
export const VECTORS = join(SHARED, "vectors");
export const vbytes = (rel: string): Uint8Array => new Uint8Array(readFileSync(join(VECTORS, rel)));
export const vjson = (rel: string): any => JSON.parse(readFileSync(join(VECTORS, rel), "utf8"));

export const SNP_VECTORS = ["snp-01-milan-v2", "snp-02-genoa-v3", "snp-03-turin-v5", "snp-04-milan-v3-vlek"] as const;
export const QUOTE_VECTORS = ["tdx-01-quote-v4", "tdx-02-quote-v4-trailing-bytes", "tdx-03-quote-v4-sha384-reportdata", "tdx-04-quote-v5", "tdx-05-quote-v4-zero-padded"] as const;

/** A moment inside every certificate's validity, from the sidecar (the vectors' certificates expire). */
export function validMoment(side: any): Date {
  const ek = side.endorsement_key;
  if (ek?.not_before) return new Date(new Date(ek.not_before).getTime() + 86_400_000);
  return new Date("2026-06-01T00:00:00Z");
}
