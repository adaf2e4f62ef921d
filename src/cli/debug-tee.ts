// debug detect / evidence / verify: what TEE this guest has, fresh evidence from it, and offline
// verification of a saved report, quote or Trustee evidence file (no network).
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CvmError } from "../errors.js";
import { stringifyJson } from "../json.js";
import { describeQuote, describeSnp, describeTdReport } from "../tee/describe.js";
import { detectTee } from "../tee/detect.js";
import { detectKind } from "../tee/kind.js";
import { TpmFormatError } from "../tpm/marshal.js";
import { parseAzSnpVtpm, verifyAzSnpVtpm } from "../tee/verify/azure.js";
import { LayoutError } from "../tee/layout.js";
import { chooseProvider } from "../tee/providers.js";
import { snpReportFromJson } from "../tee/snp/evidence.js";
import { parseReport, type SnpReport } from "../tee/snp/layout.js";
import { quoteFromJson } from "../tee/tdx/evidence.js";
import { parseQuote, parseTdReport, type Quote } from "../tee/tdx/layout.js";
import { realTsmFs, TSM_ROOT, tsmAvailable } from "../tee/tsm.js";
import { tdxReport0 } from "../tee/tdx/ioctl.js";
import { DerError } from "../tee/verify/der.js";
import type { Verification } from "../tee/verify/result.js";
import { certBytes, verifySnp, type SnpCerts } from "../tee/verify/snp.js";
import { verifyTdx } from "../tee/verify/tdx.js";
import type { Runner } from "./command.js";
import { loadEffective, readFlagFile } from "./common.js";

export const debugDetect: Runner = async () => {
  const d = detectTee();
  const tsm = tsmAvailable(realTsmFs, TSM_ROOT);
  const path = d.kind === "none" ? "none" : tsm ? "configfs-tsm" : d.kind === "snp" ? "/dev/sev-guest ioctl" : "none (TDX quotes need configfs-tsm)";
  return { status: "done", message: `TEE: ${d.kind}; evidence via ${path}`, data: { tee: d.kind, interfaces: d.interfaces, configfs_tsm: tsm, evidence_path: path } };
};

function parseHex(s: string, what: string, max: number): Uint8Array {
  if (!/^([0-9a-fA-F]{2})*$/.test(s) || s.length / 2 > max) throw new CvmError("USAGE", `${what}: expected up to ${max} bytes of hex`);
  return Uint8Array.from(s.match(/../g) ?? [], (x) => parseInt(x, 16));
}

export const debugEvidence: Runner = async (ctx) => {
  const eff = ctx.flags.config !== undefined ? loadEffective(ctx) : undefined;
  const nonce = typeof ctx.flags.nonce === "string" ? parseHex(ctx.flags.nonce, "--nonce", 64) : crypto.getRandomValues(new Uint8Array(32));
  if (detectTee().kind === "tdx" && !tsmAvailable(realTsmFs, TSM_ROOT)) {
    // No quote without configfs-tsm: show the local TDREPORT instead (not remote evidence).
    const rd = new Uint8Array(64);
    rd.set(nonce);
    const report = await tdxReport0(await ctx.native(), rd);
    if (typeof ctx.flags.out === "string") writeFileSync(ctx.flags.out, report);
    return { status: "done", message: "TDX without configfs-tsm: local TDREPORT (not remote evidence; a quote needs Linux 6.7+ configfs-tsm)", data: { tee: "tdx", provider: "TDX_CMD_GET_REPORT0", fields: describeTdReport(parseTdReport(report)) } };
  }
  const provider = chooseProvider({ allowSimulated: eff?.config.tee.allow_simulated ?? false, vmpl: eff?.config.tee.vmpl ?? 0, log: ctx.log, native: ctx.native });
  const evidence = await provider.evidence(nonce);
  const text = stringifyJson(evidence);
  if (typeof ctx.flags.out === "string") writeFileSync(ctx.flags.out, text + "\n");
  const fields = describeEvidence(detectKind(new TextEncoder().encode(text)));
  return {
    status: "done",
    message: `${provider.name}: evidence for REPORT_DATA ${Buffer.from(nonce).toString("hex")}${ctx.flags.out ? ` written to ${ctx.flags.out}` : ""}`,
    data: { tee: provider.tee, provider: provider.name, fields },
  };
};

function describeEvidence(k: ReturnType<typeof detectKind>): Record<string, unknown> {
  if (k.kind === "trustee-snp") {
    const r = snpReportFromJson(k.json).report;
    return describeSnp(r);
  }
  if (k.kind === "trustee-tdx") return describeQuote(quoteFromJson(k.json));
  return (k.json as Record<string, unknown>) ?? {};
}

