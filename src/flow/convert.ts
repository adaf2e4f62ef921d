// First-boot conversion of the owner's tpm2-import tokens into systemd-tpm2 tokens sealed to this vTPM,
// so that later boots unlock from it alone. The LUKS header is the only state, and every step leaves at
// least one working token behind:
//   1. unseal the owner's secret (Import → Load → Load → PolicyPCR → Unseal), in memory only;
//   2. reseal it under systemd 252's ECC primary with the owner's PCR policy, and prove the new blob: unseal
//      it again and test the keyslot with base64(secret) — nothing is written before this passes;
//   3. add the systemd-tpm2 token (cryptsetup token import);
//   4. only then remove the tpm2-import token.
// A run interrupted after 3 finds a systemd-tpm2 token for the keyslot, verifies it, and finishes with 4.
import { equalBytes, hex } from "../bytes.js";
import type { Fault } from "./fault.js";
import { CvmError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import { Secret } from "../log/secret.js";
import { readLuksHeaderFile, type LuksHeader, type Token } from "../luks/header.js";
import { importToken, keyslotOpens, removeToken } from "../luks/tokens.js";
import { isPcrList, tokenBank, type Tpm } from "../tpm/commands.js";
import { nameOf, rsaStorageKey } from "../tpm/keys.js";
import { decode, encode, tpm2b, TYPES, type TpmtPublic } from "../tpm/marshal.js";
import { checkTpm2b, createPrimary, createSealed, importObject, load, loadNamed, parsePublic, rhelSrkTemplate, sealedTemplate, SYSTEMD_ECC_PRIMARY, unsealWithPcrPolicy } from "../tpm/objects.js";
import { EncryptSession } from "../tpm/session.js";

/** systemd 252's ECC primary (the new token's parent) plus a session salted to the pinned storage key:
 *  every secret-bearing command is encrypted to a key the host cannot have swapped. */
export interface Crypto {
  primary: number;
  primaryName: Uint8Array;
  session: EncryptSession;
  /** The RHEL SRK (the pinned key's TPM copy), still loaded: the first caller takes it over (and flushes
   *  it), so a token wrapped to it is imported without creating the RSA primary a second time. */
  takeSrk(): number | undefined;
}

/**
 * The vTPM transport is untrusted (the host runs it, or relays it): a session salted to a primary the
 * transport returned is salted to whatever key the host chose. So the session is salted to the storage key
 * the owner pinned (`tpm.srk`, from `debug tpm --srk-out`), after the TPM's copy of it (the RHEL SRK
 * template) is checked to have the same Name. Without a pin, or on a mismatch, nothing is unsealed.
 */
export async function withEncryption<T>(tpm: Tpm, pinned: TpmtPublic | undefined, fn: (c: Crypto) => Promise<T>): Promise<T> {
  if (!pinned) throw new CvmError("TPM", "no pinned storage key (tpm.srk in the config, written by `cvm-unlock debug tpm --srk-out`): a session salted to a key the TPM transport returned could be salted to the host's; nothing is unsealed", { reason: "no-pinned-srk" });
  const want = nameOf(pinned);
  const srk = await createPrimary(tpm, rhelSrkTemplate());
  let srkLoaded = true;
  const dropSrk = async () => {
    if (srkLoaded) await tpm.flush(srk.handle).catch(() => {});
    srkLoaded = false;
  };
  let session: EncryptSession | undefined;
  let p: Awaited<ReturnType<typeof createPrimary>> | undefined;
  try {
    if (!equalBytes(srk.name, want) || !equalBytes(nameOf(srk.public), want)) {
      throw new CvmError("TPM", `the TPM's storage key has Name ${hex(srk.name).slice(0, 20)}…, not the pinned ${hex(want).slice(0, 20)}…: the TPM transport substituted it (or tpm.srk is another TPM's); nothing is unsealed`, { reason: "srk-mismatch" });
    }
    session = await EncryptSession.startSaltedToPinned(tpm, srk.handle, rsaStorageKey(pinned));
    p = await createPrimary(tpm, SYSTEMD_ECC_PRIMARY);
    const takeSrk = () => {
      if (!srkLoaded) return undefined;
      srkLoaded = false;
      return srk.handle;
    };
    return await fn({ primary: p.handle, primaryName: p.name, session, takeSrk });
  } finally {
    await session?.flush();
    if (p) await tpm.flush(p.handle).catch(() => {});
    await dropSrk();
  }
}

export const FAULT_STEPS = ["unsealed", "proved", "token-added", "token-removed"] as const;

export interface ImportToken {
  id: string;
  slot: string;
  parentPub: Uint8Array;
  parentPrv: Uint8Array;
  parentSeed: Uint8Array;
  sealPub: Uint8Array;
  sealPrv: Uint8Array;
  policy: Uint8Array;
  unique?: Uint8Array;
  pcrs: number[];
  bank: string;
}

const bad = (t: Token, m: string): never => {
  throw new CvmError("LUKS", `tpm2-import token ${t.id}: ${m}`, { token: t.id, reason: "malformed" });
};

function b64(t: Token, field: string, optional = false): Uint8Array | undefined {
  const v = t.json[field];
  if (v === undefined && optional) return undefined;
  if (typeof v !== "string" || !/^[A-Za-z0-9+/]+={0,2}$/.test(v)) return bad(t, `${field} missing or not base64`);
  return new Uint8Array(Buffer.from(v, "base64"));
}

/** Validates a tpm2-import token against the header; typed errors name the field. */
export function parseImportToken(t: Token, h: LuksHeader): ImportToken {
  if (t.keyslots.length !== 1) bad(t, `must reference exactly one keyslot, has ${t.keyslots.length}`);
  const slot = t.keyslots[0]!;
  if (!h.keyslots.some((k) => k.id === slot)) bad(t, `keyslot ${slot} does not exist`);
  const others = h.tokens.filter((o) => o.id !== t.id && o.type === "tpm2-import" && o.keyslots.includes(slot));
  if (others.length > 0) bad(t, `keyslot ${slot} is also referenced by tpm2-import token ${others[0]!.id} (duplicate keyslot reference)`);
  const pcrs = t.json["tpm2-pcrs"];
  if (!isPcrList(pcrs)) bad(t, "tpm2-pcrs must be an array of PCR indexes 0..23");
  const bank = tokenBank(t.json["tpm2-pcr-bank"]) ?? bad(t, `tpm2-pcr-bank ${JSON.stringify(t.json["tpm2-pcr-bank"])} is not a known bank`);
  const tb = (f: string) => {
    try {
      return checkTpm2b(b64(t, f)!, f);
    } catch (e) {
      return bad(t, (e as Error).message);
    }
  };
  const policy = b64(t, "pcrpolicy_dat")!;
  if (policy.length !== 32) bad(t, `pcrpolicy_dat must be a 32-byte SHA-256 policy digest, is ${policy.length} bytes`);
  let unique: Uint8Array | undefined;
  const u = b64(t, "unique_dat", true);
  if (u) {
    // tpm2-tools' -u file: the raw TPMU_PUBLIC_ID union, u16 size little-endian, then the bytes.
    const n = u.length >= 2 ? u[0]! | (u[1]! << 8) : -1;
    if (n < 0 || u.length !== 2 + n) bad(t, "unique_dat is not a tpm2-tools unique file");
    unique = u.slice(2);
  }
  const out = { id: t.id, slot, parentPub: tb("parent_pub"), parentPrv: tb("parent_prv"), parentSeed: tb("parent_seed"), sealPub: tb("seal_pub"), sealPrv: tb("seal_prv"), policy, unique, pcrs: pcrs as number[], bank };
  parsePublic(out.parentPub, "parent_pub");
  parsePublic(out.sealPub, "seal_pub");
  return out;
}

export const passphraseOf = (secret: Secret): Secret => secret.use((b) => Secret.fromString(Buffer.from(b).toString("base64")));

/** Runs fn with transient handles that are flushed afterwards, whatever happens. */
async function withHandles<T>(tpm: Tpm, fn: (track: (h: number) => number) => Promise<T>): Promise<T> {
  const loaded: number[] = [];
  try {
    return await fn((h) => (loaded.push(h), h));
  } finally {
    for (const h of loaded.reverse()) await tpm.flush(h).catch(() => {});
  }
}

/** Step 1: the owner's secret, unsealed with the token's PCR policy; outData comes back encrypted. */
export async function unsealImportToken(tpm: Tpm, it: ImportToken, c: Crypto): Promise<Secret> {
  // A TPM may hold only 3 transient objects (swtpm does): each parent is flushed once its child is loaded.
  const loaded = new Set<number>();
  const drop = async (h: number) => {
    loaded.delete(h);
    await tpm.flush(h).catch(() => {});
  };
  try {
    // The owner wrapped to the default SRK (no unique_dat): the pinned key, already loaded for the session.
    // With unique_dat it is another primary: the pinned one is flushed first (swtpm holds 3 objects).
    const pinnedSrk = c.takeSrk();
    if (it.unique && pinnedSrk !== undefined) await tpm.flush(pinnedSrk).catch(() => {});
    const srk = (!it.unique ? pinnedSrk : undefined) ?? (await createPrimary(tpm, rhelSrkTemplate(it.unique))).handle;
    loaded.add(srk);
    let imported: Uint8Array;
    try {
      imported = await importObject(tpm, srk, it.parentPub, it.parentPrv, it.parentSeed);
    } catch (e) {
      throw new CvmError("TPM", `tpm2-import token ${it.id}: the TPM refused to import the owner's parent (wrapped to another storage key${it.unique ? "" : ", or a unique_dat is missing"}?): ${(e as Error).message}`, { reason: "wrong-parent" });
    }
    const parent = await load(tpm, srk, encode(tpm2b, imported), it.parentPub);
    loaded.add(parent);
    await drop(srk);
    const seal = await loadNamed(tpm, parent, it.sealPrv, it.sealPub);
    loaded.add(seal.handle);
    await drop(parent);
    return await unsealWithPcrPolicy(tpm, seal.handle, it.bank, it.pcrs, undefined, { session: c.session, itemName: seal.name });
  } finally {
    for (const h of loaded) await tpm.flush(h).catch(() => {});
  }
}

/** Unseals a systemd-tpm2 blob the way systemd 252 does (its ECC primary, PolicyPCR with the digest
 *  checked first, outData encrypted by a salted session). */
export async function unsealSystemdBlob(tpm: Tpm, blob: Uint8Array, bank: string, pcrs: number[], policy: Uint8Array, c: Crypto): Promise<Secret> {
  const privLen = ((blob[0]! << 8) | blob[1]!) + 2;
  const priv = blob.subarray(0, privLen), pub = blob.subarray(privLen);
  return withHandles(tpm, async (track) => {
    const obj = await loadNamed(tpm, c.primary, checkTpm2b(priv, "tpm2-blob private"), checkTpm2b(pub, "tpm2-blob public"));
    track(obj.handle);
    return unsealWithPcrPolicy(tpm, obj.handle, bank, pcrs, policy, { session: c.session, itemName: obj.name });
  });
}

/** Step 2: a systemd 252 token for the secret, proven before anything is written. */
/** Seals secret under systemd 252's template to policy and checks that what the TPM made carries exactly
 *  that policy (a prediction, or the current PCRs); returns the systemd-tpm2 blob (TPM2B_PRIVATE ‖ TPM2B_PUBLIC). */
export async function sealToPolicy(tpm: Tpm, c: Crypto, policy: Uint8Array, secret: Secret): Promise<Uint8Array> {
  const { priv, pub } = await createSealed(tpm, c.primary, sealedTemplate(policy), secret, { session: c.session, parentName: c.primaryName });
  const made = decode(TYPES.TPM2B_PUBLIC, pub, "the new sealed object");
  if (!equalBytes(made.authPolicy as Uint8Array, policy)) throw new CvmError("TPM", `the new sealed object's policy ${hex(made.authPolicy as Uint8Array).slice(0, 16)}… is not the intended ${hex(policy).slice(0, 16)}…: nothing written`);
  const blob = new Uint8Array(priv.length + pub.length);
  blob.set(priv);
  blob.set(pub, priv.length);
  return blob;
}

/** Seals secret under systemd 252's template to it.policy, proves the blob unseals to the same bytes and
 *  that base64 of the secret opens it.slot, and returns the systemd-tpm2 token to write (nothing written). */
export async function resealAndProve(tpm: Tpm, device: string, it: Pick<ImportToken, "id" | "slot" | "bank" | "pcrs" | "policy">, secret: Secret, c: Crypto): Promise<Record<string, unknown>> {
  const blob = await sealToPolicy(tpm, c, it.policy, secret);
  const again = await unsealSystemdBlob(tpm, blob, it.bank, it.pcrs, it.policy, c);
  try {
    const same = again.use((a) => secret.use((b) => a.length === b.length && a.every((x, i) => x === b[i])));
    if (!same) throw new CvmError("TPM", `token ${it.id}: the resealed blob unseals to different bytes`);
  } finally {
    again.wipe();
  }
  const pass = passphraseOf(secret);
  try {
    if (!(await keyslotOpens(device, it.slot, pass))) {
      throw new CvmError("LUKS", `token ${it.id}: base64 of the sealed secret does not open keyslot ${it.slot}`, { reason: "keyslot-mismatch" });
    }
  } finally {
    pass.wipe();
  }
  return systemdTpm2Token(it.slot, blob, it.pcrs, it.bank, it.policy);
}

/** A systemd 252 `systemd-tpm2` token (its field set; 252 and newer unlock it). */
export function systemdTpm2Token(slot: string, blob: Uint8Array, pcrs: number[], bank: string, policy: Uint8Array): Record<string, unknown> {
  return {
    type: "systemd-tpm2", keyslots: [slot], "tpm2-blob": Buffer.from(blob).toString("base64"), "tpm2-pcrs": pcrs,
    "tpm2-pcr-bank": bank, "tpm2-primary-alg": "ecc", "tpm2-policy-hash": hex(policy), "tpm2-pin": false,
  };
}

/** A systemd-tpm2 token's sealed blob (TPM2B_PRIVATE ‖ TPM2B_PUBLIC), policy digest, bank and PCRs, or
 *  undefined when a field is missing or malformed. */
export function tokenSealed(t: Token): { blob: Uint8Array; policy: Uint8Array; bank: string; pcrs: number[] } | undefined {
  const blob = typeof t.json["tpm2-blob"] === "string" ? new Uint8Array(Buffer.from(t.json["tpm2-blob"] as string, "base64")) : undefined;
  const policy = typeof t.json["tpm2-policy-hash"] === "string" && /^[0-9a-f]{64}$/i.test(t.json["tpm2-policy-hash"] as string) ? new Uint8Array(Buffer.from(t.json["tpm2-policy-hash"] as string, "hex")) : undefined;
  const bank = tokenBank(t.json["tpm2-pcr-bank"], "sha256");
  const pcrs = t.json["tpm2-pcrs"];
  if (!blob || blob.length < 4 || !policy || !bank || !isPcrList(pcrs)) return undefined;
  return { blob, policy, bank, pcrs };
}

/** A systemd-tpm2 token for the keyslot that unseals and opens it (a conversion that got as far as step 3). */
async function verifiedSystemdToken(tpm: Tpm, device: string, h: LuksHeader, it: ImportToken, c: Crypto): Promise<Token | undefined> {
  for (const t of h.tokens.filter((x) => x.type === "systemd-tpm2" && x.keyslots.length === 1 && x.keyslots[0] === it.slot)) {
    const sealed = tokenSealed(t);
    if (!sealed) continue;
    try {
      const secret = await unsealSystemdBlob(tpm, sealed.blob, sealed.bank, sealed.pcrs, sealed.policy, c);
      const pass = passphraseOf(secret);
      secret.wipe();
      const ok = await keyslotOpens(device, it.slot, pass);
      pass.wipe();
      if (ok) return t;
    } catch {
      /* not usable; a full conversion will replace the need for it */
    }
  }
  return undefined;
}

export interface ConvertResult {
  device: string;
  converted: { token: string; keyslot: string; resumed: boolean }[];
}

/** opts.header: the device's header when the caller has just read it (saves reading it again).
 *  opts.proven: receives the keyslot's passphrase once it has been proven to open it (before anything is
 *  written); the callee owns it and wipes it. The agent answers systemd-cryptsetup with it on this boot.
 *  opts.srk: the pinned storage key (withEncryption); without it nothing is unsealed. */
export async function convertDevice(device: string, tpm: Tpm, opts: { log: Logger; srk: TpmtPublic | undefined; fault?: Fault; header?: LuksHeader; proven?: (passphrase: Secret) => void }): Promise<ConvertResult> {
  const fault = opts.fault ?? (() => {}); // test build only: power loss at a step
  const h = opts.header ?? (await readLuksHeaderFile(device));
  const result: ConvertResult = { device, converted: [] };
  for (const t of h.tokens.filter((x) => x.type === "tpm2-import")) {
    const it = parseImportToken(t, h);
    await withEncryption(tpm, opts.srk, async (c) => {
      const done = await verifiedSystemdToken(tpm, device, h, it, c);
      if (done) {
        opts.log.info(`tpm2-import token ${t.id}: keyslot ${it.slot} already has a working systemd-tpm2 token ${done.id}; finishing the interrupted conversion`);
        await removeToken(device, t.id);
        fault("token-removed");
        result.converted.push({ token: t.id, keyslot: it.slot, resumed: true });
        return;
      }
      const secret = await unsealImportToken(tpm, it, c);
      try {
        // Step lines at debug level (rd.cvm_unlock.debug): an admin sees how far an interrupted conversion got,
        // and the power-loss boots of the e2e time their resets by them.
        opts.log.debug(`conversion step: tpm2-import token ${t.id} unsealed`);
        fault("unsealed");
        const token = await resealAndProve(tpm, device, it, secret, c);
        opts.proven?.(passphraseOf(secret));
        opts.log.debug(`conversion step: keyslot ${it.slot} proven with the resealed secret`);
        fault("proved");
        await importToken(device, token);
        opts.log.debug(`conversion step: systemd-tpm2 token added for keyslot ${it.slot}`);
        fault("token-added");
        await removeToken(device, t.id);
        fault("token-removed");
        opts.log.info(`converted tpm2-import token ${t.id} (keyslot ${it.slot}) into a systemd-tpm2 token sealed to this TPM`);
        result.converted.push({ token: t.id, keyslot: it.slot, resumed: false });
      } finally {
        secret.wipe();
      }
    });
  }
  return result;
}
