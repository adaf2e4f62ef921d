// Names and storage keys of TPM objects, computed in software (no node:crypto, so the agent's convert path
// loads nothing heavy): the Name the TPM reports for an object, and the RSA storage key a pin describes.
import { sha256 } from "../hash.js";
import { concat, u32be } from "../bytes.js";
import { CvmError } from "../errors.js";
import { ALG, decode, encode, TYPES, type TpmtPublic } from "./marshal.js";

/** An object's Name: nameAlg (SHA-256) ‖ SHA-256(TPMT_PUBLIC). */
export const nameOf = (pub: TpmtPublic): Uint8Array => concat(Uint8Array.of(0, 0x0b), sha256(encode(TYPES.TPMT_PUBLIC, pub)));

export interface RsaStorageKey {
  n: Uint8Array;
  e: number;
}

/** The RSA storage key a TPM2B_PUBLIC describes (the target's SRK). */
export function rsaStorageKey(pub: TpmtPublic): RsaStorageKey {
  if (pub.type !== ALG.RSA || pub.nameAlg !== ALG.SHA256) throw new CvmError("TPM", "the target storage key must be an RSA key with SHA-256 name algorithm");
  if ((pub.objectAttributes & 0x30000) !== 0x30000) throw new CvmError("TPM", "the target key is not a restricted decryption (storage) key");
  return { n: pub.unique as Uint8Array, e: (pub.exponent as number) || 65537 };
}

/** RSA-OAEP with SHA-256 to a storage key, with the TPM's label convention (the label and a NUL): how a
 *  salt ("SECRET") or a duplication seed ("DUPLICATE") is encrypted to a TPM's key. */
export async function oaepEncryptTo(key: RsaStorageKey, label: string, data: Uint8Array): Promise<Uint8Array> {
  let e = u32be(key.e);
  while (e.length > 1 && e[0] === 0) e = e.subarray(1); // minimal big-endian, as JWK wants
  const b64u = (b: Uint8Array) => Buffer.from(b).toString("base64url");
  const k = await crypto.subtle.importKey("jwk", { kty: "RSA", n: b64u(key.n), e: b64u(e), alg: "RSA-OAEP-256", ext: true }, { name: "RSA-OAEP", hash: "SHA-256" }, false, ["encrypt"]);
  return new Uint8Array(await crypto.subtle.encrypt({ name: "RSA-OAEP", label: new TextEncoder().encode(`${label}\0`) }, k, new Uint8Array(data)));
}

/** The pinned storage key (tpm.srk): a marshalled TPM2B_PUBLIC of an RSA storage key, or a typed TPM error. */
export function pinnedStorageKey(b: Uint8Array, what: string): TpmtPublic {
  let pub: TpmtPublic;
  try {
    if (b.length < 2 || ((b[0]! << 8) | b[1]!) !== b.length - 2) throw new Error("not a TPM2B of its own length");
    pub = decode(TYPES.TPM2B_PUBLIC, b, what);
  } catch (e) {
    throw new CvmError("TPM", `${what}: not a TPM2B_PUBLIC (${(e as Error).message.slice(0, 80)})`, { reason: "malformed" });
  }
  rsaStorageKey(pub);
  return pub;
}
