// Azure vTPM evidence verified offline: Trustee's real az-snp-vtpm sample (shared/vectors/azure/az-snp-vtpm-01,
// with a sidecar of what an independent parser verified) and Trustee's real az-tdx-vtpm sample
// (test/vectors/trustee-az-tdx-vtpm, version 1), each with one thing changed at a time and caught by the
// check that owns it; and the evidence builder, which must write the shared sample back byte for byte.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { CvmError } from "../../src/errors.js";
import { b64urlDecode, b64urlEncode } from "../../src/jose/b64.js";
import { azVtpmEvidenceJson, b64urlPadded } from "../../src/tee/azure/evidence.js";
import { parseHclReport } from "../../src/tee/azure/hcl.js";
import { detectKind } from "../../src/tee/kind.js";
import { parseAzVtpm, verifyAzVtpm } from "../../src/tee/verify/azure.js";
import { parseQuoteAttest } from "../../src/tpm/attest.js";
import { ROOT } from "../helpers/bin.js";
import { thrown } from "../helpers/errors.js";
import { vjson } from "../helpers/vectors.js";

const evidence = vjson("azure/az-snp-vtpm-01.evidence.json");
const side = vjson("azure/az-snp-vtpm-01.json");
const tdxRaw = readFileSync(join(ROOT, "test/vectors/trustee-az-tdx-vtpm/evidence-v1.json"), "utf8");
const tdx = JSON.parse(tdxRaw);
const expected = Uint8Array.from(Buffer.from(side.parsed.tpm_quote_extraData, "hex"));
const b64u = (s: string) => b64urlDecode(s.replace(/=+$/, ""), "b64");
const now = new Date("2026-01-01T00:00:00Z"); // inside the VCEK's (2025-01-28 to 2032-01-28) and the PCK's validity
const failed = (v: { checks: { name: string; ok: boolean }[] }) => v.checks.filter((c) => !c.ok).map((c) => c.name);
const flip = (h: string, i: number) => h.slice(0, i) + (parseInt(h[i]!, 16) ^ 1).toString(16) + h.slice(i + 1);
/** One byte of base64url-encoded bytes changed at `at` (a negative index counts from the end). */
const touchB64 = (s: string, at: (b: Uint8Array) => number) => {
  const b = b64u(s);
  const i = at(b);
  b[i] = b[i]! ^ 0x01;
  return b64urlPadded(b);
};

