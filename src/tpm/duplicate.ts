// Owner side, in software: the objects a tpm2-import token carries, made without a TPM (TPM 2.0 Library
// Part 1 §23 duplication, §27 protected storage). A symmetric storage parent (AES-128-CFB, restricted
// decrypt) is duplicated to the target's storage key: seed → RSA-OAEP(SHA-256, label "DUPLICATE\0"), outer
// wrap = AES-128-CFB (IV 0) under KDFa(seed, "STORAGE", Name) + HMAC under KDFa(seed, "INTEGRITY"). The sealed
// object is the parent's child: its private area is protected the same way under the parent's seedValue,
// with an IV. The target TPM's Import/Load checks every HMAC, so a wrong byte never loads.
import { cfb } from "@noble/ciphers/aes.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { concat } from "../bytes.js";
import type { Secret } from "../log/secret.js";
import { ALG, encode, tpm2b, TYPES, Writer, type TpmtPublic } from "./marshal.js";
import { kdfA } from "./session.js";

import { nameOf, oaepEncryptTo, type RsaStorageKey } from "./keys.js";

/** TPMT_SENSITIVE marshalled as a TPM2B: type, authValue (empty), seedValue, sensitive. */
function sensitive(type: number, seedValue: Uint8Array, data: Uint8Array): Uint8Array {
  const inner = new Writer().u16(type).u16(0).u16(seedValue.length).raw(seedValue).u16(data.length).raw(data).bytes();
  return new Writer().u16(inner.length).raw(inner).bytes();
}

/** An outer/storage wrap: [TPM2B integrity][TPM2B iv]? [AES-CFB(sensitive)] as a TPM2B_PRIVATE. */
function wrap(seed: Uint8Array, name: Uint8Array, sens: Uint8Array, iv?: Uint8Array): Uint8Array {
  const symKey = kdfA(seed, "STORAGE", name, new Uint8Array(0), 128);
  const hmacKey = kdfA(seed, "INTEGRITY", new Uint8Array(0), new Uint8Array(0), 256);
  const enc = cfb(symKey, iv ?? new Uint8Array(16)).encrypt(sens);
  const body = iv ? concat(new Writer().u16(iv.length).raw(iv).bytes(), enc) : enc;
  const integrity = hmac(sha256, hmacKey, concat(body, name));
  symKey.fill(0);
  hmacKey.fill(0);
  const all = concat(new Writer().u16(integrity.length).raw(integrity).bytes(), body);
  return new Writer().u16(all.length).raw(all).bytes();
}

export interface ImportBlobs {
  parentPub: Uint8Array;
  parentPrv: Uint8Array;
  parentSeed: Uint8Array;
  sealPub: Uint8Array;
  sealPrv: Uint8Array;
}

/** Everything the token needs to carry `secret`, sealed to `policy`, for import under `srk`. */
export async function makeImportBlobs(srk: RsaStorageKey, policy: Uint8Array, secret: Secret): Promise<ImportBlobs> {
  const rnd = (n: number) => crypto.getRandomValues(new Uint8Array(n));
  // The storage parent: AES-128-CFB symmetric key, restricted|decrypt|userWithAuth, duplicable.
  const parentKey = rnd(16), parentSeedValue = rnd(32);
  const parentPub: TpmtPublic = {
    type: ALG.SYMCIPHER, nameAlg: ALG.SHA256, objectAttributes: 0x00030040, authPolicy: new Uint8Array(0),
    // A parent's unique is HMAC(seedValue, key) (TPM reference code, CryptComputeSymmetricUnique); other
    // symmetric/keyed-hash objects use H(seedValue ‖ data).
    sym: { algorithm: ALG.AES, keyBits: 128, mode: ALG.CFB }, unique: hmac(sha256, parentSeedValue, parentKey),
  };
  const parentName = nameOf(parentPub);
  // The sealed child: KEYEDHASH, fixedParent only (its parent is duplicable), no userWithAuth, the PCR policy.
  const childObf = rnd(32);
  const sealPub = secret.use((data): TpmtPublic => ({
    type: ALG.KEYEDHASH, nameAlg: ALG.SHA256, objectAttributes: 0x00000010, authPolicy: policy, scheme: { scheme: ALG.NULL }, unique: sha256(concat(childObf, data)),
  }));
  const childSens = secret.use((data) => sensitive(ALG.KEYEDHASH, childObf, data));
  const sealPrv = wrap(parentSeedValue, nameOf(sealPub), childSens, rnd(16));
  childSens.fill(0);
  // The parent's duplication blob to the SRK (outer wrapper only).
  const dupSeed = rnd(32);
  const parentSens = sensitive(ALG.SYMCIPHER, parentSeedValue, parentKey);
  const parentPrv = wrap(dupSeed, parentName, parentSens);
  const encSeed = await oaepEncryptTo(srk, "DUPLICATE", dupSeed);
  [parentKey, parentSeedValue, childObf, dupSeed, parentSens].forEach((b) => b.fill(0));
  return {
    parentPub: encode(TYPES.TPM2B_PUBLIC, parentPub),
    parentPrv,
    parentSeed: encode(tpm2b, encSeed),
    sealPub: encode(TYPES.TPM2B_PUBLIC, sealPub),
    sealPrv,
  };
}
