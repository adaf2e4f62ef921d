// The object-level operations the conversion needs, on top of the commands: primaries with the exact
// templates systemd 252 and the RHEL converter use, Import/Load, PCR policy sessions, Unseal and Create.
// Every handle created here is returned to the caller, who flushes it in a `finally`.
import { concat, equalBytes } from "../bytes.js";
import { CvmError } from "../errors.js";
import { Secret } from "../log/secret.js";
import { ALG, decode, ECC_NIST_P256, encode, pcrMask, tpm2b, TYPES, Writer, type TpmtPublic } from "./marshal.js";
import { BANKS, CC, RH, TpmError, type Tpm } from "./commands.js";
import { EncryptSession, SESSION_ATTR } from "./session.js";


/** A password session with an empty password (TPM_RS_PW). */
export const PW_SESSION = new Writer().u32(RH.PW).u16(0).u8(0).u16(0).bytes();

export const TPMA = { fixedTPM: 0x2, fixedParent: 0x10, sensitiveDataOrigin: 0x20, userWithAuth: 0x40, noDA: 0x400, restricted: 0x10000, decrypt: 0x20000 } as const;
const AES128CFB = { algorithm: ALG.AES, keyBits: 128, mode: ALG.CFB };

/** systemd 252's primary (legacy template): ECC P-256, AES-128-CFB, no noDA, no unique. */
export const SYSTEMD_ECC_PRIMARY: TpmtPublic = {
  type: ALG.ECC, nameAlg: ALG.SHA256, objectAttributes: 0x00030072, authPolicy: new Uint8Array(0),
  sym: AES128CFB, scheme: { scheme: ALG.NULL }, curveID: ECC_NIST_P256, kdf: { scheme: ALG.NULL }, x: new Uint8Array(0), y: new Uint8Array(0),
};

/** The RHEL converter's RSA-2048 storage primary (the "SRK" the owner wraps to): 252's attributes | noDA. */
export function rhelSrkTemplate(unique: Uint8Array = new Uint8Array(0)): TpmtPublic {
  return {
    type: ALG.RSA, nameAlg: ALG.SHA256, objectAttributes: 0x00030472, authPolicy: new Uint8Array(0),
    sym: AES128CFB, scheme: { scheme: ALG.NULL }, keyBits: 2048, exponent: 0, unique,
  };
}

/** systemd 252's sealed object: KEYEDHASH, fixedTPM|fixedParent, the policy digest as authPolicy. */
export function sealedTemplate(policy: Uint8Array): TpmtPublic {
  return { type: ALG.KEYEDHASH, nameAlg: ALG.SHA256, objectAttributes: TPMA.fixedTPM | TPMA.fixedParent, authPolicy: policy, scheme: { scheme: ALG.NULL }, unique: new Uint8Array(32) };
}

const emptyCreate = new Writer().u16(4).u16(0).u16(0).bytes(); // TPM2B_SENSITIVE_CREATE {userAuth ε, data ε}

export async function createPrimary(tpm: Tpm, template: TpmtPublic): Promise<{ handle: number; public: TpmtPublic; name: Uint8Array }> {
  const params = new Writer().raw(emptyCreate).raw(encode(TYPES.TPM2B_PUBLIC, template)).u16(0).u32(0).bytes();
  const { handles, params: r } = await tpm.callAuth("CreatePrimary", [RH.OWNER], params, PW_SESSION, 1);
  const pub = TYPES.TPM2B_PUBLIC.dec(r);
  tpm2b.dec(r); // creationData
  tpm2b.dec(r); // creationHash
  r.u16(); // creation ticket: tag, hierarchy, digest
  r.u32();
  tpm2b.dec(r);
  return { handle: handles[0]!, public: pub, name: tpm2b.dec(r) };
}

/** TPM2_Import of a duplicated object (outer wrapper only, symmetricAlg NULL) under `parent`. */
export async function importObject(tpm: Tpm, parent: number, pub: Uint8Array, dup: Uint8Array, seed: Uint8Array): Promise<Uint8Array> {
  const params = new Writer().u16(0).raw(pub).raw(dup).raw(seed).u16(ALG.NULL).bytes();
  const { params: r } = await tpm.callAuth("Import", [parent], params, PW_SESSION);
  return tpm2b.dec(r);
}

/** TPM2_Load: `priv` and `pub` are marshalled TPM2B_PRIVATE / TPM2B_PUBLIC. */
export async function load(tpm: Tpm, parent: number, priv: Uint8Array, pub: Uint8Array): Promise<number> {
  return (await loadNamed(tpm, parent, priv, pub)).handle;
}

