// Every SNP and TDX vector parses to its sidecar's fields, round-trips through the layout tables, and
// verifies offline; tampering, swapped certificates and truncation fail with a typed reason.
import { describe, expect, it } from "vitest";
import { describeQuote, describeSnp, describeTdReport } from "../../src/tee/describe.js";
import { LayoutError } from "../../src/tee/layout.js";
import { encodeCertTable, encodeReport, guidOf, parseCertTable, parseReport } from "../../src/tee/snp/layout.js";
import { parseQuote, parseTdReport } from "../../src/tee/tdx/layout.js";
import { pemBlocks } from "../../src/tee/verify/der.js";
import { verifySnp } from "../../src/tee/verify/snp.js";
import { isCa, verifyTdx } from "../../src/tee/verify/tdx.js";
import { asCvmError } from "../../src/errors.js";
import { parseCertificate } from "../../src/tee/verify/x509.js";
import { QUOTE_VECTORS, SNP_VECTORS, validMoment, vbytes, vjson } from "../helpers/vectors.js";

const ekFile = (id: string) => `snp/${id}.${id.includes("vlek") ? "vlek" : "vcek"}.der`;
/** Keeps the keys of `theirs` that `ours` also has, recursively. */
function pick(ours: any, theirs: any): any {
  if (theirs === null || typeof theirs !== "object" || Array.isArray(theirs)) return ours;
  return Object.fromEntries(Object.keys(theirs).filter((k) => ours && k in ours).map((k) => [k, pick(ours[k], theirs[k])]));
}
const quoteNow = (q: ReturnType<typeof parseQuote>) => new Date(Math.max(...pemBlocks(q.pckChainPem).map((d) => parseCertificate(d).notBefore.getTime())) + 86_400_000);

describe.each(SNP_VECTORS)("SNP vector %s", (id) => {
  const side = vjson(`snp/${id}.json`);
  const bin = vbytes(`snp/${id}.report.bin`);
  const ek = vbytes(ekFile(id));

  it("parses to the sidecar's fields", () => {
    const r = parseReport(bin);
    const view = describeSnp(r, r.product ?? "Milan");
    const expected = { ...side.parsed };
    if (r.version === 2) delete expected.generation; // v2 does not say its product
    const mine = pick(view, expected);
    expect(mine).toEqual(pick(expected, mine));
    expect(Object.keys(mine).length).toBe(Object.keys(expected).length);
  });

  it("round-trips through the layout table", () => {
    const r = parseReport(bin);
    expect(Buffer.from(encodeReport(r)).equals(Buffer.from(bin))).toBe(true);
  });

  it("verifies: signature, chain to the pinned ARK, TCB and hwID", async () => {
    const res = await verifySnp(parseReport(bin), { endorsement: ek }, validMoment(side));
    expect(res.v.firstFailure).toBeUndefined();
    expect(res.v.ok).toBe(true);
    expect(res.v.checks.length).toBeGreaterThanOrEqual(9);
  });

  it("a flipped byte in the signed region fails the signature", async () => {
    for (const off of [0x08, 0x50, 0x90, 0x180, 0x2a0, 0x2e8]) {
      const bad = bin.slice();
      bad[off]! ^= 1;
      const res = await verifySnp(parseReport(bad), { endorsement: ek }, validMoment(side));
      expect(res.v.ok).toBe(false);
      expect(res.v.checks.find((c) => c.name === "report signature")?.ok).toBe(false);
    }
  });

  it("a swapped certificate fails with a typed reason", async () => {
    const other = SNP_VECTORS.find((x) => x !== id && !x.includes("vlek") && !id.includes("vlek")) ?? SNP_VECTORS.find((x) => x !== id)!;
    const res = await verifySnp(parseReport(bin), { endorsement: vbytes(ekFile(other)) }, validMoment(side));
    expect(res.v.ok).toBe(false);
    expect(res.v.checks.find((c) => c.name === "report signature")?.reason).toBe("signature");
  });

  it("an expired or not-yet-valid certificate fails as expired", async () => {
    const res = await verifySnp(parseReport(bin), { endorsement: ek }, new Date("2000-01-01T00:00:00Z"));
    expect(res.v.firstFailure?.reason).toBe("expired");
  });

  it("truncated, padded or re-versioned files are typed layout errors", () => {
    expect(() => parseReport(bin.subarray(0, 1000))).toThrow(LayoutError);
    expect(() => parseReport(new Uint8Array([...bin, 0]))).toThrow(/exactly 1184/);
    const v9 = bin.slice();
    v9[0] = 9;
    expect(() => parseReport(v9)).toThrow(/unknown version 9/);
    const res = bin.slice();
    res[0x4c] = 1;
    expect(() => parseReport(res)).toThrow(/reserved byte at 0x4c/);
  });
});

