// Offline verification of Azure vTPM evidence (Trustee's az-snp-vtpm and az-tdx-vtpm: a TPM2_Quote, the 24
// SHA-256 PCRs, the HCL report, and the VCEK or the TD quote), the checks Trustee's verifiers make, each
// reported:
//   the quote is a TPMS_ATTEST quote signed (RSASSA-PKCS1-v1.5, SHA-256) by the AK the HCL report names;
//   its extraData is the expected runtime-data hash and (version 2) the HCL user-data starts with it;
//   SHA-256 over the listed PCRs is the quote's pcrDigest;
//   the hardware report binds SHA-256 of the HCL variable data (the AK) in its REPORT_DATA[0..32]: the SNP
//   report inside the HCL report (az-snp-vtpm), or the TD quote (az-tdx-vtpm);
//   the SNP report verifies under the VCEK chained to the pinned AMD root (verify/snp.ts), or the TD quote
//   under the PCK chain to Intel's root (verify/tdx.ts). No VMPL is required of the paravisor's report.
import { equalBytes, hex } from "../../bytes.js";
import { sha256 } from "../../hash.js";
import { parseQuoteAttest } from "../../tpm/attest.js";
import { b64urlLoose, hexBytes, parseAzVtpm, type AzVtpmEvidence } from "../azure/evidence.js";
import { akSigned, HCL_SNP, HCL_TDX, parseHclReport, type HclReport } from "../azure/hcl.js";
import type { VtpmTee } from "../azure/vtpm.js";
import { parseReport, type SnpReport } from "../snp/layout.js";
import { parseQuote, type Quote } from "../tdx/layout.js";
import type { Crl } from "./crl.js";
import { Verification } from "./result.js";
import { verifySnp, type SnpVerification } from "./snp.js";
import { verifyTdx } from "./tdx.js";

export { parseAzVtpm };
export type { AzVtpmEvidence };

export interface AzVerification {
  v: Verification;
  hcl: HclReport;
  pcrs: Uint8Array[];
  snp?: SnpVerification;
  snpReport?: SnpReport;
  tdQuote?: Quote;
}

export interface AzVerifyOptions {
  expectedReportData?: Uint8Array;
  crls?: (Uint8Array | Crl)[];
}

export async function verifyAzVtpm(e: AzVtpmEvidence, tee: VtpmTee, now: Date, opts: AzVerifyOptions = {}): Promise<AzVerification> {
  const v = new Verification();
  const message = hexBytes(e.tpm_quote.message, tee, "tpm_quote.message");
  const signature = hexBytes(e.tpm_quote.signature, tee, "tpm_quote.signature");
  const pcrs = e.tpm_quote.pcrs.map((p, i) => hexBytes(p, tee, `pcr ${i}`));
  const hcl = parseHclReport(b64urlLoose(e.hcl_report, tee, "hcl_report"));
  const attest = parseQuoteAttest(message);
  v.pass("quote is a TPMS_ATTEST quote");
  v.check("quote signed by HCLAkPub", await akSigned(hcl, message, signature), "signature", "the quote's RSASSA-PKCS1-v1.5 SHA-256 signature does not verify under the AK the HCL report names");
  const digest = sha256(new Uint8Array(Buffer.concat(pcrs)));
  v.check("PCRs = quote's pcrDigest", pcrs.length === 24 && pcrs.every((p) => p.length === 32) && equalBytes(digest, attest.pcrDigest), "binding", `SHA-256 of the ${pcrs.length} listed PCRs is ${hex(digest).slice(0, 16)}…, the quote says ${hex(attest.pcrDigest).slice(0, 16)}…`);
  if (opts.expectedReportData) {
    v.check("quote extraData = expected report data", equalBytes(attest.extraData, opts.expectedReportData), "binding", `extraData ${hex(attest.extraData).slice(0, 16)}… is not the expected ${hex(opts.expectedReportData).slice(0, 16)}…`);
  }
  if (Number(e.version) >= 2) {
    v.check("HCL user-data starts with extraData", (hcl.userData ?? "").toLowerCase().startsWith(hex(attest.extraData)), "binding", "the HCL report's user-data does not carry the quote's extraData");
  }
  const varHash = hex(sha256(hcl.varData));
  const out: AzVerification = { v, hcl, pcrs };
  if (tee === "az-snp-vtpm") {
    if (!v.check("HCL report is SNP", hcl.reportType === HCL_SNP, "malformed", `HCL report type ${hcl.reportType} is not SNP (2)`)) return out;
    const report = parseReport(hcl.hardware);
    out.snpReport = report;
    v.check("SNP REPORT_DATA binds the HCL variable data (the AK)", hex((report.fields.report_data as Uint8Array).subarray(0, 32)) === varHash, "binding", "REPORT_DATA[0..32] is not SHA-256 of the HCL variable data");
    const snp = await verifySnp(report, { endorsement: b64urlLoose(e.vcek, tee, "vcek") }, now, { crls: opts.crls });
    for (const c of snp.v.checks) v.checks.push({ ...c, name: `SNP ${c.name}` });
    out.snp = snp;
    return out;
  }
  if (!v.check("HCL report is TDX", hcl.reportType === HCL_TDX, "malformed", `HCL report type ${hcl.reportType} is not TDX (4)`)) return out;
  const q = parseQuote(b64urlLoose(e.td_quote, tee, "td_quote"));
  out.tdQuote = q;
  v.check("TD quote REPORTDATA binds the HCL variable data (the AK)", hex((q.body.report_data as Uint8Array).subarray(0, 32)) === varHash, "binding", "the TD quote's REPORTDATA[0..32] is not SHA-256 of the HCL variable data");
  const tdx = await verifyTdx(q, now, { crls: opts.crls });
  for (const c of tdx.v.checks) v.checks.push({ ...c, name: `TDX ${c.name}` });
  return out;
}
