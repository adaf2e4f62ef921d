// Trustee KBS 0.4.0 server-side shapes the dev broker must match byte for byte: error bodies, the
// session cookie, the nonce, the EAR-shaped token and the JWE (shared/reference/kbs-protocol.md §2, §9, §11).
import { createPublicKey, generateKeyPairSync, randomBytes, sign, verify, type KeyObject } from "node:crypto";

export const ERROR_TYPE_PREFIX = "https://github.com/confidential-containers/kbs/errors/";

export type KbsErrorKind =
  | "AttestationError" | "TokenNotFound" | "TokenVerifierError" | "PolicyDeny" | "PluginInternalError"
  | "JweError" | "PluginNotFound" | "InvalidRequestPath" | "AdminAuthInitialization" | "SerdeError";

export const DETAIL = {
  versionMismatch: (v: string) => `Attestation error: RCAR handshake Auth failed: KBS Client Protocol Version Mismatch: expect =0.4.0 while the request is ${v}`,
  badVersion: "Attestation error: RCAR handshake Auth failed: failed to parse KBS version",
  badRequest: "Attestation error: RCAR handshake Auth failed: deserialize Request",
  attestFailed: "Attestation error: RCAR handshake Attest failed",
  tokenNotFound: "Attestation Token not found",
  tokenVerifier: "Token Verifier error",
  policyDeny: "Access denied by policy",
  pluginInternal: "Plugin internal error",
  jwe: "JWE failed",
  pluginNotFound: (p: string) => `Plugin ${p} not found`,
  admin: "failed to initialize [admin] configuration: admin API disabled in this dev broker (start it with --admin-insecure)",
} as const;

export function errorBody(kind: KbsErrorKind, detail: string): { status: number; body: string } {
  const status = kind === "PluginNotFound" || kind === "InvalidRequestPath" ? 404 : 401;
  return { status, body: JSON.stringify({ type: ERROR_TYPE_PREFIX + kind, detail }) };
}

export const TEES = ["snp", "tdx", "az-snp-vtpm", "az-tdx-vtpm", "sample", "sampledevice", "sgx", "cca", "csv", "se", "tpm", "nvidia", "hygondcu"];

/** 32 random bytes, standard base64 with padding (44 characters), as Trustee's make_nonce. */
export const makeNonce = (): string => randomBytes(32).toString("base64");
/** UUID v4 in "simple" form: 32 lowercase hex. */
export function makeSessionId(): string {
  const b = randomBytes(16);
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  return b.toString("hex");
}

export const cookieHeader = (id: string, expires: number): string => `kbs-session-id=${id}; Expires=${new Date(expires).toUTCString()}`;

/** ES256 signer for EAR-shaped attestation tokens; the key lives only in this process. */
export class TokenSigner {
  private readonly key: KeyObject;
  readonly publicJwk: Record<string, string>;
  constructor() {
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    this.key = privateKey;
    const jwk = publicKey.export({ format: "jwk" }) as Record<string, string>;
    this.publicJwk = { kty: jwk.kty!, crv: jwk.crv!, x: jwk.x!, y: jwk.y! };
  }
  issue(claims: Record<string, unknown>): string {
    const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
    const input = `${enc({ alg: "ES256", typ: "JWT", jwk: this.publicJwk })}.${enc(claims)}`;
    const sig = sign("sha256", Buffer.from(input), { key: this.key, dsaEncoding: "ieee-p1363" });
    return `${input}.${sig.toString("base64url")}`;
  }
  /** Claims of a token this signer issued and that has not expired (60 s leeway, as jsonwebtoken). */
  verify(token: string, nowS = Date.now() / 1000): Record<string, unknown> | undefined {
    const parts = token.split(".");
    if (parts.length !== 3) return undefined;
    const ok = verify("sha256", Buffer.from(`${parts[0]}.${parts[1]}`), { key: createPublicKey(this.key), dsaEncoding: "ieee-p1363" }, Buffer.from(parts[2]!, "base64url"));
    if (!ok) return undefined;
    try {
      const claims = JSON.parse(Buffer.from(parts[1]!, "base64url").toString("utf8"));
      return typeof claims.exp === "number" && claims.exp + 60 >= nowS ? claims : undefined;
    } catch {
      return undefined;
    }
  }
}

export function earClaims(tee: string, teeClaims: Record<string, unknown>, runtime: { nonce: string; "tee-pubkey": unknown }, reportDataHex: string): Record<string, unknown> {
  const iat = Math.floor(Date.now() / 1000);
  return {
    eat_profile: "tag:github.com,2024:confidential-containers/Trustee",
    iat,
    exp: iat + 300,
    iss: "cvm-unlock-dev-broker",
    "ear.verifier-id": { developer: "cvm-unlock", build: "dev-broker" },
    submods: {
      cpu0: {
        "ear.status": tee === "sample" ? "warning" : "affirming",
        "ear.appraisal-policy-id": "default",
        "ear.veraison.annotated-evidence": {
          [tee]: teeClaims,
          report_data: reportDataHex,
          runtime_data_claims: { ...runtime, "additional-evidence": "" },
        },
      },
    },
  };
}