/** TPM2_Load, also returning the object's Name (needed in cpHash when a session HMACs a command on it). */
export async function loadNamed(tpm: Tpm, parent: number, priv: Uint8Array, pub: Uint8Array): Promise<{ handle: number; name: Uint8Array }> {
  const { handles, params } = await tpm.callAuth("Load", [parent], new Writer().raw(priv).raw(pub).bytes(), PW_SESSION, 1);
  return { handle: handles[0]!, name: tpm2b.dec(params) };
}

export const SE = { HMAC: 0, POLICY: 1 } as const;

/** StartAuthSession with tpmKey = bind = TPM_RH_NULL (unsalted, unbound), no symmetric, SHA-256. */
export async function startPolicySession(tpm: Tpm): Promise<number> {
  const nonce = crypto.getRandomValues(new Uint8Array(16));
  const params = new Writer().u16(nonce.length).raw(nonce).u16(0).u8(SE.POLICY).u16(ALG.NULL).u16(ALG.SHA256).bytes();
  const r = await tpm.call("StartAuthSession", [RH.NULL, RH.NULL], params);
  return r.u32();
}

export async function policyPcr(tpm: Tpm, session: number, bank: string, pcrs: readonly number[]): Promise<void> {
  const alg = BANKS[bank];
  if (alg === undefined) throw new CvmError("TPM", `unknown PCR bank ${bank}`);
  const sel = encode(TYPES.TPML_PCR_SELECTION, [{ hash: alg, pcrSelect: pcrMask(pcrs) }]);
  await tpm.call("PolicyPCR", [session], new Writer().u16(0).raw(sel).bytes());
}

export async function policyGetDigest(tpm: Tpm, session: number): Promise<Uint8Array> {
  return tpm2b.dec(await tpm.call("PolicyGetDigest", [session], new Uint8Array(0)));
}

/** The auth area for a policy session without PolicyAuthValue: its handle, a fresh nonce, continueSession, no HMAC. */
function policyAuth(session: number): Uint8Array {
  const nonce = crypto.getRandomValues(new Uint8Array(16));
  return new Writer().u32(session).u16(nonce.length).raw(nonce).u8(0x01).u16(0).bytes();
}

/** TPM_RC_PCR_CHANGED: a PCR was extended between PolicyPCR and the command that used the session. */
export const RC_PCR_CHANGED = 0x128;
const PCR_CHANGED_TRIES = 3;

/** Unseal with a fresh PolicyPCR session; a PCR extended in between (TPM_RC_PCR_CHANGED) is retried with a
 *  new policy session, at most PCR_CHANGED_TRIES times in all. */
export async function unsealWithPcrPolicy(tpm: Tpm, item: number, bank: string, pcrs: readonly number[], expectDigest?: Uint8Array, enc?: { session: EncryptSession; itemName: Uint8Array }): Promise<Secret> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await unsealOnce(tpm, item, bank, pcrs, expectDigest, enc);
    } catch (e) {
      if (!(e instanceof TpmError && e.rc === RC_PCR_CHANGED) || attempt >= PCR_CHANGED_TRIES) throw e;
    }
  }
}

/** Unseal `item` through a PolicyPCR session over the current PCRs; the session is flushed here. With
 *  `enc`, a salted session rides along with the encrypt attribute: outData crosses the interface encrypted
 *  and the response HMAC is checked before the secret is trusted. */
