// The JWE the KBS returns: flattened JSON, alg ECDH-ES+A256KW (P-256, Concat KDF with SHA-256 and empty
// apu/apv), enc A256GCM, AAD = the received `protected` string. Decryption takes an allow-list from the
// caller (the algorithm it asked for), checks the shape strictly, and fails uniformly on any crypto error.
// encrypt() is the broker side, used by the dev broker and tests.
import { aeskw, gcm } from "@noble/ciphers/aes.js";
import { p256 } from "@noble/curves/nist.js";
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

/** The agent's ephemeral key pair for one attempt. The private half is a Secret. */
export interface TeeKeyPair {
  publicJwk: EcPublicJwk;
  privateKey: Secret;
}

export function generateTeeKey(random: (n: number) => Uint8Array = randomBytes): TeeKeyPair {
  const sk = p256.utils.randomSecretKey(random(48));
  return { publicJwk: publicJwkOf(p256.getPublicKey(sk, false)), privateKey: Secret.adopt(sk) };
}

export function publicJwkOf(uncompressed: Uint8Array): EcPublicJwk {
  return { kty: "EC", crv: "P-256", alg: ALG, x: b64urlEncode(uncompressed.slice(1, 33)), y: b64urlEncode(uncompressed.slice(33, 65)) };
}

function randomBytes(n: number): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(n));
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
export function decryptJwe(body: unknown, privateKey: Secret): Secret {
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
    z = privateKey.use((sk) => p256.getSharedSecret(sk, epk, true)).slice(1);
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

/** Broker side: encrypts to an EC P-256 tee-pubkey exactly as Trustee does (header member order alg, enc, epk{crv,kty,x,y}). */
export function encryptJwe(plaintext: Uint8Array, recipient: { x: string; y: string }, random: (n: number) => Uint8Array = randomBytes): FlattenedJwe {
  const esk = p256.utils.randomSecretKey(random(48));
  const epub = p256.getPublicKey(esk, false);
  const rpub = new Uint8Array(65);
  rpub[0] = 4;
  rpub.set(b64urlDecode(recipient.x, "x"), 1);
  rpub.set(b64urlDecode(recipient.y, "y"), 33);
  const z = p256.getSharedSecret(esk, rpub, true).slice(1);
  const kek = concatKdf(z, ALG);
  const cek = random(32);
  const iv = random(12);
  const epk = publicJwkOf(epub);
  const protectedB64 = b64urlEncode(utf8(JSON.stringify({ alg: ALG, enc: ENC, epk: { crv: epk.crv, kty: epk.kty, x: epk.x, y: epk.y } })));
  const sealed = gcm(cek, iv, utf8(protectedB64)).encrypt(plaintext);
  const out = {
    protected: protectedB64,
    encrypted_key: b64urlEncode(aeskw(kek).encrypt(cek)),
    iv: b64urlEncode(iv),
    ciphertext: b64urlEncode(sealed.subarray(0, sealed.length - 16)),
    tag: b64urlEncode(sealed.subarray(sealed.length - 16)),
  };
  [esk, z, kek, cek].forEach((b) => b.fill(0));
  return out;
}
