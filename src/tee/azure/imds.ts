// What the vTPM does not hold comes from the platform's instance metadata service (plain HTTP on a
// link-local address, untrusted like the host): the VCEK and its chain for az-snp-vtpm
// (GET /metadata/THIM/amd/certification, header "Metadata: true" → {vcekCert, certificateChain} PEM), the TD
// quote for az-tdx-vtpm (POST /acc/tdquote {"report": base64url TDREPORT} → {"quote": base64url}). An answer
// is used only when it chains to the pinned AMD or Intel root and belongs to this guest's hardware report;
// each request is bounded, and a few tries with backoff stay inside the caller's deadline.
import { equalBytes } from "../../bytes.js";
import { CvmError } from "../../errors.js";
import { sha256 } from "../../hash.js";
import type { Transport } from "../../kbs/transport.js";
import { LayoutError } from "../layout.js";
import type { SnpReport } from "../snp/layout.js";
import { parseQuote, type Quote } from "../tdx/layout.js";
import { DerError, pemBlocks } from "../verify/der.js";
import { verifySnp } from "../verify/snp.js";
import { verifyTdx } from "../verify/tdx.js";
import type { Verification } from "../verify/result.js";
import type { HclReport } from "./hcl.js";

export const IMDS_DEFAULT_URL = "http://169.254.169.254";
const TRIES = 4;

export interface ImdsDeps {
  transport: Transport;
  baseUrl: string;
  /** Time the caller may still spend (its deadline); each request is also capped at 10 s. */
  remainingMs: () => number;
  sleep?: (ms: number) => Promise<void>;
}

const url = (d: ImdsDeps, path: string) => `${d.baseUrl.replace(/\/+$/, "")}${path}`;

/** One request, retried (network failures and 5xx/429 only) with backoff inside the deadline. */
async function request(d: ImdsDeps, method: "GET" | "POST", path: string, headers: Record<string, string>, body?: string): Promise<unknown> {
  const sleep = d.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  let last = "";
  for (let attempt = 1; attempt <= TRIES; attempt++) {
    const timeoutMs = Math.max(1, Math.min(10_000, Math.floor(d.remainingMs())));
    try {
      const res = await d.transport.request({ method, url: url(d, path), headers, body, timeoutMs });
      if (res.status === 200) {
        try {
          return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(res.body));
        } catch {
          throw new CvmError("TEE", `instance metadata service: ${path} answered with something that is not JSON`, { reason: "imds" });
        }
      }
      last = `HTTP ${res.status}`;
      if (res.status < 500 && res.status !== 429) break;
    } catch (e) {
      if (e instanceof CvmError && e.code === "TEE") throw e;
      last = (e as Error).message;
    }
    const wait = 250 * 2 ** (attempt - 1);
    if (attempt === TRIES || d.remainingMs() <= wait) break;
    await sleep(wait);
  }
  throw new CvmError("TEE", `instance metadata service at ${d.baseUrl}: ${method} ${path} failed (${last.slice(0, 160)})`, { reason: "imds" });
}

/** The VCEK (DER) and the ASK/ARK chain (DER each) the metadata service serves for this chip. */
export async function fetchVcek(d: ImdsDeps): Promise<{ vcek: Uint8Array; chain: Uint8Array[] }> {
  return parseVcekAnswer(await request(d, "GET", "/metadata/THIM/amd/certification", { Metadata: "true" }));
}

/** {vcekCert, certificateChain} (PEM) → DER certificates, or a typed error. */
export function parseVcekAnswer(answer: unknown): { vcek: Uint8Array; chain: Uint8Array[] } {
  const j = answer as Record<string, unknown>;
  if (typeof j?.vcekCert !== "string") throw new CvmError("TEE", "instance metadata service: no vcekCert in the certification answer", { reason: "imds" });
  try {
    const vcek = pemBlocks(j.vcekCert)[0];
    if (!vcek) throw new DerError("vcekCert holds no certificate");
    const chain = typeof j.certificateChain === "string" ? pemBlocks(j.certificateChain) : [];
    return { vcek, chain };
  } catch (e) {
    throw new CvmError("TEE", `instance metadata service: its certificates are not PEM (${(e as Error).message.slice(0, 80)})`, { reason: "imds" });
  }
}

/** The TD quote the platform's quoting service makes for a TDREPORT. */
export async function fetchTdQuote(d: ImdsDeps, tdreport: Uint8Array): Promise<Uint8Array> {
  const body = JSON.stringify({ report: Buffer.from(tdreport).toString("base64url") });
  return parseTdQuoteAnswer(await request(d, "POST", "/acc/tdquote", { "content-type": "application/json" }, body));
}

/** {quote: base64url} → the raw quote bytes, or a typed error. */
export function parseTdQuoteAnswer(answer: unknown): Uint8Array {
  const j = answer as Record<string, unknown>;
  if (typeof j?.quote !== "string" || !/^[A-Za-z0-9_-]+={0,2}$/.test(j.quote)) throw new CvmError("TEE", "instance metadata service: the tdquote answer has no base64url quote", { reason: "imds" });
  return new Uint8Array(Buffer.from(j.quote.replace(/=+$/, ""), "base64url"));
}

/** The checks that decide whether a collateral answer is used: every one but the certificates' validity
 *  period (the initramfs clock is the host's; the broker checks time) and, for SNP, the report's own
 *  signature (the paravisor's output, not the service's; the broker verifies it). */
function refusal(v: Verification, skip: (name: string) => boolean): string | undefined {
  const bad = v.checks.find((c) => !c.ok && c.reason !== "expired" && !skip(c.name));
  return bad ? `${bad.name}: ${bad.detail}` : undefined;
}

/** A VCEK from the service is used only if it chains to the pinned AMD root and is this chip's at this TCB. */
export async function acceptVcek(vcek: Uint8Array, chain: Uint8Array[], report: SnpReport): Promise<void> {
  const res = await verifySnp(report, { endorsement: vcek, ask: chain[0], ark: chain[1] }, new Date());
  const why = refusal(res.v, (name) => name === "report signature");
  if (why) throw new CvmError("TEE", `the VCEK from the instance metadata service is refused: ${why}`, { reason: "imds-collateral" });
}

/** A TD quote from the service is used only if it chains to Intel's pinned root and was made for this
 *  TDREPORT (its REPORTDATA binds the HCL variable data, as the TDREPORT's does). */
export async function acceptTdQuote(raw: Uint8Array, hcl: HclReport): Promise<Quote> {
  let q: Quote;
  try {
    q = parseQuote(raw);
  } catch (e) {
    if (e instanceof LayoutError || e instanceof DerError) throw new CvmError("TEE", `the TD quote from the instance metadata service is malformed: ${e.message}`, { reason: "imds-collateral" });
    throw e;
  }
  const why = refusal((await verifyTdx(q, new Date())).v, () => false);
  if (why) throw new CvmError("TEE", `the TD quote from the instance metadata service is refused: ${why}`, { reason: "imds-collateral" });
  if (!equalBytes((q.body.report_data as Uint8Array).subarray(0, 32), sha256(hcl.varData))) {
    throw new CvmError("TEE", "the TD quote from the instance metadata service was not made for this guest's TDREPORT (its REPORTDATA does not bind the HCL variable data)", { reason: "imds-collateral" });
  }
  return q;
}