describe("SNP VLEK and ARK pinning", () => {
  it("a foreign ARK is refused even when the chain is self-consistent", async () => {
    const id = "snp-02-genoa-v3";
    const [, milanArk] = pemBlocks(new TextDecoder().decode(vbytes("snp/ca/ask_ark_milan.pem")));
    const [genoaAsk] = pemBlocks(new TextDecoder().decode(vbytes("snp/ca/ask_ark_genoa.pem")));
    const res = await verifySnp(parseReport(vbytes(`snp/${id}.report.bin`)), { endorsement: vbytes(ekFile(id)), ask: genoaAsk, ark: milanArk }, validMoment(vjson(`snp/${id}.json`)));
    expect(res.v.checks.find((c) => c.name === "ARK pinned")?.ok).toBe(false);
    expect(res.v.ok).toBe(false);
  });
});

describe("SNP certificate table", () => {
  it("round-trips VCEK/ASK/ARK entries by GUID", () => {
    const [ask, ark] = pemBlocks(new TextDecoder().decode(vbytes("snp/ca/ask_ark_milan.pem")));
    const vcek = vbytes("snp/snp-01-milan-v2.vcek.der");
    const table = encodeCertTable([{ guid: guidOf("VCEK"), data: vcek }, { guid: guidOf("ASK"), data: ask! }, { guid: guidOf("ARK"), data: ark! }]);
    const parsed = parseCertTable(table);
    expect(parsed.map((e) => e.kind)).toEqual(["VCEK", "ASK", "ARK"]);
    expect(Buffer.from(parsed[0]!.data).equals(Buffer.from(vcek))).toBe(true);
    expect(Buffer.from(encodeCertTable(parsed)).equals(Buffer.from(table))).toBe(true);
    expect(parseCertTable(new Uint8Array(0))).toEqual([]);
    expect(parseCertTable(new Uint8Array(24))).toEqual([]);
  });
  it("rejects entries outside the table and a missing terminator", () => {
    const t = encodeCertTable([{ guid: guidOf("VCEK"), data: new Uint8Array([1, 2, 3]) }]);
    const bad = t.slice();
    new DataView(bad.buffer).setUint32(20, 999, true);
    expect(() => parseCertTable(bad)).toThrow(/outside the table/);
    expect(() => parseCertTable(t.subarray(0, 30))).toThrow(/terminator/);
  });
});

