// Trustee's `tdx` evidence: {cc_eventlog, quote} with the quote in standard base64, trimmed to its own
// lengths (bytes after the signature data are dropped: Intel's verification library may not tolerate them).
import { CvmError } from "../../errors.js";
import { parseQuote, type Quote } from "./layout.js";

export function tdxEvidenceJson(q: Quote): { cc_eventlog: null; quote: string } {
  return { cc_eventlog: null, quote: Buffer.from(q.trimmed).toString("base64") };
}

export function quoteFromJson(j: unknown): Quote {
  const o = j as Record<string, unknown>;
  if (typeof o !== "object" || o === null || typeof o.quote !== "string") throw new CvmError("TEE", "Trustee tdx evidence: quote missing");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(o.quote)) throw new CvmError("TEE", "Trustee tdx evidence: quote is not standard base64");
  return parseQuote(new Uint8Array(Buffer.from(o.quote, "base64")));
}
