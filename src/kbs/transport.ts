// The HTTP seam. The real transport is Bun's fetch with the configured CA as the only trust anchor
// (rejectUnauthorized always on), redirects never followed, a per-request timeout and a size limit on
// every body. Node's fetch ignores Bun's `tls` option, so https refuses to run outside Bun rather than
// silently trusting the system roots.
import { CvmError } from "../errors.js";
import { AttemptError } from "./errors.js";

export interface HttpRequest {
  method: "GET" | "POST";
  url: string;
  headers: Record<string, string>;
  body?: string;
  timeoutMs: number;
}

export interface HttpResponse {
  status: number;
  header(name: string): string | undefined;
  /** Every Set-Cookie header, in order. */
  setCookies: string[];
  body: Uint8Array;
}

export interface Transport {
  request(req: HttpRequest): Promise<HttpResponse>;
}

export const MAX_BODY = 256 * 1024;

/** A failure below HTTP: refused, reset, DNS, timeout, TLS. `tls` marks certificate/handshake failures. */
export class NetworkError extends CvmError {
  constructor(
    message: string,
    readonly tls: boolean,
  ) {
    super("BROKER_UNREACHABLE", message, { tls });
    this.name = "NetworkError";
  }
}

const TLS_HINTS = /certificate|self[- ]signed|unable to verify|UNABLE_TO|CERT_|ERR_TLS|hostname|altname|handshake|SSL|TLS/i;

export function fetchTransport(caPem: string | undefined): Transport {
  const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";
  return {
    async request(req) {
      const https = req.url.startsWith("https:");
      if (https && !isBun) throw new CvmError("INTERNAL", "https to the broker needs the Bun runtime (CA pinning)");
      if (https && !caPem) throw new CvmError("CONFIG", "https broker without a CA");
      const signal = AbortSignal.timeout(req.timeoutMs);
      let res: Response;
      try {
        const init: RequestInit & { tls?: unknown } = { method: req.method, headers: req.headers, body: req.body, redirect: "manual", signal };
        if (https) init.tls = { ca: caPem, rejectUnauthorized: true };
        res = await fetch(req.url, init);
      } catch (e) {
        throw toNetworkError(e, req);
      }
      let body: Uint8Array;
      try {
        body = await readLimited(res, MAX_BODY);
      } catch (e) {
        if (e instanceof CvmError) throw e;
        throw toNetworkError(e, req);
      }
      const setCookies = typeof res.headers.getSetCookie === "function" ? res.headers.getSetCookie() : [res.headers.get("set-cookie") ?? ""].filter(Boolean);
      return { status: res.status, header: (n) => res.headers.get(n) ?? undefined, setCookies, body };
    },
  };
}

function toNetworkError(e: unknown, req: HttpRequest): NetworkError {
  const err = e as { name?: string; message?: string; code?: string };
  if (err?.name === "TimeoutError" || err?.name === "AbortError") return new NetworkError(`${req.method} ${pathOf(req.url)}: no answer within ${req.timeoutMs} ms`, false);
  const text = (err?.message ?? String(e)).replace(/\s*For more information, pass `verbose: true`.*$/s, "");
  const msg = `${err?.code && !text.startsWith(err.code) ? err.code + ": " : ""}${text}`;
  const tls = TLS_HINTS.test(msg);
  return new NetworkError(`${req.method} ${pathOf(req.url)}: ${tls ? "TLS verification failed: " : ""}${msg.slice(0, 200)}`, tls);
}

const pathOf = (url: string): string => {
  try {
    return new URL(url).pathname;
  } catch {
    return url;
  }
};

/** Reads a body, failing as soon as it passes `limit` bytes (a hostile broker cannot make us buffer more). */
async function readLimited(res: Response, limit: number): Promise<Uint8Array> {
  const declared = Number(res.headers.get("content-length") ?? "0");
  if (declared > limit) {
    await res.body?.cancel().catch(() => {});
    throw new AttemptError("BROKER_PROTOCOL", `broker response body of ${declared} bytes is over the ${limit}-byte limit`, "protocol", { limit });
  }
  if (!res.body) return new Uint8Array(0);
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > limit) {
      await reader.cancel().catch(() => {});
      throw new AttemptError("BROKER_PROTOCOL", `broker response body is over the ${limit}-byte limit`, "protocol", { limit });
    }
    chunks.push(value);
  }
  const out = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}
