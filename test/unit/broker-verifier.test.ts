// The dev broker's evidence checks use the agent's verifiers plus the REPORT_DATA binding and the policy.
// Real vectors whose REPORT_DATA has Trustee's shape (48-byte digest, 16 zero bytes) stand in for fresh
// evidence: snp-03 (Turin v5) and tdx-03.
import { describe, expect, it } from "vitest";
import { snpEvidenceJson } from "../../src/tee/snp/evidence.js";
import { encodeCertTable, guidOf, parseCertTable, parseReport } from "../../src/tee/snp/layout.js";
import { verifyEvidence } from "../../tools/dev-broker/verifier.js";
import { releaseRefusal } from "../../tools/dev-broker/server.js";
import { validateVtpm } from "../../src/tee/verify/policy.js";
import { replayCcel } from "../../tools/dev-broker/verifier.js";
import { trimCcel } from "../../src/measured-boot/ccel.js";
import { ccel } from "../helpers/ccel.js";
import { quoteFromJson } from "../../src/tee/tdx/evidence.js";
import { validateTdx } from "../../src/tee/verify/policy.js";
import { hex } from "../../src/tee/layout.js";
import { vbytes, vjson } from "../helpers/vectors.js";

const snpReport = parseReport(vbytes("snp/snp-03-turin-v5.report.bin"));
const vcek = vbytes("snp/snp-03-turin-v5.vcek.der");
const snpEv = snpEvidenceJson(snpReport, parseCertTable(encodeCertTable([{ guid: guidOf("VCEK"), data: vcek }])), "Turin");
const snpDigest = (snpReport.fields.report_data as Uint8Array).slice(0, 48);
const snpNow = new Date("2026-01-01T00:00:00Z");
const quote = vbytes("tdx/tdx-03-quote-v4-sha384-reportdata.bin");
const tdxEv = { cc_eventlog: null, quote: Buffer.from(quote).toString("base64") };
const tdxDigest = Buffer.from(vjson("tdx/tdx-03-quote-v4-sha384-reportdata.json").parsed.body.report_data, "hex").subarray(0, 48);
const tdxNow = new Date("2026-06-01T00:00:00Z");

describe("dev broker evidence checks", () => {
  it("accepts verified SNP evidence bound to the digest, and names its claims", async () => {
    const v = await verifyEvidence("snp", JSON.parse(JSON.stringify(snpEv, (_k, x) => (typeof x === "bigint" ? Number(x) : x))), snpDigest, {}, snpNow);
    expect(v.ok, JSON.stringify(v)).toBe(true);
    if (v.ok) expect(v.claims.measurement).toBe(vjson("snp/snp-03-turin-v5.json").parsed.measurement);
  });

  it("refuses SNP evidence for another nonce, without a VCEK, or outside the policy", async () => {
    const plain = JSON.parse(JSON.stringify(snpEv, (_k, x) => (typeof x === "bigint" ? Number(x) : x)));
    const other = await verifyEvidence("snp", plain, new Uint8Array(48), {}, snpNow);
    expect(other.ok === false && other.reasons).toContain("REPORT_DATA does not bind the nonce and key");
    const noCert = await verifyEvidence("snp", { ...plain, cert_chain: null }, snpDigest, {}, snpNow);
    expect(noCert.ok === false && noCert.reasons.join()).toMatch(/no VCEK certificate/);
    const wrongM = await verifyEvidence("snp", plain, snpDigest, { snp: { measurements: ["00".repeat(48)] } }, snpNow);
    expect(wrongM.ok === false && wrongM.reasons.join()).toMatch(/not an expected one/);
    const minTcb = await verifyEvidence("snp", plain, snpDigest, { snp: { min_tcb: { microcode: 200 } } }, snpNow);
    expect(minTcb.ok === false && minTcb.reasons.join()).toMatch(/microcode 71 below the minimum 200/);
    const tampered = structuredClone(plain);
    tampered.attestation_report.measurement[0] ^= 1;
    const t = await verifyEvidence("snp", tampered, snpDigest, {}, snpNow);
    expect(t.ok === false && t.reasons.join()).toMatch(/report signature/);
  });

  it("accepts verified TDX evidence bound to the digest; refuses a wrong MRTD", async () => {
    const v = await verifyEvidence("tdx", tdxEv, tdxDigest, {}, tdxNow);
    expect(v.ok, JSON.stringify(v)).toBe(true);
    const w = await verifyEvidence("tdx", tdxEv, tdxDigest, { tdx: { mr_td: ["ab".repeat(48)] } }, tdxNow);
    expect(w.ok === false && w.reasons.join()).toMatch(/MRTD .* is not an expected one/);
    const g = await verifyEvidence("tdx", { quote: "!!" }, tdxDigest, {}, tdxNow);
    expect(g.ok).toBe(false);
  });

  it("refuses a debug TD unless the policy allows it (tdx-01 is a debug TD)", async () => {
    const q = vbytes("tdx/tdx-01-quote-v4.bin");
    const rd = Buffer.from(vjson("tdx/tdx-01-quote-v4.json").parsed.body.report_data, "hex");
    const ev = { cc_eventlog: null, quote: Buffer.from(q).toString("base64") };
    const denied = await verifyEvidence("tdx", ev, rd, {}, tdxNow);
    expect(denied.ok === false && denied.reasons.join()).toMatch(/debug TD/);
    const allowed = await verifyEvidence("tdx", ev, rd, { tdx: { allow_debug: true } }, tdxNow);
    expect(allowed.ok, JSON.stringify(allowed)).toBe(true);
  });
});

