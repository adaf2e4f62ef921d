// Trustee's az-snp-vtpm and az-tdx-vtpm evidence JSON, both ways (reference tee-evidence.md §4.4):
//   { "version": 2,
//     "tpm_quote": { "signature": <hex>, "message": <hex TPMS_ATTEST>, "pcrs": [<hex sha256> × 24] },
//     "hcl_report": <base64url>, "vcek": <base64url DER> | "td_quote": <base64url raw TD quote> }
// base64url is written with "=" padding, as Trustee's own serde (and its real sample) writes it; both forms
// are read. Version 1 has the same fields (Trustee does not check user-data for it).
import { hex } from "../../bytes.js";
import { LayoutError } from "../layout.js";
import type { VtpmParts, VtpmTee } from "./vtpm.js";

export interface AzVtpmEvidence {
  version: number;
  tpm_quote: { signature: string; message: string; pcrs: string[] };
  hcl_report: string;
  vcek?: string;
  td_quote?: string;
}

/** base64url with "=" padding (Trustee's serde_with Base64<UrlSafe>). */
export const b64urlPadded = (b: Uint8Array): string => {
  const s = Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64url");
  return s + "=".repeat((4 - (s.length % 4)) % 4);
};

/** The evidence for a KBS Attestation's primary_evidence, field order as Trustee writes it. */
export function azVtpmEvidenceJson(parts: VtpmParts, collateral: { vcek: Uint8Array } | { tdQuote: Uint8Array }): AzVtpmEvidence {
  const tpm_quote = { signature: hex(parts.quote.signature), message: hex(parts.quote.message), pcrs: parts.quote.pcrs.map(hex) };
  const hcl_report = b64urlPadded(parts.hclBytes);
  return "vcek" in collateral ? { version: 2, tpm_quote, hcl_report, vcek: b64urlPadded(collateral.vcek) } : { version: 2, tpm_quote, hcl_report, td_quote: b64urlPadded(collateral.tdQuote) };
}

const bad = (tee: string, m: string): never => {
  throw new LayoutError(`${tee} evidence`, m);
};

/** base64url with or without padding, or a typed error. */
export function b64urlLoose(s: unknown, tee: string, what: string): Uint8Array {
  if (typeof s !== "string" || !/^[A-Za-z0-9_-]*={0,2}$/.test(s) || s.replace(/=+$/, "").length % 4 === 1) return bad(tee, `${what} is not base64url`);
  return new Uint8Array(Buffer.from(s.replace(/=+$/, ""), "base64url"));
}

export function hexBytes(s: unknown, tee: string, what: string): Uint8Array {
  if (typeof s !== "string" || !/^([0-9a-f]{2})*$/i.test(s)) return bad(tee, `${what} is not hex`);
  return Uint8Array.from(Buffer.from(s, "hex"));
}

/** The evidence JSON's shape for `tee` (version 1 or 2, with its collateral field), or a typed error (TEE). */
export function parseAzVtpm(j: unknown, tee: VtpmTee): AzVtpmEvidence {
  const e = j as AzVtpmEvidence;
  const q = e?.tpm_quote;
  const collateral = tee === "az-snp-vtpm" ? "vcek" : "td_quote";
  // Only a number or a numeric string is converted: Number() of a hostile object calls its toString/valueOf.
  const version = typeof e?.version === "number" || typeof e?.version === "string" ? Number(e.version) : NaN;
  if (!e || typeof e !== "object" || ![1, 2].includes(version) || !q || typeof q !== "object" || typeof q.signature !== "string" || typeof q.message !== "string" || !Array.isArray(q.pcrs) || typeof e.hcl_report !== "string" || typeof e[collateral] !== "string") {
    return bad(tee, `expected version 1 or 2 with tpm_quote {signature, message, pcrs}, hcl_report and ${collateral}`);
  }
  if (q.pcrs.length > 24) bad(tee, `${q.pcrs.length} PCR values (24 at most)`);
  return { ...e, version };
}

/** Which vTPM evidence a JSON object is, by its collateral field. */
export const vtpmTeeOf = (j: Record<string, unknown>): VtpmTee | undefined =>
  "tpm_quote" in j && "hcl_report" in j ? ("vcek" in j ? "az-snp-vtpm" : "td_quote" in j ? "az-tdx-vtpm" : undefined) : undefined;