describe("az-snp-vtpm evidence (Trustee's real sample)", () => {
  it("parses as the independent parser did: HCL header, request data, AK, embedded SNP report, the quote", () => {
    const hcl = parseHclReport(b64u(evidence.hcl_report));
    expect(hcl.reportType).toBe(side.parsed.igvm_request_data.report_type);
    expect(hcl.varData.length).toBe(side.parsed.igvm_request_data.variable_data_size);
    expect(Object.keys(hcl.json)).toEqual(side.parsed.var_data_json_keys);
    expect(hcl.userData?.length).toBe(side.parsed.var_data_user_data_hex_len);
    const q = parseQuoteAttest(Uint8Array.from(Buffer.from(evidence.tpm_quote.message, "hex")));
    expect(Buffer.from(q.extraData).toString("hex")).toBe(side.parsed.tpm_quote_extraData);
    expect(detectKind(new TextEncoder().encode(JSON.stringify(evidence))).kind).toBe("az-snp-vtpm");
  });

  it("verifies: quote under HCLAkPub, nonce, PCR digest, user-data, the AK bound in REPORT_DATA, the SNP report under the VCEK to AMD's Milan root", async () => {
    const { v, snp } = await verifyAzVtpm(parseAzVtpm(evidence, "az-snp-vtpm"), "az-snp-vtpm", now, { expectedReportData: expected });
    expect(failed(v)).toEqual([]);
    expect(v.ok).toBe(true);
    expect(snp?.product).toBe("Milan");
    expect(v.checks.map((c) => c.name)).toEqual(expect.arrayContaining(["quote signed by HCLAkPub", "PCRs = quote's pcrDigest", "quote extraData = expected report data", "HCL user-data starts with extraData", "SNP REPORT_DATA binds the HCL variable data (the AK)", "SNP report signature", "SNP ARK pinned"]));
  });

  it("one change at a time is caught by its own check", async () => {
    const cases: [string, (e: any) => void, string][] = [
      ["a signature bit", (e) => (e.tpm_quote.signature = flip(e.tpm_quote.signature, 10)), "quote signed by HCLAkPub"],
      ["a quote byte (the clock)", (e) => (e.tpm_quote.message = flip(e.tpm_quote.message, 120)), "quote signed by HCLAkPub"],
      ["one PCR value", (e) => (e.tpm_quote.pcrs[4] = flip(e.tpm_quote.pcrs[4], 0)), "PCRs = quote's pcrDigest"],
      ["the variable data (another AK)", (e) => (e.hcl_report = touchB64(e.hcl_report, (b) => Buffer.from(b).indexOf('"n":"', Buffer.from(b).indexOf("HCLAkPub")) + 20)), "SNP REPORT_DATA binds the HCL variable data (the AK)"],
      ["the user-data (another nonce)", (e) => (e.hcl_report = touchB64(e.hcl_report, (b) => Buffer.from(b).indexOf('"user-data":"') + 14)), "HCL user-data starts with extraData"],
      ["the SNP report's measurement", (e) => (e.hcl_report = touchB64(e.hcl_report, () => 0x20 + 0x90)), "SNP report signature"],
      ["a VCEK signature byte", (e) => (e.vcek = touchB64(e.vcek, (b) => b.length - 3)), "SNP VCEK signed by SEV-Milan"],
    ];
    for (const [what, change, check] of cases) {
      const e = structuredClone(evidence);
      change(e);
      const { v } = await verifyAzVtpm(parseAzVtpm(e, "az-snp-vtpm"), "az-snp-vtpm", now, { expectedReportData: expected });
      expect(failed(v), what).toContain(check);
    }
    const other = await verifyAzVtpm(parseAzVtpm(evidence, "az-snp-vtpm"), "az-snp-vtpm", now, { expectedReportData: new Uint8Array(48) });
    expect(failed(other.v)).toEqual(["quote extraData = expected report data"]);
  });

  it("every signed byte: a change anywhere in the TPMS_ATTEST or in the SNP report's signed part fails its signature check", async () => {
    const { akSigned } = await import("../../src/tee/azure/hcl.js");
    const { verifySnp } = await import("../../src/tee/verify/snp.js");
    const { parseReport, SIGNED_SIZE } = await import("../../src/tee/snp/layout.js");
    const hcl = parseHclReport(b64u(evidence.hcl_report));
    const msg = Uint8Array.from(Buffer.from(evidence.tpm_quote.message, "hex"));
    const sig = Uint8Array.from(Buffer.from(evidence.tpm_quote.signature, "hex"));
    expect(await akSigned(hcl, msg, sig)).toBe(true);
    for (let i = 0; i < msg.length; i++) {
      const m = msg.slice();
      m[i]! ^= 0x01;
      expect(await akSigned(hcl, m, sig), `TPMS_ATTEST byte ${i}`).toBe(false);
    }
    const vcek = b64u(evidence.vcek);
    let checked = 0;
    for (let i = 0; i < SIGNED_SIZE; i++) {
      const r = hcl.hardware.slice();
      r[i]! ^= 0x01;
      let report;
      try {
        report = parseReport(r);
      } catch {
        continue; // a byte the layout itself refuses (a reserved field): not a report any verifier accepts
      }
      const res = await verifySnp(report, { endorsement: vcek }, now);
      expect(res.v.checks.find((c) => c.name === "report signature")?.ok, `SNP report byte ${i}`).not.toBe(true);
      checked++;
    }
    // Only reserved bytes (which the layout refuses to parse when non-zero) are skipped.
    expect(checked).toBeGreaterThanOrEqual(469); // 672 signed bytes, 203 of them reserved
  }, 120_000);

  it("the builder writes the sample back byte for byte (field order, hex, padded base64url)", () => {
    const parts = {
      hclBytes: b64u(evidence.hcl_report),
      hcl: parseHclReport(b64u(evidence.hcl_report)),
      quote: { message: Buffer.from(evidence.tpm_quote.message, "hex"), signature: Buffer.from(evidence.tpm_quote.signature, "hex"), pcrs: evidence.tpm_quote.pcrs.map((p: string) => Buffer.from(p, "hex")) },
    };
    const raw = readFileSync(join(ROOT, "../shared/vectors/azure/az-snp-vtpm-01.evidence.json"), "utf8");
    expect(JSON.stringify(azVtpmEvidenceJson(parts, { vcek: b64u(evidence.vcek) }), null, 2)).toBe(JSON.stringify(JSON.parse(raw), null, 2));
    expect(JSON.stringify(azVtpmEvidenceJson(parts, { vcek: b64u(evidence.vcek) }))).toBe(JSON.stringify(evidence));
  });

  it("malformed evidence is a typed TEE error", async () => {
    for (const bad of [{}, { ...evidence, version: 3 }, { ...evidence, version: undefined }, { ...evidence, version: { toString: false } }, { ...evidence, version: [2] }, { ...evidence, tpm_quote: { ...evidence.tpm_quote, pcrs: "x" } }, { ...evidence, vcek: undefined }]) {
      expect((thrown(() => parseAzVtpm(bad, "az-snp-vtpm")) as CvmError).code).toBe("TEE");
    }
    expect((thrown(() => parseAzVtpm(evidence, "az-tdx-vtpm")) as CvmError).message).toMatch(/td_quote/);
    const cut = { ...evidence, hcl_report: b64urlEncode(b64u(evidence.hcl_report).subarray(0, 100)) };
    await expect(verifyAzVtpm(parseAzVtpm(cut, "az-snp-vtpm"), "az-snp-vtpm", now)).rejects.toMatchObject({ code: "TEE" });
    const notB64 = { ...evidence, hcl_report: "not base64url!" };
    await expect(verifyAzVtpm(parseAzVtpm(notB64, "az-snp-vtpm"), "az-snp-vtpm", now)).rejects.toMatchObject({ code: "TEE" });
    const notQuote = { ...evidence, tpm_quote: { ...evidence.tpm_quote, message: "ff54434780170000" } };
    await expect(verifyAzVtpm(parseAzVtpm(notQuote, "az-snp-vtpm"), "az-snp-vtpm", now)).rejects.toMatchObject({ code: "TPM" });
  });
});

