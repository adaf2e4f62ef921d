// Evidence checking for the dev broker, per TEE: the agent's own offline verifiers (signatures, chains,
// TCB/hwID) plus the REPORT_DATA binding, then the policy. Returns the claims for the token, or the reasons
// it refused. `sample` compares the digest exactly, as Trustee's sample verifier does.
import { hex } from "../../src/tee/layout.js";
import { snpReportFromJson } from "../../src/tee/snp/evidence.js";
import { quoteFromJson } from "../../src/tee/tdx/evidence.js";
import type { Quote } from "../../src/tee/tdx/layout.js";
import { ccelRtmrs } from "../../src/measured-boot/ccel.js";
import { validateSnp, validateTdx, validateVtpm, type TeePolicy } from "../../src/tee/verify/policy.js";
import { parseAzVtpm, verifyAzVtpm } from "../../src/tee/verify/azure.js";
import { verifySnp } from "../../src/tee/verify/snp.js";
import { verifyTdx } from "../../src/tee/verify/tdx.js";

export type Verdict = { ok: true; claims: Record<string, unknown> } | { ok: false; reasons: string[] };

const bound = (rd: Uint8Array, digest: Uint8Array) => {
  const want = new Uint8Array(64);
  want.set(digest.subarray(0, 64));
  return rd.length === 64 && rd.every((b, i) => b === want[i]);
};

/** The CC event log, when sent, must replay to the quote's RTMR0..3 (Trustee does the same); absent is
 *  allowed (Trustee warns), since the RTMR policy alone decides. */
export function replayCcel(ccel: unknown, q: Quote): string[] {
  if (ccel === null || ccel === undefined) return [];
  if (typeof ccel !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(ccel)) return ["cc_eventlog is not standard base64"];
  let rtmrs: Uint8Array[];
  try {
    rtmrs = ccelRtmrs(new Uint8Array(Buffer.from(ccel, "base64")));
  } catch (e) {
    return [`cc_eventlog: ${(e as Error).message}`];
  }
  return rtmrs.flatMap((r, i) => (hex(r) === hex(q.body[`rtmr${i}`] as Uint8Array) ? [] : [`the CC event log does not replay to the quote's RTMR${i}`]));
}

/** Checks a dev broker leaves out in dev mode only: the paravisor's hardware report cannot be signed by real
 *  hardware here (no Azure VM), so its own signature is the one thing simulated; everything the guest and
 *  the vTPM produce (the quote, the PCRs, the AK binding, the nonce) is checked as in production. */
const DEV_SIMULATED = new Set(["SNP report signature"]);

export async function verifyEvidence(tee: string, evidence: any, digest: Uint8Array, policy: TeePolicy, now = new Date(), opts: { dev?: boolean } = {}): Promise<Verdict> {
  try {
    if (tee === "sample") {
      if (typeof evidence?.svn !== "string" || typeof evidence?.report_data !== "string") return { ok: false, reasons: ["sample evidence needs svn and report_data"] };
      const rd = Buffer.from(evidence.report_data, "base64");
      if (!rd.equals(Buffer.from(digest))) return { ok: false, reasons: ["REPORT_DATA does not bind the nonce and key"] };
      return { ok: true, claims: { svn: evidence.svn, report_data: rd.toString("hex") } };
    }
    if (tee === "snp") {
      const { report, certs } = snpReportFromJson(evidence);
      const pick = (k: string) => certs.find((c) => c.kind === k)?.data;
      const res = await verifySnp(report, { endorsement: pick("VCEK") ?? pick("VLEK"), ask: pick("ASK"), ark: pick("ARK") }, now);
      const reasons = res.v.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`);
      if (!bound(report.fields.report_data as Uint8Array, digest)) reasons.push("REPORT_DATA does not bind the nonce and key");
      if (res.tcb) reasons.push(...validateSnp(report, res.tcb, policy.snp));
      if (reasons.length > 0) return { ok: false, reasons };
      return {
        ok: true,
        claims: {
          measurement: hex(report.fields.measurement as Uint8Array),
          policy_debug_allowed: (((report.fields.policy as bigint) >> 19n) & 1n) === 1n,
          reported_tcb_bootloader: res.tcb!.bootloader, reported_tcb_tee: res.tcb!.tee, reported_tcb_snp: res.tcb!.snp, reported_tcb_microcode: res.tcb!.microcode,
          chip_id: hex(report.fields.chip_id as Uint8Array),
          report_data: hex(report.fields.report_data as Uint8Array),
        },
      };
    }
    if (tee === "tdx") {
      const q = quoteFromJson(evidence);
      const res = await verifyTdx(q, now);
      const reasons = res.v.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`);
      if (!bound(q.body.report_data as Uint8Array, digest)) reasons.push("REPORT_DATA does not bind the nonce and key");
      reasons.push(...replayCcel(evidence?.cc_eventlog, q));
      reasons.push(...validateTdx(q, policy.tdx));
      if (reasons.length > 0) return { ok: false, reasons };
      return { ok: true, claims: { quote: { body: { mr_td: hex(q.body.mr_td as Uint8Array), rtmr_0: hex(q.body.rtmr0 as Uint8Array), rtmr_1: hex(q.body.rtmr1 as Uint8Array), report_data: hex(q.body.report_data as Uint8Array) } } } };
    }
    if (tee === "az-snp-vtpm" || tee === "az-tdx-vtpm") {
      const res = await verifyAzVtpm(parseAzVtpm(evidence, tee), tee, now, { expectedReportData: digest });
      const simulated = res.v.checks.filter((c) => !c.ok && opts.dev && DEV_SIMULATED.has(c.name)).map((c) => c.name);
      const reasons = res.v.checks.filter((c) => !c.ok && !simulated.includes(c.name)).map((c) => `${c.name}: ${c.detail}`);
      if (res.snpReport && res.snp?.tcb) reasons.push(...validateSnp(res.snpReport, res.snp.tcb, policy.snp, { vmpl: false }));
      if (res.tdQuote) reasons.push(...validateTdx(res.tdQuote, policy.tdx));
      reasons.push(...validateVtpm(res.pcrs, policy.vtpm));
      if (reasons.length > 0) return { ok: false, reasons };
      const hw = res.snpReport ? { measurement: hex(res.snpReport.fields.measurement as Uint8Array), chip_id: hex(res.snpReport.fields.chip_id as Uint8Array) } : { mr_td: hex(res.tdQuote!.body.mr_td as Uint8Array) };
      return {
        ok: true,
        claims: {
          tpm: { pcrs: Object.fromEntries(res.pcrs.map((p, i) => [String(i), hex(p)])) },
          ...hw,
          report_data: hex(digest),
          hardware_signature: simulated.length > 0 ? "simulated (dev mode)" : "verified",
        },
      };
    }
    return { ok: false, reasons: [`no verifier for TEE ${tee}`] };
  } catch (e) {
    return { ok: false, reasons: [`malformed ${tee} evidence: ${(e as Error).message}`] };
  }
}
