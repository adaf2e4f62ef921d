// Trustee KBS attestation protocol 0.4.0, client side: POST /kbs/v0/auth → nonce and kbs-session-id
// cookie; POST /kbs/v0/attest with runtime-data {nonce, tee-pubkey} and evidence bound to it; GET
// /kbs/v0/resource/<repo>/<type>/<tag> → JWE. Protocol only: no retries here (see flow/broker.ts).
import { sha256, sha384, sha512 } from "@noble/hashes/sha2.js";
import { jcs } from "../jose/jcs.js";
import type { EcPublicJwk } from "../jose/jwe.js";
import { AttemptError, classifyKbsError } from "./errors.js";
import type { HttpResponse, Transport } from "./transport.js";

export const KBS_PROTOCOL_VERSION = "0.4.0";
const SESSION_COOKIE = "kbs-session-id";

export interface Challenge {
  sessionId: string;
  nonce: string;
  hash: HashName;
}

export type HashName = "sha256" | "sha384" | "sha512";
const HASHES: Record<HashName, (b: Uint8Array) => Uint8Array> = { sha256, sha384, sha512 };

/** REPORT_DATA digest: hash(JCS({"additional-evidence":"", nonce, "tee-pubkey"})) — §5.2 of the reference. */
export function runtimeDataDigest(nonce: string, teePubkey: EcPublicJwk, hash: HashName = "sha384"): Uint8Array {
  return HASHES[hash](new TextEncoder().encode(jcs({ "additional-evidence": "", nonce, "tee-pubkey": teePubkey })));
}

export class KbsClient {
  constructor(
    private readonly transport: Transport,
    private readonly baseUrl: string,
    private readonly timeoutMs: () => number,
  ) {}

  private url(path: string): string {
    return `${this.baseUrl.replace(/\/+$/, "")}/kbs/v0/${path}`;
  }

  async auth(tee: string): Promise<Challenge> {
    const body = JSON.stringify({ version: KBS_PROTOCOL_VERSION, tee, "extra-params": { "supported-hash-algorithms": ["sha256", "sha384", "sha512"] } });
    const res = await this.transport.request({ method: "POST", url: this.url("auth"), headers: { "content-type": "application/json" }, body, timeoutMs: this.timeoutMs() });
    const json = expectJson(res, "auth") as Record<string, unknown>;
    if (typeof json !== "object" || json === null || typeof json.nonce !== "string" || json.nonce.length === 0 || json.nonce.length > 1024) {
      throw protocol("auth: challenge without a nonce");
    }
    return { sessionId: sessionCookie(res, "auth"), nonce: json.nonce, hash: selectedHash(json["extra-params"]) };
  }

  async attest(ch: Challenge, teePubkey: EcPublicJwk, primaryEvidence: unknown): Promise<string> {
    const body = JSON.stringify({
      "init-data": null,
      "runtime-data": { nonce: ch.nonce, "tee-pubkey": teePubkey },
      "tee-evidence": { primary_evidence: primaryEvidence, additional_evidence: "" },
    });
    const res = await this.transport.request({
      method: "POST",
      url: this.url("attest"),
      headers: { "content-type": "application/json", cookie: `${SESSION_COOKIE}=${ch.sessionId}` },
      body,
      timeoutMs: this.timeoutMs(),
    });
    const json = expectJson(res, "attest") as Record<string, unknown>;
    if (typeof json !== "object" || json === null || typeof json.token !== "string") throw protocol("attest: answer without a token");
    return json.token;
  }

  async resource(ch: Challenge, path: string): Promise<unknown> {
    const res = await this.transport.request({
      method: "GET",
      url: this.url(`resource/${path}`),
      headers: { cookie: `${SESSION_COOKIE}=${ch.sessionId}` },
      timeoutMs: this.timeoutMs(),
    });
    return expectJson(res, "resource");
  }
}

const protocol = (msg: string): AttemptError => new AttemptError("BROKER_PROTOCOL", msg, "protocol");

function sessionCookie(res: HttpResponse, step: string): string {
  for (const c of res.setCookies) {
    const m = /^\s*kbs-session-id=([^;\s]*)/.exec(c);
    if (m) {
      if (!/^[A-Za-z0-9_-]{1,128}$/.test(m[1]!)) throw protocol(`${step}: malformed ${SESSION_COOKIE} cookie`);
      return m[1]!;
    }
  }
  throw protocol(`${step}: no ${SESSION_COOKIE} cookie in the answer`);
}

function selectedHash(extra: unknown): HashName {
  if (typeof extra !== "object" || extra === null) return "sha384";
  const sel = (extra as Record<string, unknown>)["selected-hash-algorithm"];
  if (sel === undefined) return "sha384";
  const name = typeof sel === "string" ? sel.toLowerCase() : "";
  if (name === "sha256" || name === "sha384" || name === "sha512") return name;
  throw new AttemptError("BROKER_PROTOCOL", `auth: broker selected an unsupported hash algorithm ${JSON.stringify(String(sel).slice(0, 20))}`, null);
}

/** Status and body → parsed JSON on 200, or the AttemptError the reference's error model prescribes. */
export function expectJson(res: HttpResponse, step: "auth" | "attest" | "resource"): unknown {
  const s = res.status;
  if (s >= 300 && s < 400) throw new AttemptError("BROKER_PROTOCOL", `${step}: broker answered with a redirect (${s}); redirects are never followed`, null, { status: s });
  if (s >= 500 || s === 429 || s === 408) throw new AttemptError("BROKER_UNREACHABLE", `${step}: broker unavailable (HTTP ${s})`, "busy", { status: s });
  const parsed = parseJsonBody(res);
  if (s === 200) {
    if (parsed === undefined) throw protocol(`${step}: answer is not JSON (content-type ${JSON.stringify((res.header("content-type") ?? "none").slice(0, 40))})`);
    return parsed;
  }
  if ((s === 401 || s === 404) && isErrorInfo(parsed)) throw classifyKbsError(step, s, parsed);
  throw protocol(`${step}: unexpected HTTP ${s} without a KBS error body`);
}

function parseJsonBody(res: HttpResponse): unknown {
  const ct = res.header("content-type") ?? "";
  if (!/^application\/json\b/i.test(ct.trim())) return undefined;
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(res.body));
  } catch {
    return undefined;
  }
}

function isErrorInfo(v: unknown): v is { type: string; detail: string } {
  return typeof v === "object" && v !== null && typeof (v as { type?: unknown }).type === "string" && typeof (v as { detail?: unknown }).detail === "string";
}