describe("az-tdx-vtpm evidence (Trustee's real sample, version 1)", () => {
  const nonce = new TextEncoder().encode("challenge"); // Trustee's test quote carries this as extraData

  it("is recognised by its td_quote and verifies: quote, nonce, PCRs, the TD quote binding the AK, the TD quote to Intel's root", async () => {
    expect(detectKind(new TextEncoder().encode(tdxRaw)).kind).toBe("az-tdx-vtpm");
    const { v, tdQuote, hcl } = await verifyAzVtpm(parseAzVtpm(tdx, "az-tdx-vtpm"), "az-tdx-vtpm", now, { expectedReportData: nonce });
    expect(failed(v)).toEqual([]);
    expect(hcl.reportType).toBe(4);
    expect(tdQuote?.header.version).toBe(4);
    expect(v.checks.map((c) => c.name)).toEqual(expect.arrayContaining(["TD quote REPORTDATA binds the HCL variable data (the AK)", "TDX quote signature", "TDX Intel root pinned", "TDX QE is the TD quoting enclave"]));
    // Version 1 carries no user-data promise: that check is not made for it.
    expect(v.checks.map((c) => c.name)).not.toContain("HCL user-data starts with extraData");
  });

  it("one change at a time is caught by its own check", async () => {
    const cases: [string, (e: any) => void, string][] = [
      ["a signature bit", (e) => (e.tpm_quote.signature = flip(e.tpm_quote.signature, 7)), "quote signed by HCLAkPub"],
      ["one PCR value", (e) => (e.tpm_quote.pcrs[11] = flip(e.tpm_quote.pcrs[11], 3)), "PCRs = quote's pcrDigest"],
      ["the variable data", (e) => (e.hcl_report = touchB64(e.hcl_report, (b) => Buffer.from(b).indexOf('"n":"', Buffer.from(b).indexOf("HCLAkPub")) + 30)), "TD quote REPORTDATA binds the HCL variable data (the AK)"],
      ["the TD quote's MRTD", (e) => (e.td_quote = touchB64(e.td_quote, () => 48 + 136)), "TDX quote signature"],
    ];
    for (const [what, change, check] of cases) {
      const e = structuredClone(tdx);
      change(e);
      const { v } = await verifyAzVtpm(parseAzVtpm(e, "az-tdx-vtpm"), "az-tdx-vtpm", now, { expectedReportData: nonce });
      expect(failed(v), what).toContain(check);
    }
    const v2 = { ...tdx, version: 2 };
    const r = await verifyAzVtpm(parseAzVtpm(v2, "az-tdx-vtpm"), "az-tdx-vtpm", now, { expectedReportData: nonce });
    expect(failed(r.v)).toEqual(["HCL user-data starts with extraData"]); // its user-data is zeros, not "challenge"
  });
});
