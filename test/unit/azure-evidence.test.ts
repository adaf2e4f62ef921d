// az-snp-vtpm evidence (Trustee's version 2), verified offline: the real sample from Trustee's verifier tests
// (shared/vectors/azure/az-snp-vtpm-01, with a sidecar of what an independent parser verified), and the
// same evidence with one thing changed at a time, each caught by the check that owns it.
import { describe, expect, it } from "vitest";
import { CvmError } from "../../src/errors.js";
import { b64urlDecode, b64urlEncode } from "../../src/jose/b64.js";
import { parseHclReport } from "../../src/tee/azure/hcl.js";
import { parseAzSnpVtpm, verifyAzSnpVtpm } from "../../src/tee/verify/azure.js";
import { parseQuoteAttest } from "../../src/tpm/attest.js";
import { thrown } from "../helpers/errors.js";
import { vjson } from "../helpers/vectors.js";

const evidence = vjson("azure/az-snp-vtpm-01.evidence.json");
const side = vjson("azure/az-snp-vtpm-01.json");
const expected = Uint8Array.from(Buffer.from(side.parsed.tpm_quote_extraData, "hex"));
const b64u = (s: string) => b64urlDecode(s.replace(/=+$/, ""), "b64");
const now = new Date("2026-01-01T00:00:00Z"); // inside the VCEK's validity (2025-01-28 to 2032-01-28)
const failed = (v: { checks: { name: string; ok: boolean }[] }) => v.checks.filter((c) => !c.ok).map((c) => c.name);

describe("az-snp-vtpm evidence (Trustee's real sample)", () => {
  it("parses as the independent parser did: HCL header, request data, AK, embedded SNP report, the quote", () => {
    const hcl = parseHclReport(b64u(evidence.hcl_report));
    expect(hcl.reportType).toBe(side.parsed.igvm_request_data.report_type);
    expect(hcl.varData.length).toBe(side.parsed.igvm_request_data.variable_data_size);
    expect(Object.keys(hcl.json)).toEqual(side.parsed.var_data_json_keys);
    expect(hcl.userData?.length).toBe(side.parsed.var_data_user_data_hex_len);
    const q = parseQuoteAttest(Uint8Array.from(Buffer.from(evidence.tpm_quote.message, "hex")));
    expect(Buffer.from(q.extraData).toString("hex")).toBe(side.parsed.tpm_quote_extraData);
  });

  it("verifies: quote under HCLAkPub, nonce, PCR digest, user-data, the AK bound in REPORT_DATA, the SNP report under the VCEK to AMD's Milan root", async () => {
    const { v, snp } = await verifyAzSnpVtpm(parseAzSnpVtpm(evidence), now, { expectedReportData: expected });
    expect(failed(v)).toEqual([]);
    expect(v.ok).toBe(true);
    expect(snp?.product).toBe("Milan");
    expect(v.checks.map((c) => c.name)).toEqual(expect.arrayContaining(["quote signed by HCLAkPub", "PCRs = quote's pcrDigest", "quote extraData = expected report data", "SNP REPORT_DATA binds the HCL variable data (the AK)", "SNP report signature", "SNP ARK pinned"]));
  });

  it("one change at a time is caught by its own check", async () => {
    const flip = (h: string, i: number) => h.slice(0, i) + ((parseInt(h[i]!, 16) ^ 1).toString(16)) + h.slice(i + 1);
    const cases: [string, (e: any) => void, string][] = [
      ["a signature bit", (e) => (e.tpm_quote.signature = flip(e.tpm_quote.signature, 10)), "quote signed by HCLAkPub"],
      ["one PCR value", (e) => (e.tpm_quote.pcrs[4] = flip(e.tpm_quote.pcrs[4], 0)), "PCRs = quote's pcrDigest"],
      ["the variable data (another AK)", (e) => {
        const b = b64u(e.hcl_report);
        const i = Buffer.from(b).indexOf('"n":"', Buffer.from(b).indexOf("HCLAkPub")) + 20; // inside the AK's modulus
        b[i] = b[i]! === 0x41 ? 0x42 : 0x41;
        e.hcl_report = b64urlEncode(b);
      }, "SNP REPORT_DATA binds the HCL variable data (the AK)"],
    ];
    for (const [what, change, check] of cases) {
      const e = structuredClone(evidence);
      change(e);
      const { v } = await verifyAzSnpVtpm(parseAzSnpVtpm(e), now, { expectedReportData: expected });
      expect(failed(v), what).toContain(check);
    }
    const other = await verifyAzSnpVtpm(parseAzSnpVtpm(evidence), now, { expectedReportData: new Uint8Array(48) });
    expect(failed(other.v)).toEqual(["quote extraData = expected report data"]);
  });

  it("malformed evidence is a typed TEE error", async () => {
    for (const bad of [{}, { ...evidence, version: 1 }, { ...evidence, tpm_quote: { ...evidence.tpm_quote, pcrs: "x" } }]) {
      expect((thrown(() => parseAzSnpVtpm(bad)) as CvmError).code).toBe("TEE");
    }
    const cut = { ...evidence, hcl_report: b64urlEncode(b64u(evidence.hcl_report).subarray(0, 100)) };
    await expect(verifyAzSnpVtpm(parseAzSnpVtpm(cut), now)).rejects.toMatchObject({ code: "TEE" });
    const notQuote = { ...evidence, tpm_quote: { ...evidence.tpm_quote, message: "ff54434780170000" } };
    await expect(verifyAzSnpVtpm(parseAzSnpVtpm(notQuote), now)).rejects.toMatchObject({ code: "TPM" });
  });
});
