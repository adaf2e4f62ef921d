// Hand-off to systemd-cryptsetup 252: a "user" key named "cryptsetup" (configurable) in the configured
// keyring (@u in the initramfs; @s in tests), holding the passphrases separated by NUL. systemd-cryptsetup
// finds it through request_key() because its unit and ours run with KeyringMode=shared. The key gets a
// timeout and possessor-only read permission; any failure after add_key unlinks it again.
import { CvmError } from "../errors.js";
import { Secret } from "../log/secret.js";
import { KEY_PERM, KEY_SPEC, NativeError, type Native } from "../native/types.js";

export interface KeyringTarget {
  keyring: "@u" | "@s";
  key: string;
  timeout_s: number;
}

/**
 * Possessor: everything; owner (uid 0): view only; group and other: nothing. systemd-cryptsetup possesses
 * the key (its session keyring links @u under KeyringMode=shared), so no other root process can read it
 * just by finding its serial in /proc/keys.
 */
export const KEY_PERMISSIONS = KEY_PERM.POS_ALL | KEY_PERM.USR_VIEW;

const SPECIAL = { "@u": KEY_SPEC.USER, "@s": KEY_SPEC.SESSION } as const;

function keyringError(what: string, e: unknown): CvmError {
  if (e instanceof NativeError) return new CvmError("KEYRING", `${what}: ${e.errnoName}`, { errno: e.errnoName }, { cause: e });
  if (e instanceof CvmError) return e;
  return new CvmError("KEYRING", `${what}: ${(e as Error).message}`);
}

/** Resolves @u/@s to the keyring's serial. */
export function keyringSerial(native: Native, keyring: KeyringTarget["keyring"]): number {
  try {
    return native.keyctl.getKeyringId(SPECIAL[keyring], true);
  } catch (e) {
    throw keyringError(`cannot open keyring ${keyring}`, e);
  }
}

/** What systemd-cryptsetup can take as one passphrase: not empty, no NUL (the keyring payload's separator,
 *  and the end of a C string); through ask-password also no line break (the reply ends a passphrase there,
 *  so it would hand over a different one than the keyslot check proved). */
export function checkPassphraseBytes(b: Uint8Array, what: string, handoff: "keyring" | "ask-password" = "keyring"): void {
  if (b.length === 0) throw new CvmError("LUKS", `${what}: the passphrase is empty`);
  if (b.includes(0)) throw new CvmError("LUKS", `${what}: the passphrase contains a NUL byte, which systemd-cryptsetup cannot take`);
  if (handoff === "ask-password" && (b.includes(0x0a) || b.includes(0x0d))) throw new CvmError("LUKS", `${what}: the passphrase contains a line break, which the ask-password reply cannot carry`);
}

/** NUL-separated passphrases, as systemd's strv_parse_nulstr reads them. */
export function encodePayload(passphrases: readonly Secret[]): Uint8Array {
  if (passphrases.length === 0) throw new CvmError("INTERNAL", "no passphrase to hand off");
  const total = passphrases.reduce((n, p) => n + p.length, 0) + passphrases.length - 1;
  const out = new Uint8Array(total);
  let off = 0;
  passphrases.forEach((p, i) => {
    p.use((b) => {
      checkPassphraseBytes(b, `passphrase ${i}`);
      out.set(b, off);
    });
    off += p.length + 1;
  });
  return out;
}

export function decodePayload(payload: Uint8Array): Secret[] {
  const out: Secret[] = [];
  let start = 0;
  for (let i = 0; i <= payload.length; i++) {
    if (i === payload.length || payload[i] === 0) {
      if (i > start) out.push(Secret.adopt(payload.slice(start, i)));
      start = i + 1;
    }
  }
  return out;
}

