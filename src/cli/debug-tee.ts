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
import { parseAzVtpm, verifyAzVtpm } from "../tee/verify/azure.js";
import { LayoutError } from "../tee/layout.js";
import { chooseProvider, detectProvider } from "../tee/providers.js";
import { parseConfig } from "../config/config.js";
import { Deadline } from "../flow/deadline.js";
import { b64urlLoose } from "../tee/azure/evidence.js";
import { parseHclReport } from "../tee/azure/hcl.js";
import { parseQuoteAttest } from "../tpm/attest.js";
import { providerEnv } from "./unlock-broker.js";
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
import type { Context, Runner } from "./command.js";
import { loadEffective, readFlagFile } from "./common.js";

/** The provider environment for a debug command: the config's when --config is given, else the defaults
 *  (no simulated TEE, /dev/tpmrm0 or --tpm-device, the platform's metadata service). */
function debugProviderEnv(ctx: Context) {
  const eff = ctx.flags.config !== undefined ? loadEffective(ctx) : undefined;
  const config = eff?.config ?? parseConfig({}, "(defaults)");
  if (typeof ctx.flags["tpm-device"] === "string") config.tpm.device = ctx.flags["tpm-device"];
  return providerEnv({ config, disabled: false, cmdline: {}, escapes: [], source: eff?.source ?? "(defaults)" }, ctx, new Deadline(config.deadline_s));
}

export const debugDetect: Runner = async (ctx) => {
  const d = detectTee();
  const tsm = tsmAvailable(realTsmFs, TSM_ROOT);
  const c = await detectProvider(debugProviderEnv(ctx));
  const chosen = c.provider ? `${c.provider.tee} through ${c.provider.name}` : "none";
  return {
    status: "done",
    message: `evidence: ${chosen} — ${c.why}\n${c.found.map((f) => `  ${f}`).join("\n")}`,
    data: { tee: c.provider?.tee ?? "none", provider: c.provider?.name ?? null, why: c.why, found: c.found, device: d.kind, interfaces: d.interfaces, configfs_tsm: tsm },
  };
};

function parseHex(s: string, what: string, max: number): Uint8Array {
  if (!/^([0-9a-fA-F]{2})*$/.test(s) || s.length / 2 > max) throw new CvmError("USAGE", `${what}: expected up to ${max} bytes of hex`);
  return Uint8Array.from(s.match(/../g) ?? [], (x) => parseInt(x, 16));
}

export const debugEvidence: Runner = async (ctx) => {
  const nonce = typeof ctx.flags.nonce === "string" ? parseHex(ctx.flags.nonce, "--nonce", 64) : crypto.getRandomValues(new Uint8Array(32));
  if (detectTee().kind === "tdx" && !tsmAvailable(realTsmFs, TSM_ROOT)) {
    // No quote without configfs-tsm: show the local TDREPORT instead (not remote evidence).
    const rd = new Uint8Array(64);
    rd.set(nonce);
    const report = await tdxReport0(await ctx.native(), rd);
    if (typeof ctx.flags.out === "string") writeFileSync(ctx.flags.out, report);
    return { status: "done", message: "TDX without configfs-tsm: local TDREPORT (not remote evidence; a quote needs Linux 6.7+ configfs-tsm)", data: { tee: "tdx", provider: "TDX_CMD_GET_REPORT0", fields: describeTdReport(parseTdReport(report)) } };
  }
  const provider = await chooseProvider(debugProviderEnv(ctx));
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
  if (k.kind === "az-snp-vtpm" || k.kind === "az-tdx-vtpm") {
    const e = parseAzVtpm(k.json, k.kind);
    const hcl = parseHclReport(b64urlLoose(e.hcl_report, k.kind, "hcl_report"));
    const hw = k.kind === "az-snp-vtpm" ? describeSnp(parseReport(hcl.hardware)) : describeTdReport(parseTdReport(hcl.hardware));
    return { version: Number(e.version), pcrs: e.tpm_quote.pcrs, quote_extra_data: Buffer.from(parseQuoteAttest(Buffer.from(e.tpm_quote.message, "hex")).extraData).toString("hex"), hcl_user_data: hcl.userData, hardware_report: hw };
  }
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
      case "az-snp-vtpm":
      case "az-tdx-vtpm": {
        const e = parseAzVtpm(k.json, k.kind);
        const expectedReportData = typeof ctx.flags.nonce === "string" ? parseHex(ctx.flags.nonce, "--nonce", 64) : undefined;
        const res = await verifyAzVtpm(e, k.kind, now, { expectedReportData, crls });
        fields = { version: Number(e.version), pcrs: e.tpm_quote.pcrs.length, ...(res.snp ? { product: res.snp.product, signer: res.snp.signer } : {}), ...(res.tdQuote ? { td_quote: describeQuote(res.tdQuote) } : {}) };
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
        throw new CvmError("TEE", `${file}: not an SNP report, TDX quote, TDREPORT or Trustee evidence JSON (snp, tdx, az-snp-vtpm, az-tdx-vtpm)`);
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


