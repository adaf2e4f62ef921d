// Offline verification of az-snp-vtpm evidence (Trustee's version 2: a TPM2_Quote, the 24 SHA-256 PCRs, the
// HCL report, the VCEK), the checks Trustee's verifier makes, each reported:
//   the quote is a TPMS_ATTEST quote signed (RSASSA-PKCS1-v1.5, SHA-256) by the AK the HCL report names;
//   its extraData is the expected runtime-data hash and the HCL user-data starts with it;
//   SHA-256 over the listed PCRs is the quote's pcrDigest;
//   the SNP report's REPORT_DATA[0..32] is SHA-256 of the HCL variable data (the AK is the TEE's);
//   the SNP report verifies under the VCEK, chained to the pinned AMD root (verify/snp.ts). No VMPL is
//   required of the paravisor's report.
import { hex } from "../../bytes.js";
import { sha256 } from "../../hash.js";
import { b64urlDecode } from "../../jose/b64.js";
import { parseQuoteAttest } from "../../tpm/attest.js";
import { parseHclReport, HCL_SNP } from "../azure/hcl.js";
import { parseReport } from "../snp/layout.js";
import { LayoutError } from "../layout.js";
import { Verification } from "./result.js";
import { verifySnp, type SnpVerification } from "./snp.js";
import type { Crl } from "./crl.js";
import { buf } from "./x509.js";

export interface AzSnpVtpmEvidence {
  version: number;
  tpm_quote: { signature: string; message: string; pcrs: string[] };
  hcl_report: string;
  vcek: string;
}

/** base64url as Trustee writes it here (with or without "=" padding: its own sample has padding). */
const b64u = (s: string, what: string): Uint8Array => {
  try {
    return b64urlDecode(s.replace(/={1,2}$/, ""), what);
  } catch {
    throw new LayoutError("az-snp-vtpm evidence", `${what} is not base64url`);
  }
};
const hexBytes = (s: unknown, what: string): Uint8Array => {
  if (typeof s !== "string" || !/^([0-9a-f]{2})*$/i.test(s)) throw new LayoutError("az-snp-vtpm evidence", `${what} is not hex`);
  return Uint8Array.from(Buffer.from(s, "hex"));
};

/** The evidence JSON's shape, or a typed error (TEE). */
export function parseAzSnpVtpm(j: unknown): AzSnpVtpmEvidence {
  const e = j as AzSnpVtpmEvidence;
  const q = e?.tpm_quote;
  if (!e || typeof e !== "object" || Number(e.version) !== 2 || !q || typeof q.signature !== "string" || typeof q.message !== "string" || !Array.isArray(q.pcrs) || typeof e.hcl_report !== "string" || typeof e.vcek !== "string") {
    throw new LayoutError("az-snp-vtpm evidence", "expected version 2 with tpm_quote {signature, message, pcrs}, hcl_report and vcek");
  }
  return e;
}

export async function verifyAzSnpVtpm(e: AzSnpVtpmEvidence, now: Date, opts: { expectedReportData?: Uint8Array; crls?: (Uint8Array | Crl)[] } = {}): Promise<{ v: Verification; snp?: SnpVerification }> {
  const v = new Verification();
  const message = hexBytes(e.tpm_quote.message, "tpm_quote.message");
  const signature = hexBytes(e.tpm_quote.signature, "tpm_quote.signature");
  const pcrs = e.tpm_quote.pcrs.map((p, i) => hexBytes(p, `pcr ${i}`));
  const hcl = parseHclReport(b64u(e.hcl_report, "hcl_report"));
  const attest = parseQuoteAttest(message);
  v.pass("quote is a TPMS_ATTEST quote");

  let sigOk = false;
  try {
    const key = await crypto.subtle.importKey("jwk", { kty: "RSA", n: hcl.akPub.n, e: hcl.akPub.e, alg: "RS256", ext: true }, { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, false, ["verify"]);
    sigOk = await crypto.subtle.verify("RSASSA-PKCS1-v1_5", key, buf(signature), buf(message));
  } catch {
    sigOk = false;
  }
  v.check("quote signed by HCLAkPub", sigOk, "signature", "the quote's RSASSA-PKCS1-v1.5 SHA-256 signature does not verify under the AK the HCL report names");
  const digest = sha256(new Uint8Array(Buffer.concat(pcrs)));
  v.check("PCRs = quote's pcrDigest", pcrs.length === 24 && pcrs.every((p) => p.length === 32) && hex(digest) === hex(attest.pcrDigest), "binding", `SHA-256 of the ${pcrs.length} listed PCRs is ${hex(digest).slice(0, 16)}…, the quote says ${hex(attest.pcrDigest).slice(0, 16)}…`);
  if (opts.expectedReportData) {
    v.check("quote extraData = expected report data", hex(attest.extraData) === hex(opts.expectedReportData), "binding", `extraData ${hex(attest.extraData).slice(0, 16)}… is not the expected ${hex(opts.expectedReportData).slice(0, 16)}…`);
  }
  v.check("HCL user-data starts with extraData", (hcl.userData ?? "").toLowerCase().startsWith(hex(attest.extraData)), "binding", "the HCL report's user-data does not carry the quote's extraData");
  if (!v.check("HCL report is SNP", hcl.reportType === HCL_SNP, "malformed", `HCL report type ${hcl.reportType} is not SNP (2)`)) return { v };
  const report = parseReport(hcl.hardware);
  const rd = report.fields.report_data as Uint8Array;
  v.check("SNP REPORT_DATA binds the HCL variable data (the AK)", hex(rd.subarray(0, 32)) === hex(sha256(hcl.varData)), "binding", "REPORT_DATA[0..32] is not SHA-256 of the HCL variable data");
  const snp = await verifySnp(report, { endorsement: b64u(e.vcek, "vcek") }, now, { crls: opts.crls });
  for (const c of snp.v.checks) v.checks.push({ ...c, name: `SNP ${c.name}` });
  return { v, snp };
}