async function unsealOnce(tpm: Tpm, item: number, bank: string, pcrs: readonly number[], expectDigest?: Uint8Array, enc?: { session: EncryptSession; itemName: Uint8Array }): Promise<Secret> {
  const session = await startPolicySession(tpm);
  try {
    await policyPcr(tpm, session, bank, pcrs);
    if (expectDigest) {
      const d = await policyGetDigest(tpm, session);
      if (!equalBytes(d, expectDigest)) {
        throw new CvmError("TPM", `the current PCRs ${bank}:${pcrs.join(",")} do not satisfy the object's policy (PCR mismatch)`, { reason: "pcr-mismatch" });
      }
    }
    if (!enc) {
      const { params } = await tpm.callAuth("Unseal", [item], new Uint8Array(0), policyAuth(session));
      return Secret.adopt(tpm2b.dec(params));
    }
    const attrs = SESSION_ATTR.encrypt | SESSION_ATTR.continueSession;
    const second = enc.session.authEntry(CC.Unseal, [enc.itemName], new Uint8Array(0), attrs);
    const rsp = await tpm.callAuth("Unseal", [item], new Uint8Array(0), concat(policyAuth(session), second.entry));
    tpm2b.dec(rsp.sessions); // the policy session's nonceTPM
    rsp.sessions.u8();
    tpm2b.dec(rsp.sessions); // its (empty) HMAC
    enc.session.checkResponse(CC.Unseal, rsp.rawParams, rsp.sessions, second.nonceCaller);
    const sealed = tpm2b.dec(rsp.params);
    try {
      return Secret.adopt(enc.session.decryptResponse(sealed, second.nonceCaller));
    } finally {
      sealed.fill(0);
    }
  } catch (e) {
    if (e instanceof TpmError && e.rc === 0x99d) throw new CvmError("TPM", `the current PCRs ${bank}:${pcrs.join(",")} do not satisfy the sealed object's policy (PCR mismatch)`, { reason: "pcr-mismatch", rc: e.rc });
    throw e;
  } finally {
    await tpm.flush(session).catch(() => {});
  }
}

/** TPM2_Create of a sealed object holding `secret`; returns the marshalled TPM2B_PRIVATE and TPM2B_PUBLIC.
 *  With `enc` (a salted session, decrypt attribute) inSensitive crosses the interface AES-CFB encrypted. */
export async function createSealed(tpm: Tpm, parent: number, template: TpmtPublic, secret: Secret, enc?: { session: EncryptSession; parentName: Uint8Array }): Promise<{ priv: Uint8Array; pub: Uint8Array }> {
  const inner = secret.use((b) => new Writer().u16(0).u16(b.length).raw(b).bytes()); // TPM2B_SENSITIVE_CREATE contents
  const nonce = EncryptSession.nonce();
  const body = enc ? enc.session.encryptCommand(inner, nonce) : inner;
  const sens = new Writer().u16(body.length).raw(body).bytes();
  inner.fill(0);
  try {
    const params = new Writer().raw(sens).raw(encode(TYPES.TPM2B_PUBLIC, template)).u16(0).u32(0).bytes();
    const attrs = SESSION_ATTR.decrypt | SESSION_ATTR.continueSession;
    const auth = enc ? concat(PW_SESSION, enc.session.authEntryWith(nonce, CC.Create, [enc.parentName], params, attrs)) : PW_SESSION;
    const rsp = await tpm.callAuth("Create", [parent], params, auth);
    if (enc) {
      tpm2b.dec(rsp.sessions); // the password session's response: empty nonce, attrs, empty hmac
      rsp.sessions.u8();
      tpm2b.dec(rsp.sessions);
      enc.session.checkResponse(CC.Create, rsp.rawParams, rsp.sessions, nonce);
    }
    const r = rsp.params;
    const priv = tpm2b.dec(r);
    const pub = tpm2b.dec(r);
    return { priv: encode(tpm2b, priv), pub: encode(tpm2b, pub) };
  } finally {
    sens.fill(0);
  }
}

/** A marshalled TPM2B that must span exactly `b` (a blob from a token); typed error otherwise. */
export function checkTpm2b(b: Uint8Array, what: string): Uint8Array {
  if (b.length < 2 || ((b[0]! << 8) | b[1]!) !== b.length - 2) throw new CvmError("TPM", `${what}: not a TPM2B of its own length`, { reason: "malformed" });
  return b;
}

/** Parses a marshalled TPM2B_PUBLIC (typed error when it is not one). */
export function parsePublic(b: Uint8Array, what: string): TpmtPublic {
  try {
    return decode(TYPES.TPM2B_PUBLIC, checkTpm2b(b, what), what);
  } catch (e) {
    if (e instanceof CvmError) throw e;
    throw new CvmError("TPM", `${what}: ${(e as Error).message}`, { reason: "malformed" });
  }
}


/** TPM2_ReadPublic: an object's public area and Name. */
export async function readPublic(tpm: Tpm, handle: number): Promise<{ public: TpmtPublic; name: Uint8Array }> {
  const r = await tpm.call("ReadPublic", [handle], new Uint8Array(0));
  return { public: TYPES.TPM2B_PUBLIC.dec(r), name: tpm2b.dec(r) };
}

/** TPM2_PolicyAuthValue on a policy session (PIN tokens: PolicyPCR, then this). */
export async function policyAuthValue(tpm: Tpm, session: number): Promise<void> {
  await tpm.call("PolicyAuthValue", [session], new Uint8Array(0));
}
