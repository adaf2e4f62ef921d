// The dev broker: Trustee KBS protocol 0.4.0, server side, for demos and tests — NOT for production.
// auth → nonce + session cookie (5 minutes from /auth); attest → checks the nonce, the REPORT_DATA
// binding and the evidence, then issues an ES256 EAR-shaped token; resource GET → policy → JWE to the
// tee-pubkey. The `sample` TEE is refused (PolicyDeny at release, as Trustee's default policy) unless dev mode.
import { constants, createCipheriv, createHash, createPublicKey, publicEncrypt, randomBytes } from "node:crypto";
import { createServer as createHttp, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttps } from "node:https";
import type { AddressInfo } from "node:net";
import { jcs } from "../../src/jose/jcs.js";
import { encryptJwe } from "../../src/jose/jwe-encrypt.js";
import { cookieHeader, DETAIL, earClaims, errorBody, makeNonce, makeSessionId, TEES, TokenSigner, type KbsErrorKind } from "./protocol.js";
import type { ResourceStore } from "./store.js";
import { requiredPolicyGaps, type TeePolicy } from "../../src/tee/verify/policy.js";
import { verifyEvidence } from "./verifier.js";

export interface Policy {
  /** TEEs whose evidence may be released to; `sample` needs dev mode as well. */
  allowTees: string[];
  /** Refuse every release (PolicyDeny), e.g. to test a VM that must power off. */
  denyAll: boolean;
  /** What verified SNP/TDX evidence must also show (measurement, minimum TCB, debug). */
  tee?: TeePolicy;
}

export interface BrokerOptions {
  store: ResourceStore;
  policy: Policy;
  dev: boolean;
  tls?: { cert: string; key: string };
  adminInsecure?: boolean;
  sessionTtlMs?: number;
  log?: (line: string) => void;
  /** Nonce source (tests replay recorded messages with a fixed nonce). */
  nonce?: () => string;
}

interface Session {
  nonce: string;
  tee: string;
  expires: number;
  token?: string;
  claims?: Record<string, unknown>;
}

const MAX_REQUEST = 2 * 1024 * 1024;
const SEGMENT = /^[a-zA-Z0-9_-]+[a-zA-Z0-9_.-]*$/;

export interface RunningBroker {
  url: string;
  port: number;
  server: Server;
  close(): Promise<void>;
  /** Counters for tests. */
  stats: { auth: number; attest: number; resource: number; released: number };
}

