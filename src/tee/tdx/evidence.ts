// Trustee's `tdx` evidence: {cc_eventlog, quote}: the CCEL (or null) and the quote in standard base64, trimmed to its own
// lengths (bytes after the signature data are dropped: Intel's verification library may not tolerate them).
import { CvmError } from "../../errors.js";
import { parseQuote, type Quote } from "./layout.js";

/** ccel: the trimmed CC event log, sent as cc_eventlog (standard base64) for the broker to replay. */
export function tdxEvidenceJson(q: Quote, ccel?: Uint8Array): { cc_eventlog: string | null; quote: string } {
  return { cc_eventlog: ccel ? Buffer.from(ccel).toString("base64") : null, quote: Buffer.from(q.trimmed).toString("base64") };
}

export function quoteFromJson(j: unknown): Quote {
  const o = j as Record<string, unknown>;
  if (typeof o !== "object" || o === null || typeof o.quote !== "string") throw new CvmError("TEE", "Trustee tdx evidence: quote missing");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(o.quote)) throw new CvmError("TEE", "Trustee tdx evidence: quote is not standard base64");
  return parseQuote(new Uint8Array(Buffer.from(o.quote, "base64")));
}
