// What a file handed to `debug verify` is: an SNP report, a TDX quote (v4/v5), a TDREPORT, or Trustee
// evidence JSON (snp, tdx, sample, az-snp-vtpm, az-tdx-vtpm). Decided from the bytes, not the file name.
import { parseJsonBig } from "../json.js";
import { vtpmTeeOf } from "./azure/evidence.js";
import { REPORT_SIZE } from "./snp/layout.js";

export type EvidenceKind = "snp-report" | "tdx-quote" | "tdreport" | "trustee-snp" | "trustee-tdx" | "trustee-sample" | "az-snp-vtpm" | "az-tdx-vtpm" | "unknown";

export function detectKind(b: Uint8Array): { kind: EvidenceKind; json?: unknown } {
  const head = new TextDecoder().decode(b.subarray(0, 64)).trimStart();
  if (head.startsWith("{")) {
    try {
      const j = parseJsonBig(new TextDecoder("utf-8", { fatal: true }).decode(b)) as Record<string, unknown>;
      if (j && typeof j === "object") {
        if ("attestation_report" in j) return { kind: "trustee-snp", json: j };
        const vtpm = vtpmTeeOf(j);
        if (vtpm) return { kind: vtpm, json: j };
        if ("quote" in j) return { kind: "trustee-tdx", json: j };
        if ("svn" in j && "report_data" in j) return { kind: "trustee-sample", json: j };
      }
    } catch {
      /* not JSON after all */
    }
    return { kind: "unknown" };
  }
  if (b.length < 8) return { kind: "unknown" };
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (b.length === REPORT_SIZE && [2, 3, 4, 5].includes(dv.getUint32(0, true))) return { kind: "snp-report" };
  if (b.length === 1024 && b[0] === 0x81) return { kind: "tdreport" };
  if ([4, 5].includes(dv.getUint16(0, true)) && dv.getUint32(4, true) === 0x81) return { kind: "tdx-quote" };
  return { kind: "unknown" };
}