export function createBroker(opts: BrokerOptions): Server & { stats: RunningBroker["stats"] } {
  const sessions = new Map<string, Session>();
  const signer = new TokenSigner();
  const ttl = opts.sessionTtlMs ?? 5 * 60_000;
  const log = opts.log ?? (() => {});
  const stats = { auth: 0, attest: 0, resource: 0, released: 0 };

  const handler = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? "/", "http://x");
    const send = (status: number, body: string, headers: Record<string, string> = {}) => {
      res.writeHead(status, { "content-type": "application/json", ...headers });
      res.end(body);
      log(`${req.method} ${url.pathname} ${status}`);
    };
    const fail = (kind: KbsErrorKind, detail: string) => {
      const e = errorBody(kind, detail);
      send(e.status, e.body);
    };
    if (url.pathname === "/healthz") return send(200, "");
    if (!url.pathname.startsWith("/kbs/v0/")) return fail("PluginNotFound", DETAIL.pluginNotFound(url.pathname.split("/")[1] ?? ""));
    const parts = url.pathname.slice("/kbs/v0/".length).split("/");
    const body = await readBody(req);
    if (body === undefined) return send(413, "payload too large");
    const session = sessionOf(req);

    if (parts[0] === "auth" && req.method === "POST") {
      stats.auth++;
      let r: Record<string, unknown>;
      try {
        r = JSON.parse(body.toString("utf8"));
      } catch {
        return fail("AttestationError", DETAIL.badRequest);
      }
      if (typeof r !== "object" || r === null || typeof r.version !== "string" || typeof r.tee !== "string" || !("extra-params" in r)) return fail("AttestationError", DETAIL.badRequest);
      if (!TEES.includes(r.tee)) return fail("AttestationError", DETAIL.badRequest);
      if (!/^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$/.test(r.version)) return fail("AttestationError", DETAIL.badVersion);
      if (r.version.replace(/\+.*$/, "") !== "0.4.0") return fail("AttestationError", DETAIL.versionMismatch(r.version));
      const id = makeSessionId();
      const s: Session = { nonce: (opts.nonce ?? makeNonce)(), tee: r.tee, expires: Date.now() + ttl };
      sessions.set(id, s);
      return send(200, JSON.stringify({ nonce: s.nonce, "extra-params": "" }), { "set-cookie": cookieHeader(id, s.expires) });
    }

    if (parts[0] === "attest" && req.method === "POST") {
      stats.attest++;
      if (!session) return fail("AttestationError", DETAIL.attestFailed);
      const [id, s] = session;
      if (s.token) return send(200, JSON.stringify({ token: s.token }), { "set-cookie": cookieHeader(id, s.expires) });
      const claims = await attest(s, body);
      if (!claims) return fail("AttestationError", DETAIL.attestFailed);
      s.claims = claims;
      s.token = signer.issue(claims);
      return send(200, JSON.stringify({ token: s.token }), { "set-cookie": cookieHeader(id, s.expires) });
    }

    if (parts[0] === "resource") {
      const path = parts.slice(1);
      if (req.method === "POST" || req.method === "DELETE") {
        if (!opts.adminInsecure) return fail("AdminAuthInitialization", DETAIL.admin);
        if (path.length !== 3 || !path.every((p) => SEGMENT.test(p))) return fail("PluginInternalError", DETAIL.pluginInternal);
        if (req.method === "POST") opts.store.set(path.join("/"), body);
        else opts.store.delete(path.join("/"));
        res.writeHead(200, { "content-type": "text/xml" });
        return void res.end();
      }
      if (req.method !== "GET") return fail("PluginInternalError", DETAIL.pluginInternal);
      stats.resource++;
      let claims = session?.[1].claims;
      if (!claims) {
        const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
        if (!bearer) return fail("TokenNotFound", DETAIL.tokenNotFound);
        claims = signer.verify(bearer);
        if (!claims) return fail("TokenVerifierError", DETAIL.tokenVerifier);
      }
      const annotated = (claims.submods as any)?.cpu0?.["ear.veraison.annotated-evidence"] ?? {};
      const tee = Object.keys(annotated).find((k) => TEES.includes(k)) ?? "";
      const refusal = releaseRefusal(tee, opts);
      if (refusal) {
        log(`resource: ${refusal}`);
        return fail("PolicyDeny", DETAIL.policyDeny);
      }
      if (path.length !== 3 || !path.every((p) => SEGMENT.test(p))) return fail("PluginInternalError", DETAIL.pluginInternal);
      const value = opts.store.get(path.join("/"));
      if (!value) return fail("PluginInternalError", DETAIL.pluginInternal);
      const jwe = encryptTo(annotated.runtime_data_claims?.["tee-pubkey"], value);
      if (!jwe) return fail("JweError", DETAIL.jwe);
      stats.released++;
      return send(200, JSON.stringify(jwe));
    }
    return fail("PluginNotFound", DETAIL.pluginNotFound(parts[0] ?? ""));
  };

  function sessionOf(req: IncomingMessage): [string, Session] | undefined {
    const m = /(?:^|;\s*)kbs-session-id=([0-9a-f]{32})/.exec(req.headers.cookie ?? "");
    if (!m) return undefined;
    const s = sessions.get(m[1]!);
    if (!s) return undefined;
    if (s.expires < Date.now()) {
      sessions.delete(m[1]!);
      return undefined;
    }
    return [m[1]!, s];
  }

  /** Verifies an Attestation body against the session; returns the token claims, or undefined. */
  async function attest(s: Session, body: Buffer): Promise<Record<string, unknown> | undefined> {
    let a: any;
    try {
      a = JSON.parse(body.toString("utf8"));
    } catch {
      return undefined;
    }
    const rd = a?.["runtime-data"];
    const ev = a?.["tee-evidence"];
    if (!rd || rd.nonce !== s.nonce || typeof rd["tee-pubkey"] !== "object" || !ev || typeof ev.additional_evidence !== "string") return undefined;
    const digest = createHash(s.tee === "se" ? "sha512" : "sha384")
      .update(jcs({ "tee-pubkey": rd["tee-pubkey"], nonce: s.nonce, "additional-evidence": ev.additional_evidence }))
      .digest();
    const verdict = await verifyEvidence(s.tee, ev.primary_evidence, new Uint8Array(digest), opts.policy.tee ?? {}, new Date(), { dev: opts.dev });
    if (!verdict.ok) {
      log(`attest: ${s.tee} evidence refused: ${verdict.reasons.join("; ")}`);
      return undefined;
    }
    return earClaims(s.tee, verdict.claims, { nonce: s.nonce, "tee-pubkey": rd["tee-pubkey"] }, digest.toString("hex"));
  }

  const server = (opts.tls ? createHttps({ cert: opts.tls.cert, key: opts.tls.key }, wrap) : createHttp(wrap)) as Server & { stats: RunningBroker["stats"] };
  server.stats = stats;
  return server;

  function wrap(req: IncomingMessage, res: ServerResponse): void {
    handler(req, res).catch((e) => {
      log(`internal error: ${(e as Error).message}`);
      if (!res.headersSent) {
        const b = errorBody("SerdeError", "Serialize/Deserialize failed");
        res.writeHead(b.status, { "content-type": "application/json" });
      }
      res.end();
    });
  }
}

