// The guest side of vTPM evidence where a paravisor hides the hardware report (Azure's az-snp-vtpm and
// az-tdx-vtpm): the runtime-data hash goes to NV 0x01400002, the paravisor refreshes the HCL report in NV
// 0x01400001 with it as user-data, and the attestation key at 0x81000003 quotes the 24 SHA-256 PCRs with the
// hash as extraData. Everything through the project's own TPM client; the answers are checked here so that a
// hostile transport or a stale report is a typed error before anything is sent:
//   the report's user-data must carry our hash (waited for, bounded);
//   the AK the TPM holds must be the key the HCL report binds (HCLAkPub);
//   the PCRs read after the quote must hash to its pcrDigest (quoted again, bounded, if a PCR moved);
//   the quote must verify under the AK.
import { equalBytes } from "../../bytes.js";
import { CvmError } from "../../errors.js";
import { sha256 } from "../../hash.js";
import { b64urlDecode } from "../../jose/b64.js";
import { quote, type Quote } from "../../tpm/attest.js";
import type { Tpm } from "../../tpm/commands.js";
import { ALG } from "../../tpm/marshal.js";
import { nvRead, nvReadAll, nvReadPublic, nvWriteSized } from "../../tpm/nv.js";
import { readPublic } from "../../tpm/objects.js";
import { LayoutError } from "../layout.js";
import { akSigned, HCL_FIXED_SIZE, HCL_SNP, HCL_TDX, parseHclReport, type HclReport } from "./hcl.js";

export const HCL_REPORT_INDEX = 0x01400001;
export const REPORT_DATA_INDEX = 0x01400002;
export const AK_HANDLE = 0x81000003;
export const QUOTE_PCRS = Array.from({ length: 24 }, (_, i) => i);
/** What the paravisor puts in user-data: the report data zero-padded to 64 bytes (Azure's own reports). */
export const REPORT_DATA_SIZE = 64;
/** Trustee's attester sleeps 3 s after the write; we poll for our user-data instead, up to this long. */
export const REFRESH_LIMIT_MS = 5000;
const QUOTE_TRIES = 3;

export type VtpmTee = "az-snp-vtpm" | "az-tdx-vtpm";

export interface VtpmParts {
  /** The HCL report bytes exactly as NV 0x01400001 held them. */
  hclBytes: Uint8Array;
  hcl: HclReport;
  quote: { message: Uint8Array; signature: Uint8Array; pcrs: Uint8Array[] };
}

export interface VtpmOptions {
  /** How long the caller may still wait (its deadline); the refresh wait never goes past it. */
  remainingMs?: () => number;
  sleep?: (ms: number) => Promise<void>;
  log?: { info(m: string, f?: Record<string, unknown>): void; warn(m: string, f?: Record<string, unknown>): void };
}

/** Whether this TPM holds an HCL report, and of which kind: read from the report's header and its IGVM
 *  request data only (a few dozen bytes), so detection stays cheap. */
export async function detectHclReport(tpm: Tpm): Promise<{ tee: VtpmTee; size: number } | undefined> {
  const pub = await nvReadPublic(tpm, HCL_REPORT_INDEX);
  if (!pub) return undefined;
  if (pub.dataSize < HCL_FIXED_SIZE) throw new LayoutError("HCL report", `NV index 0x01400001 holds ${pub.dataSize} bytes, fewer than the report's fixed part (${HCL_FIXED_SIZE})`);
  const head = await nvRead(tpm, HCL_REPORT_INDEX, 4, 0);
  if (Buffer.from(head).toString("latin1") !== "HCLA") throw new LayoutError("HCL report", 'NV index 0x01400001 does not start with "HCLA"');
  const igvm = await nvRead(tpm, HCL_REPORT_INDEX, 12, 0x4c0);
  const type = new DataView(igvm.buffer, igvm.byteOffset).getUint32(8, true);
  if (type === HCL_SNP) return { tee: "az-snp-vtpm", size: pub.dataSize };
  if (type === HCL_TDX) return { tee: "az-tdx-vtpm", size: pub.dataSize };
  throw new LayoutError("HCL report", `report type ${type} (2 SNP or 4 TDX)`);
}

/** The user-data of a report, as bytes (it is upper-case hex in the variable data). */
function userDataBytes(h: HclReport): Uint8Array | undefined {
  return h.userData && /^([0-9a-fA-F]{2})*$/.test(h.userData) ? Uint8Array.from(Buffer.from(h.userData, "hex")) : undefined;
}

/** Writes the report data and waits until the paravisor's HCL report carries it (bounded: REFRESH_LIMIT_MS
 *  and the caller's deadline). */