/** snpguest's layout: vcek.der|vcek.pem, vlek.der|vlek.pem, ask.pem, ark.pem. */
function certsFromDir(dir: string): SnpCerts {
  const one = (names: string[]) => {
    for (const n of names) if (existsSync(join(dir, n))) return certBytes(new Uint8Array(readFileSync(join(dir, n))))[0];
    return undefined;
  };
  return { endorsement: one(["vcek.der", "vcek.pem", "vlek.der", "vlek.pem"]), ask: one(["ask.pem", "ask.der", "asvk.pem"]), ark: one(["ark.pem", "ark.der"]) };
}

export const debugVerify: Runner = async (ctx) => {
  const file = ctx.positionals[0];
  if (!file) throw new CvmError("USAGE", "debug verify needs a FILE");
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(readFileSync(file));
  } catch (e) {
    throw new CvmError("USAGE", `cannot read ${file} (${(e as NodeJS.ErrnoException).code})`);
  }
  const now = typeof ctx.flags.at === "string" ? new Date(ctx.flags.at) : new Date();
  if (Number.isNaN(now.getTime())) throw new CvmError("USAGE", "--at: expected an ISO 8601 time");
  const dirCerts = typeof ctx.flags.certs === "string" ? certsFromDir(ctx.flags.certs) : {};
  const crls = typeof ctx.flags.crl === "string" ? ctx.flags.crl.split(",").filter(Boolean).map((f) => readFlagFile("--crl", f)) : [];
  const k = detectKind(bytes);
  let fields: Record<string, unknown>;
  let v: Verification | undefined;
  try {
    switch (k.kind) {
      case "snp-report":
      case "trustee-snp": {
        let report: SnpReport;
        let certs: { kind: string; data: Uint8Array }[] = [];
        if (k.kind === "snp-report") report = parseReport(bytes);
        else ({ report, certs } = snpReportFromJson(k.json));
        const pick = (kind: string) => certs.find((c) => c.kind === kind)?.data;
        const res = await verifySnp(report, { endorsement: dirCerts.endorsement ?? pick("VCEK") ?? pick("VLEK"), ask: dirCerts.ask ?? pick("ASK"), ark: dirCerts.ark ?? pick("ARK") }, now, { crls });
        fields = describeSnp(report, res.product);
        v = res.v;
        break;
      }
      case "tdx-quote":
      case "trustee-tdx": {
        const q: Quote = k.kind === "tdx-quote" ? parseQuote(bytes) : quoteFromJson(k.json);
        fields = describeQuote(q);
        v = (await verifyTdx(q, now, { crls })).v;
        break;
      }
      case "az-snp-vtpm": {
        const e = parseAzSnpVtpm(k.json);
        const expectedReportData = typeof ctx.flags.nonce === "string" ? parseHex(ctx.flags.nonce, "--nonce", 64) : undefined;
        const res = await verifyAzSnpVtpm(e, now, { expectedReportData, crls });
        fields = { version: Number(e.version), pcrs: e.tpm_quote.pcrs.length, ...(res.snp ? { product: res.snp.product, signer: res.snp.signer } : {}) };
        v = res.v;
        break;
      }
      case "tdreport":
        fields = describeTdReport(parseTdReport(bytes));
        break;
      case "trustee-sample":
        fields = k.json as Record<string, unknown>;
        break;
      default:
        throw new CvmError("TEE", `${file}: not an SNP report, TDX quote, TDREPORT or Trustee evidence JSON (snp, tdx, az-snp-vtpm)`);
    }
  } catch (e) {
    if (e instanceof LayoutError || e instanceof DerError || e instanceof TpmFormatError) throw new CvmError("TEE", `${file}: malformed ${k.kind}: ${e.message}`, { kind: k.kind, reason: "malformed" });
    throw e;
  }
  if (!v) {
    const why = k.kind === "tdreport" ? "a TDREPORT is MAC'd with a platform key and cannot be verified off the machine" : "simulated evidence carries no signature";
    throw new CvmError("TEE", `${file}: ${k.kind} parsed, but ${why}`, { kind: k.kind, reason: "not-verifiable" });
  }
  const data = { kind: k.kind, ok: v.ok, checks: v.checks, fields };
  if (!v.ok) {
    const f = v.firstFailure!;
    if (!ctx.json) ctx.print(v.checks.map((c) => `  ${c.ok ? "ok  " : "FAIL"} ${c.name}${c.ok ? "" : `: ${c.detail}`}`).join("\n"));
    throw new CvmError("TEE", `${file}: verification failed: ${f.name}: ${f.detail}`, { kind: k.kind, reason: f.reason ?? "unknown", check: f.name });
  }
  return { status: "done", message: `${file}: ${k.kind} verified (${v.checks.length} checks)`, data: JSON.parse(stringifyJson(data)) };
};