/** Why a release to evidence of this TEE is refused, or undefined: deny-all, a TEE not allowed, the simulated
 *  TEE outside dev mode, or (outside dev mode) a policy that does not pin the boot chain. */
export function releaseRefusal(tee: string, opts: Pick<BrokerOptions, "policy" | "dev">): string | undefined {
  if (opts.policy.denyAll) return "every release is refused (--deny-all)";
  if (!opts.policy.allowTees.includes(tee)) return `TEE ${JSON.stringify(tee)} is not allowed`;
  if (tee === "sample" && !opts.dev) return "the simulated TEE is accepted only in dev mode";
  const gaps = opts.dev ? [] : requiredPolicyGaps(tee, opts.policy.tee ?? {});
  if (gaps.length > 0) return `no release without a policy that pins the boot chain: missing ${gaps.join(", ")}`;
  return undefined;
}

/** JWE to the attested tee-pubkey: EC P-256 ECDH-ES+A256KW, or RSA-OAEP-256, as Trustee. Undefined = JweError. */
function encryptTo(jwk: any, value: Uint8Array): Record<string, string> | undefined {
  try {
    if (jwk?.kty === "EC" && jwk.crv === "P-256" && jwk.alg === "ECDH-ES+A256KW") return { ...encryptJwe(value, jwk) };
    if (jwk?.kty === "RSA" && jwk.alg === "RSA-OAEP-256") return rsaOaepJwe(jwk, value);
  } catch {
    return undefined;
  }
  return undefined;
}

function rsaOaepJwe(jwk: { n: string; e: string }, value: Uint8Array): Record<string, string> {
  const key = createPublicKey({ key: { kty: "RSA", n: jwk.n, e: jwk.e }, format: "jwk" });
  const cek = randomBytes(32);
  const iv = randomBytes(12);
  const prot = Buffer.from(JSON.stringify({ alg: "RSA-OAEP-256", enc: "A256GCM" })).toString("base64url");
  const c = createCipheriv("aes-256-gcm", cek, iv);
  c.setAAD(Buffer.from(prot));
  const ct = Buffer.concat([c.update(value), c.final()]);
  return {
    protected: prot,
    encrypted_key: publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" }, cek).toString("base64url"),
    iv: iv.toString("base64url"),
    ciphertext: ct.toString("base64url"),
    tag: c.getAuthTag().toString("base64url"),
  };
}

function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let n = 0;
    req.on("data", (c: Buffer) => {
      n += c.length;
      if (n <= MAX_REQUEST) chunks.push(c);
    });
    req.on("end", () => resolve(n > MAX_REQUEST ? undefined : Buffer.concat(chunks)));
    req.on("error", () => resolve(undefined));
  });
}

/** Starts a broker on host:port (0 = a free port) and resolves with its URL. */
export async function startBroker(opts: BrokerOptions, host = "127.0.0.1", port = 0): Promise<RunningBroker> {
  const server = createBroker(opts);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const h = host.includes(":") ? `[${host}]` : host;
  return {
    url: `${opts.tls ? "https" : "http"}://${h}:${addr.port}`,
    port: addr.port,
    server,
    stats: server.stats,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}