/** Puts the passphrases into the keyring; returns the key's serial. Leaves nothing behind on failure. */
export function handOff(native: Native, target: KeyringTarget, passphrases: readonly Secret[]): number {
  const ring = keyringSerial(native, target.keyring);
  const payload = encodePayload(passphrases);
  let serial: number;
  try {
    serial = native.addKey("user", target.key, payload, ring);
  } catch (e) {
    throw keyringError(`cannot add key ${target.key} to ${target.keyring}`, e);
  } finally {
    payload.fill(0);
  }
  try {
    native.keyctl.setperm(serial, KEY_PERMISSIONS);
    native.keyctl.setTimeout(serial, target.timeout_s);
  } catch (e) {
    try {
      native.keyctl.unlink(serial, ring);
    } catch {
      /* the original error is what matters; the key also expires */
    }
    throw keyringError(`cannot protect key ${target.key}`, e);
  }
  return serial;
}

export interface KeyInfo {
  serial: number;
  description: string;
  perm: string;
  count: number;
  lengths: number[];
}

/** The hand-off key's serial in its keyring, or undefined when there is none (absent, expired or revoked). */
function findKey(native: Native, target: Pick<KeyringTarget, "keyring" | "key">): { ring: number; serial: number } | undefined {
  const ring = keyringSerial(native, target.keyring);
  try {
    return { ring, serial: native.keyctl.search(ring, "user", target.key) };
  } catch (e) {
    if (e instanceof NativeError && (e.errnoName === "ENOKEY" || e.errnoName === "EKEYEXPIRED" || e.errnoName === "EKEYREVOKED")) return undefined;
    throw keyringError(`cannot search ${target.keyring} for ${target.key}`, e);
  }
}

/** Finds the hand-off key, or undefined when there is none. Reports only counts and lengths, never content. */
export function inspectKey(native: Native, target: KeyringTarget): KeyInfo | undefined {
  const found = findKey(native, target);
  if (!found) return undefined;
  const { serial } = found;
  try {
    const desc = native.keyctl.describe(serial).split(";");
    const payload = native.keyctl.read(serial);
    const secrets = decodePayload(payload);
    payload.fill(0);
    const info = { serial, description: desc.slice(4).join(";"), perm: desc[3] ?? "", count: secrets.length, lengths: secrets.map((s) => s.length) };
    secrets.forEach((s) => s.wipe());
    return info;
  } catch (e) {
    throw keyringError(`cannot read key ${target.key}`, e);
  }
}

/** Reads the passphrases back (self-check and tests only). */
export function readBack(native: Native, target: KeyringTarget): Secret[] {
  const ring = keyringSerial(native, target.keyring);
  try {
    const payload = native.keyctl.read(native.keyctl.search(ring, "user", target.key));
    const out = decodePayload(payload);
    payload.fill(0);
    return out;
  } catch (e) {
    throw keyringError(`cannot read key ${target.key}`, e);
  }
}

export function removeKey(native: Native, target: KeyringTarget): boolean {
  const ring = keyringSerial(native, target.keyring);
  try {
    native.keyctl.unlink(native.keyctl.search(ring, "user", target.key), ring);
    return true;
  } catch (e) {
    if (e instanceof NativeError && e.errnoName === "ENOKEY") return false;
    throw keyringError(`cannot remove key ${target.key}`, e);
  }
}

/** Revokes the hand-off key once the volumes are active: systemd-cryptsetup has read it, and nothing else
 *  may (a revoked key fails every later read, even by a process that still holds its serial). Returns the
 *  serial revoked, or undefined when there was none (the ask-password hand-off, or a vTPM boot). */
export function revokeKey(native: Native, target: Pick<KeyringTarget, "keyring" | "key">): number | undefined {
  const found = findKey(native, target);
  if (!found) return undefined;
  const { ring, serial } = found;
  try {
    native.keyctl.revoke(serial);
  } catch (e) {
    throw keyringError(`cannot revoke key ${target.key}`, e);
  }
  try {
    native.keyctl.unlink(serial, ring);
  } catch {
    /* revoked is what matters; the kernel collects it */
  }
  return serial;
}