describe("release policy outside dev mode", () => {
  const base = { policy: { allowTees: ["snp", "tdx", "sample"], denyAll: false }, dev: false };
  it("refuses a release whose policy does not pin the boot chain", () => {
    expect(releaseRefusal("snp", base)).toMatch(/missing snp\.measurements/);
    expect(releaseRefusal("tdx", base)).toMatch(/missing tdx\.mr_td, tdx\.rtmrs\.1, tdx\.rtmrs\.2/);
    expect(releaseRefusal("tdx", { ...base, policy: { ...base.policy, tee: { tdx: { mr_td: ["aa"], rtmrs: { "1": ["bb"] } } } } })).toMatch(/missing tdx\.rtmrs\.2$/);
    expect(releaseRefusal("sample", base)).toMatch(/only in dev mode/);
    expect(releaseRefusal("snp", { ...base, policy: { ...base.policy, tee: { snp: { measurements: ["aa"] } } } })).toBeUndefined();
    expect(releaseRefusal("snp", { ...base, dev: true })).toBeUndefined();
    expect(releaseRefusal("snp", { ...base, policy: { ...base.policy, denyAll: true, tee: { snp: { measurements: ["aa"] } } } })).toMatch(/deny-all/);
  });

  it("vTPM evidence needs PCR 4, 7 and 11 pinned (PCR 11 tells the initramfs from root after the unlocked event)", () => {
    const az = { ...base, policy: { ...base.policy, allowTees: ["az-snp-vtpm", "az-tdx-vtpm"] } };
    expect(releaseRefusal("az-snp-vtpm", az)).toMatch(/missing vtpm\.pcrs\.4, vtpm\.pcrs\.7, vtpm\.pcrs\.11$/);
    expect(releaseRefusal("az-tdx-vtpm", { ...az, policy: { ...az.policy, tee: { vtpm: { pcrs: { "4": ["aa"], "7": ["bb"] } } } } })).toMatch(/missing vtpm\.pcrs\.11$/);
    expect(releaseRefusal("az-snp-vtpm", { ...az, policy: { ...az.policy, tee: { vtpm: { pcrs: { "4": ["aa"], "7": ["bb"], "11": ["cc"] } } } } })).toBeUndefined();
    expect(releaseRefusal("az-snp-vtpm", { ...az, dev: true })).toBeUndefined();
    const pcrs = Array.from({ length: 24 }, (_, i) => new Uint8Array(32).fill(i));
    expect(validateVtpm(pcrs, { pcrs: { "4": ["04".repeat(32)], "11": ["0b".repeat(32)] } })).toEqual([]);
    expect(validateVtpm(pcrs, { pcrs: { "11": ["00".repeat(32)] } })).toEqual([`PCR 11 ${"0b".repeat(32)} is not an expected one`]);
    expect(validateVtpm(pcrs.slice(0, 5), { pcrs: { "11": ["0b".repeat(32)] } })).toEqual(["PCR 11 is not in the quote"]);
  });

  it("vTPM evidence: outside dev mode the paravisor's report must be hardware-signed; in dev mode only that check is simulated", async () => {
    const ev = vjson("azure/az-snp-vtpm-01.evidence.json");
    const rd = Buffer.from(vjson("azure/az-snp-vtpm-01.json").parsed.tpm_quote_extraData, "hex");
    const at = new Date("2026-01-01T00:00:00Z");
    const ok = await verifyEvidence("az-snp-vtpm", ev, rd, {}, at);
    expect(ok.ok, JSON.stringify(ok)).toBe(true);
    if (ok.ok) expect(ok.claims).toMatchObject({ hardware_signature: "verified", measurement: expect.stringMatching(/^5b0ce64a/) });
    // The SNP report's measurement changed: its signature breaks. Refused outside dev mode, simulated in it.
    const b = Buffer.from(ev.hcl_report.replace(/=+$/, ""), "base64url");
    b[0x20 + 0x90]! ^= 1;
    const changed = { ...ev, hcl_report: b.toString("base64url") };
    const prod = await verifyEvidence("az-snp-vtpm", changed, rd, {}, at);
    expect(prod.ok === false && prod.reasons.join()).toMatch(/SNP report signature/);
    const dev = await verifyEvidence("az-snp-vtpm", changed, rd, {}, at, { dev: true });
    expect(dev.ok, JSON.stringify(dev)).toBe(true);
    if (dev.ok) expect(dev.claims.hardware_signature).toBe("simulated (dev mode)");
    // Dev mode simulates nothing else: another nonce is refused there too.
    const replay = await verifyEvidence("az-snp-vtpm", ev, new Uint8Array(48), {}, at, { dev: true });
    expect(replay.ok === false && replay.reasons.join()).toMatch(/quote extraData = expected report data/);
  });

  it("checks RTMRs against the policy (tdx-03 vector)", () => {
    const q = quoteFromJson(tdxEv);
    const rtmr1 = hex(q.body.rtmr1 as Uint8Array);
    expect(validateTdx(q, { rtmrs: { "1": [rtmr1] } })).toEqual([]);
    expect(validateTdx(q, { rtmrs: { "1": [rtmr1], "2": ["00".repeat(48)] } })).toEqual([`RTMR2 ${hex(q.body.rtmr2 as Uint8Array)} is not an expected one`]);
  });
});

describe("the dev broker replays a TDX CC event log against the quote", () => {
  it("a log that does not replay to the quote's RTMRs is refused; a garbled one too; none is allowed", async () => {
    const q = quoteFromJson(tdxEv);
    const log = Buffer.from(trimCcel(ccel([{ mr: 2, data: "the host's kernel" }]))).toString("base64");
    expect(replayCcel(log, q)).toEqual(expect.arrayContaining(["the CC event log does not replay to the quote's RTMR1"]));
    expect(replayCcel("@@", q)).toEqual(["cc_eventlog is not standard base64"]);
    expect(replayCcel(Buffer.from("garbage that is no event log at all, 40 bytes").toString("base64"), q)[0]).toMatch(/^cc_eventlog: event log: /);
    expect(replayCcel(null, q)).toEqual([]);
    const v = await verifyEvidence("tdx", { ...tdxEv, cc_eventlog: log }, tdxDigest, {}, tdxNow);
    expect(v.ok).toBe(false);
    if (!v.ok) expect(v.reasons.join("; ")).toMatch(/does not replay to the quote's RTMR1/);
  });
});
