// The JWE the KBS returns: flattened JSON, alg ECDH-ES+A256KW (P-256, Concat KDF with SHA-256 and empty
// apu/apv), enc A256GCM, AAD = the received `protected` string. Decryption accepts only what the agent
// asked for, checks the shape strictly, and fails uniformly on any crypto error.
// The agent's key pair and ECDH use WebCrypto: native (≈0.3 ms instead of ≈35 ms for a cold noble P-256
// keygen in the compiled binary) and non-extractable, so the private key never exists as bytes in JS
// memory. Concat KDF, AES-KW and AES-GCM are noble's. The broker side (jwe-encrypt.ts) uses noble's P-256,
// so the two directions are independent implementations checked against each other.
import { aeskw, gcm } from "@noble/ciphers/aes.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { CvmError } from "../errors.js";
import { Secret } from "../log/secret.js";
import { b64urlDecode, b64urlEncode, utf8 } from "./b64.js";

export const ALG = "ECDH-ES+A256KW";
export const ENC = "A256GCM";

export interface EcPublicJwk {
  kty: "EC";
  crv: "P-256";
  alg: typeof ALG;
  x: string;
  y: string;
}

export interface FlattenedJwe {
  protected: string;
  encrypted_key: string;
  iv: string;
  ciphertext: string;
  tag: string;
}

/** The agent's ephemeral key pair for one attempt; the private half is a non-extractable CryptoKey. */
export interface TeeKeyPair {
  publicJwk: EcPublicJwk;
  privateKey: CryptoKey;
}

const ECDH = { name: "ECDH", namedCurve: "P-256" } as const;

export async function generateTeeKey(): Promise<TeeKeyPair> {
  const kp = (await crypto.subtle.generateKey(ECDH, false, ["deriveBits"])) as CryptoKeyPair;
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", kp.publicKey));
  return { publicJwk: publicJwkOf(raw), privateKey: kp.privateKey };
}

/** A private JWK as a non-extractable ECDH key (vectors and tests). */
export async function importPrivateJwk(jwk: { x: string; y: string; d: string }): Promise<CryptoKey> {
  return crypto.subtle.importKey("jwk", { kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y, d: jwk.d, ext: false }, ECDH, false, ["deriveBits"]);
}

export function publicJwkOf(uncompressed: Uint8Array): EcPublicJwk {
  return { kty: "EC", crv: "P-256", alg: ALG, x: b64urlEncode(uncompressed.slice(1, 33)), y: b64urlEncode(uncompressed.slice(33, 65)) };
}

/** Concat KDF (NIST SP 800-56A, RFC 7518 §4.6.2) for one 256-bit key, empty PartyUInfo/PartyVInfo. */
export function concatKdf(z: Uint8Array, algorithmId: string): Uint8Array {
  const alg = utf8(algorithmId);
  const other = new Uint8Array(4 + alg.length + 4 + 4 + 4);
  const dv = new DataView(other.buffer);
  dv.setUint32(0, alg.length);
  other.set(alg, 4);
  dv.setUint32(4 + alg.length + 8, 256);
  const input = new Uint8Array(4 + z.length + other.length);
  new DataView(input.buffer).setUint32(0, 1);
  input.set(z, 4);
  input.set(other, 4 + z.length);
  const out = sha256(input);
  input.fill(0);
  return out;
}

function jweError(kind: "malformed" | "not-allowed" | "failed", message: string): CvmError {
  return new CvmError("BROKER_PROTOCOL", message, { jwe: kind });
}

const MEMBERS = ["protected", "encrypted_key", "iv", "ciphertext", "tag"] as const;
const MAX_CIPHERTEXT = 64 * 1024;

/** Parses and checks the shape; throws BROKER_PROTOCOL with a specific (non-secret) reason. */
export function parseJwe(body: unknown): { jwe: FlattenedJwe; header: { alg: string; enc: string; epk: { kty: string; crv: string; x: string; y: string } } } {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw jweError("malformed", "JWE: not a JSON object");
  const o = body as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!(MEMBERS as readonly string[]).includes(k)) throw jweError("malformed", `JWE: unexpected member ${JSON.stringify(k.slice(0, 32))}`);
  }
  for (const k of MEMBERS) if (typeof o[k] !== "string") throw jweError("malformed", `JWE: member ${k} missing or not a string`);
  const jwe = o as unknown as FlattenedJwe;
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(b64urlDecode(jwe.protected, "JWE protected")));
  } catch {
    throw jweError("malformed", "JWE: protected header is not base64url JSON");
  }
  if (typeof header !== "object" || header === null) throw jweError("malformed", "JWE: protected header is not an object");
  const h = header as Record<string, unknown>;
  for (const k of Object.keys(h)) if (!["alg", "enc", "epk"].includes(k)) throw jweError("not-allowed", `JWE: header member ${JSON.stringify(k.slice(0, 32))} not allowed`);
  const epk = h.epk as Record<string, unknown> | undefined;
  if (typeof epk !== "object" || epk === null || typeof epk.x !== "string" || typeof epk.y !== "string") throw jweError("malformed", "JWE: epk missing");
  return { jwe, header: h as never };
}

/** Decrypts with the agent's private key. Only ECDH-ES+A256KW / A256GCM on P-256 is accepted. */
export async function decryptJwe(body: unknown, privateKey: CryptoKey): Promise<Secret> {
  const { jwe, header } = parseJwe(body);
  if (header.alg !== ALG) throw jweError("not-allowed", `JWE: alg ${JSON.stringify(String(header.alg).slice(0, 32))} not allowed (asked for ${ALG})`);
  if (header.enc !== ENC) throw jweError("not-allowed", `JWE: enc ${JSON.stringify(String(header.enc).slice(0, 32))} not allowed (only ${ENC})`);
  if (header.epk.kty !== "EC" || header.epk.crv !== "P-256") throw jweError("not-allowed", "JWE: epk must be an EC P-256 key");
  const iv = b64urlDecode(jwe.iv, "JWE iv");
  const tag = b64urlDecode(jwe.tag, "JWE tag");
  const wrapped = b64urlDecode(jwe.encrypted_key, "JWE encrypted_key");
  const ct = b64urlDecode(jwe.ciphertext, "JWE ciphertext");
  if (iv.length !== 12 || tag.length !== 16 || wrapped.length !== 40 || ct.length > MAX_CIPHERTEXT) {
    throw jweError("malformed", "JWE: iv, tag or encrypted_key has the wrong length");
  }
  let z: Uint8Array | undefined, kek: Uint8Array | undefined, cek: Uint8Array | undefined;
  try {
    const epk = new Uint8Array(65);
    epk[0] = 4;
    epk.set(b64urlDecode(header.epk.x, "epk.x"), 1);
    epk.set(b64urlDecode(header.epk.y, "epk.y"), 33);
    // importKey rejects a point that is not on the curve.
    const peer = await crypto.subtle.importKey("raw", epk, ECDH, false, []);
    z = new Uint8Array(await crypto.subtle.deriveBits({ name: "ECDH", public: peer }, privateKey, 256));
    kek = concatKdf(z, ALG);
    cek = aeskw(kek).decrypt(wrapped);
    const sealed = new Uint8Array(ct.length + 16);
    sealed.set(ct);
    sealed.set(tag, ct.length);
    return Secret.adopt(gcm(cek, iv, utf8(jwe.protected)).decrypt(sealed));
  } catch {
    throw jweError("failed", "JWE: decryption failed");
  } finally {
    z?.fill(0);
    kek?.fill(0);
    cek?.fill(0);
  }
}