export async function refreshedHclReport(tpm: Tpm, reportData: Uint8Array, opts: VtpmOptions = {}): Promise<{ bytes: Uint8Array; hcl: HclReport; waitedMs: number }> {
  const padded = new Uint8Array(REPORT_DATA_SIZE);
  padded.set(reportData.subarray(0, REPORT_DATA_SIZE));
  const { defined } = await nvWriteSized(tpm, REPORT_DATA_INDEX, padded);
  if (defined) opts.log?.info("defined NV index 0x01400002 for the report data (it was missing or of another size)");
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const limit = Math.min(REFRESH_LIMIT_MS, opts.remainingMs?.() ?? REFRESH_LIMIT_MS);
  const t0 = performance.now();
  for (let step = 25; ; step = Math.min(step * 2, 400)) {
    const got = await nvReadAll(tpm, HCL_REPORT_INDEX);
    if (!got) throw new CvmError("TEE", "the vTPM has no HCL report at NV index 0x01400001 (not a paravisor-backed vTPM)");
    const hcl = parseHclReport(got.data);
    const user = userDataBytes(hcl);
    const waitedMs = Math.round(performance.now() - t0);
    if (user && user.length >= reportData.length && equalBytes(user.subarray(0, reportData.length), reportData)) return { bytes: got.data, hcl, waitedMs };
    if (waitedMs >= limit) {
      throw new CvmError("TEE", `the paravisor did not refresh the HCL report with this attempt's report data within ${(limit / 1000).toFixed(1)} s (its user-data is ${hcl.userData ? `${hcl.userData.slice(0, 16)}…` : "absent"})`, { reason: "stale-report" });
    }
    await sleep(Math.min(step, Math.max(1, limit - waitedMs)));
  }
}

/** The AK the TPM holds must be the RSA key the HCL report names (same modulus and exponent). */
export async function checkAkBinding(tpm: Tpm, hcl: HclReport): Promise<void> {
  const { public: ak } = await readPublic(tpm, AK_HANDLE);
  if (ak.type !== ALG.RSA) throw new CvmError("TEE", "the vTPM's attestation key 0x81000003 is not an RSA key", { reason: "ak-binding" });
  const n = ak.unique as Uint8Array;
  const e = (ak.exponent as number) || 65537;
  let wantN: Uint8Array, wantE: Uint8Array;
  try {
    wantN = b64urlDecode(hcl.akPub.n, "HCLAkPub.n");
    wantE = b64urlDecode(hcl.akPub.e, "HCLAkPub.e");
  } catch {
    throw new LayoutError("HCL report", "HCLAkPub is not base64url");
  }
  const eNum = wantE.reduce((v, b) => v * 256 + b, 0);
  if (!equalBytes(n, wantN) || e !== eNum) {
    throw new CvmError("TEE", "the vTPM's attestation key 0x81000003 is not the key the HCL report binds (HCLAkPub): its quote would prove nothing", { reason: "ak-binding" });
  }
}

const pcrDigest = (pcrs: Uint8Array[]): Uint8Array => sha256(Uint8Array.from(Buffer.concat(pcrs)));

/** TPM2_Quote over the 24 SHA-256 PCRs, and the PCR values read right after it; quoted again (at most
 *  QUOTE_TRIES in all) when the values do not hash to the quote's pcrDigest (a PCR was extended in between). */
export async function quoteWithPcrs(tpm: Tpm, reportData: Uint8Array, log?: VtpmOptions["log"]): Promise<{ q: Quote; pcrs: Uint8Array[] }> {
  for (let attempt = 1; ; attempt++) {
    const q = await quote(tpm, AK_HANDLE, reportData, "sha256", QUOTE_PCRS);
    const values = await tpm.pcrRead("sha256", QUOTE_PCRS);
    const pcrs = QUOTE_PCRS.map((i) => values.get(i)!);
    if (equalBytes(pcrDigest(pcrs), q.attest.pcrDigest)) return { q, pcrs };
    if (attempt >= QUOTE_TRIES) throw new CvmError("TPM", `the PCRs kept changing while being quoted (${QUOTE_TRIES} quotes, none matched the values read after it)`, { reason: "pcr-changed" });
    log?.warn(`a PCR changed between the quote and reading the PCRs; quoting again (attempt ${attempt + 1} of ${QUOTE_TRIES})`);
  }
}

/** The vTPM half of the evidence for `reportData` (the KBS runtime-data hash). */
export async function collectVtpmParts(tpm: Tpm, reportData: Uint8Array, opts: VtpmOptions = {}): Promise<VtpmParts> {
  if (reportData.length === 0 || reportData.length > REPORT_DATA_SIZE) throw new CvmError("TEE", `report data of ${reportData.length} bytes (1 to ${REPORT_DATA_SIZE})`);
  const { bytes, hcl, waitedMs } = await refreshedHclReport(tpm, reportData, opts);
  opts.log?.info("the HCL report carries this attempt's report data", { waited_ms: waitedMs, report_type: hcl.reportType === HCL_SNP ? "snp" : "tdx" });
  await checkAkBinding(tpm, hcl);
  const { q, pcrs } = await quoteWithPcrs(tpm, reportData, opts.log);
  if (q.signature.sigAlg !== ALG.RSASSA || q.signature.hash !== ALG.SHA256 || !q.signature.sig) {
    throw new CvmError("TEE", `the attestation key signed with algorithm 0x${q.signature.sigAlg.toString(16)}/0x${q.signature.hash.toString(16)}, not RSASSA-SHA256`, { reason: "signature" });
  }
  if (!equalBytes(q.attest.extraData, reportData)) throw new CvmError("TEE", "the quote's extraData is not the report data asked for", { reason: "binding" });
  if (!(await akSigned(hcl, q.message, q.signature.sig))) {
    throw new CvmError("TEE", "the vTPM's quote does not verify under the attestation key the HCL report binds", { reason: "signature" });
  }
  return { hclBytes: bytes, hcl, quote: { message: q.message, signature: q.signature.sig, pcrs } };
}
