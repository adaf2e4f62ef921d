// A salted HMAC session used for parameter encryption: tpmKey = the storage key the owner pinned (RSA,
// OAEP salt); no bind, AES-128-CFB, SHA-256. The unsealed secret then crosses the TPM interface encrypted,
// and the response HMAC proves it came from the TPM.
// Formulas: TPM 2.0 Library Part 1 §11.4.9 (KDFa), §19.6 (session key, HMAC), §21 (CFB encryption).
import { cfb } from "@noble/ciphers/aes.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { concat as cat, equalBytes as eq, u32be as u32 } from "../bytes.js";
import { CvmError } from "../errors.js";
import { ALG, Reader, tpm2b, Writer } from "./marshal.js";
import { CC, RH, type Tpm } from "./commands.js";
import { oaepEncryptTo, type RsaStorageKey } from "./keys.js";

const label = (s: string) => cat(new TextEncoder().encode(s), Uint8Array.of(0));

/** KDFa with SHA-256: HMAC(key, i ‖ label ‖ 0 ‖ u ‖ v ‖ bits), concatenated and cut to `bits`. */
export function kdfA(key: Uint8Array, lbl: string, u: Uint8Array, v: Uint8Array, bits: number): Uint8Array {
  const out: Uint8Array[] = [];
  for (let i = 1, n = 0; n * 8 < bits; i++, n += 32) out.push(hmac(sha256, key, cat(u32(i), label(lbl), u, v, u32(bits))));
  return cat(...out).slice(0, bits / 8);
}

export const SESSION_ATTR = { continueSession: 0x01, decrypt: 0x20, encrypt: 0x40 } as const;

export class EncryptSession {
  private constructor(
    private readonly tpm: Tpm,
    readonly handle: number,
    private sessionKey: Uint8Array,
    private nonceTPM: Uint8Array,
  ) {}

  /**
   * StartAuthSession salted to the RSA storage key the owner pinned: the salt is RSA-OAEP(SHA-256, label
   * "SECRET") encrypted to the *pinned* public key, never to one the transport returned. A substitute primary
   * cannot decrypt it, so it cannot learn the session key (and its HMACs fail). `tpmKey` is the handle of
   * the TPM's own copy of that key; the caller has checked its Name against the pin.
   */
  static async startSaltedToPinned(tpm: Tpm, tpmKey: number, pinned: RsaStorageKey): Promise<EncryptSession> {
    const salt = crypto.getRandomValues(new Uint8Array(32));
    const encrypted = await oaepEncryptTo(pinned, "SECRET", salt);
    return EncryptSession.startWithSalt(tpm, tpmKey, new Writer().u16(encrypted.length).raw(encrypted).bytes(), salt);
  }

  /** StartAuthSession with encryptedSalt (a marshalled TPM2B) and the caller's copy of the salt (wiped here). */
  private static async startWithSalt(tpm: Tpm, tpmKey: number, encryptedSalt: Uint8Array, salt: Uint8Array): Promise<EncryptSession> {
    const nonceCaller = crypto.getRandomValues(new Uint8Array(32));
    const params = new Writer().u16(32).raw(nonceCaller).raw(encryptedSalt).u8(0 /* HMAC */).u16(ALG.AES).u16(128).u16(ALG.CFB).u16(ALG.SHA256).bytes();
    try {
      const r = await tpm.call("StartAuthSession", [tpmKey, RH.NULL], params);
      const handle = r.u32();
      const nonceTPM = tpm2b.dec(r);
      return new EncryptSession(tpm, handle, kdfA(salt, "ATH", nonceTPM, nonceCaller, 256), nonceTPM);
    } finally {
      salt.fill(0);
    }
  }

  /** The auth-area entry of this session for one command (no handle authorised by it: authValue empty). */
  authEntry(cc: number, names: Uint8Array[], params: Uint8Array, attrs: number): { entry: Uint8Array; nonceCaller: Uint8Array } {
    const nonceCaller = crypto.getRandomValues(new Uint8Array(32));
    const cpHash = sha256(cat(u32(cc), ...names, params));
    const mac = hmac(sha256, this.sessionKey, cat(cpHash, nonceCaller, this.nonceTPM, Uint8Array.of(attrs)));
    return { entry: new Writer().u32(this.handle).u16(32).raw(nonceCaller).u8(attrs).u16(mac.length).raw(mac).bytes(), nonceCaller };
  }

  /** Checks this session's response HMAC and takes its new nonceTPM. */
  checkResponse(cc: number, rawParams: Uint8Array, sessions: Reader, nonceCaller: Uint8Array): void {
    const nonceTPM = tpm2b.dec(sessions);
    const attrs = sessions.u8();
    const mac = tpm2b.dec(sessions);
    const rpHash = sha256(cat(u32(0), u32(cc), rawParams));
    const want = hmac(sha256, this.sessionKey, cat(rpHash, nonceTPM, nonceCaller, Uint8Array.of(attrs)));
    if (!eq(mac, want)) throw new CvmError("TPM", "the TPM's response HMAC does not verify: the answer was altered on the way");
    this.nonceTPM = nonceTPM;
  }

  /** AES-128-CFB over a response parameter (encrypt attribute): key ‖ iv = KDFa(sessionKey, "CFB", nonceTPM, nonceCaller). */
  decryptResponse(data: Uint8Array, nonceCaller: Uint8Array): Uint8Array {
    const kiv = kdfA(this.sessionKey, "CFB", this.nonceTPM, nonceCaller, 256);
    try {
      return cfb(kiv.slice(0, 16), kiv.slice(16, 32)).decrypt(data);
    } finally {
      kiv.fill(0);
    }
  }

  /** AES-128-CFB over the first command parameter (decrypt attribute): key ‖ iv = KDFa(sessionKey, "CFB", nonceCaller, nonceTPM). */
  encryptCommand(data: Uint8Array, nonceCaller: Uint8Array): Uint8Array {
    const kiv = kdfA(this.sessionKey, "CFB", nonceCaller, this.nonceTPM, 256);
    try {
      return cfb(kiv.slice(0, 16), kiv.slice(16, 32)).encrypt(data);
    } finally {
      kiv.fill(0);
    }
  }

  /** A fresh nonceCaller for a command that will encrypt its first parameter before computing the HMAC. */
  static nonce(): Uint8Array {
    return crypto.getRandomValues(new Uint8Array(32));
  }

  /** authEntry with a nonce chosen beforehand (the parameter was encrypted with it). */
  authEntryWith(nonceCaller: Uint8Array, cc: number, names: Uint8Array[], params: Uint8Array, attrs: number): Uint8Array {
    const cpHash = sha256(cat(u32(cc), ...names, params));
    const mac = hmac(sha256, this.sessionKey, cat(cpHash, nonceCaller, this.nonceTPM, Uint8Array.of(attrs)));
    return new Writer().u32(this.handle).u16(32).raw(nonceCaller).u8(attrs).u16(mac.length).raw(mac).bytes();
  }

  async flush(): Promise<void> {
    this.sessionKey.fill(0);
    await this.tpm.flush(this.handle).catch(() => {});
  }
}

export const UNSEAL_CC = CC.Unseal;