describe.each(QUOTE_VECTORS)("TDX vector %s", (id) => {
  const side = vjson(`tdx/${id}.json`);
  const bin = vbytes(`tdx/${id}.bin`);

  it("parses to the sidecar's fields", () => {
    const q = parseQuote(bin);
    const mine = pick(describeQuote(q), side.parsed);
    expect(mine).toEqual(pick(side.parsed, mine));
    expect(Object.keys(mine).length).toBeGreaterThanOrEqual(13);
    expect(q.trimmed.length).toBe(side.parsed.total_size - side.parsed.bytes_after_signature_data);
  });

  it("verifies: quote signature, QE report, binding, PCK chain to Intel's root", async () => {
    const q = parseQuote(bin);
    const res = await verifyTdx(q, quoteNow(q));
    expect(res.v.firstFailure).toBeUndefined();
    expect(res.chain.map((c) => c.subjectCn)).toEqual(side.parsed.pck_cert_chain_subjects.map((s: string) => s.replace(/^.*CN=/, "")));
  });

  it("a flipped byte in the body fails the quote signature; in the QE report, its signature", async () => {
    const q0 = parseQuote(bin);
    const bodyByte = q0.version === 5 ? 54 + 520 : 48 + 520;
    const bad = bin.slice();
    bad[bodyByte]! ^= 1;
    const q = parseQuote(bad);
    expect((await verifyTdx(q, quoteNow(q))).v.firstFailure?.name).toBe("quote signature");
    const bad2 = bin.slice();
    bad2[q0.signed.length + 4 + 134 + 10]! ^= 1; // inside the QE report
    const q2 = parseQuote(bad2);
    expect((await verifyTdx(q2, quoteNow(q2))).v.firstFailure?.reason).toBe("signature");
  });

  it("truncation anywhere is a typed layout error (a TEE error, exit 7)", () => {
    for (const n of [10, 47, 600, q0len(bin) - 1]) expect(() => parseQuote(bin.subarray(0, n))).toThrow(LayoutError);
    try {
      parseQuote(bin.subarray(0, 47));
    } catch (e) {
      expect(asCvmError(e)).toMatchObject({ code: "TEE", exitCode: 7 });
    }
  });

  it("checks the QE's identity (Intel's MRSIGNER, the TD QE) and the chain's basicConstraints", async () => {
    const q = parseQuote(bin);
    const res = await verifyTdx(q, quoteNow(q));
    const names = res.v.checks.map((c) => c.name);
    expect(names).toEqual(expect.arrayContaining(["QE is Intel's", "QE is the TD quoting enclave", `${res.chain[0]!.subjectCn} is not a CA`, `${res.chain[1]!.subjectCn} is a CA`]));
    // another enclave's report (the QE fields as the verifier sees them): refused with the reason
    const other = { ...q, qeReport: { ...q.qeReport, isv_prod_id: 1 } };
    expect((await verifyTdx(other, quoteNow(q))).v.checks.find((c) => !c.ok)).toMatchObject({ name: "QE is the TD quoting enclave", reason: "qe-identity" });
    const signer = { ...q, qeReport: { ...q.qeReport, mr_signer: new Uint8Array(32) } };
    expect((await verifyTdx(signer, quoteNow(q))).v.checks.find((c) => !c.ok)).toMatchObject({ name: "QE is Intel's", reason: "qe-identity" });
    expect(isCa(res.chain[0]!)).toBe(false);
    expect(isCa(res.chain[res.chain.length - 1]!)).toBe(true);
  });
});

function q0len(bin: Uint8Array) {
  return parseQuote(bin).trimmed.length;
}

describe("TDREPORT (tdx-06-tdreport-v1)", () => {
  it("parses to the sidecar's fields", () => {
    const side = vjson("tdx/tdx-06-tdreport-v1.json");
    const mine = pick(describeTdReport(parseTdReport(vbytes("tdx/tdx-06-tdreport-v1.bin"))), side.parsed);
    expect(mine).toEqual(pick(side.parsed, mine));
    expect(Object.keys(mine).length).toBe(Object.keys(side.parsed).length);
  });
});

describe("TDX field tables round-trip", () => {
  it.each(QUOTE_VECTORS)("%s: header, body and QE report re-encode to the same bytes", async (id) => {
    const { encode, reservedRanges } = await import("../../src/tee/layout.js");
    const { QUOTE_HEADER, BODY_V10, BODY_V15, QE_REPORT } = await import("../../src/tee/tdx/layout.js");
    const bin = vbytes(`tdx/${id}.bin`);
    const q = parseQuote(bin);
    const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));
    expect(same(encode(QUOTE_HEADER, q.header), bin.subarray(0, 48))).toBe(true);
    const bodyOff = q.version === 5 ? 54 : 48;
    const layoutOf = q.bodyType === 3 ? BODY_V15 : BODY_V10;
    expect(same(encode(layoutOf, q.body), bin.subarray(bodyOff, bodyOff + layoutOf.size))).toBe(true);
    // The QE report's reserved ranges are not zero in real quotes, so compare only the bytes the table covers.
    const qe = new Uint8Array(q.qeReportRaw);
    for (const [a, b] of reservedRanges(QE_REPORT)) qe.fill(0, a, b);
    expect(same(encode(QE_REPORT, q.qeReport), qe)).toBe(true);
  });
  it("TDREPORT re-encodes its fields to the same bytes where the table covers them", async () => {
    const { encode, reservedRanges } = await import("../../src/tee/layout.js");
    const { TDREPORT } = await import("../../src/tee/tdx/layout.js");
    const bin = vbytes("tdx/tdx-06-tdreport-v1.bin");
    const enc = encode(TDREPORT, parseTdReport(bin));
    const covered = new Uint8Array(bin);
    for (const [a, b] of reservedRanges(TDREPORT)) covered.fill(0, a, b);
    expect(Buffer.from(enc).equals(Buffer.from(covered))).toBe(true);
  });
});
