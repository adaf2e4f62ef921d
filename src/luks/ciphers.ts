// Which ciphers a volume may be opened with. The host serves the LUKS2 header, so it can name any cipher
// there — cipher_null over a plaintext disk of its own, or ecb — and systemd-cryptsetup would activate it
// with the released passphrase (the keyslot and digest are untouched). Before anything is handed over,
// every segment and keyslot area must use a cipher and key size from the volume's allowlist; the values
// checked become the expected live mapping (luks/mapping.ts), which is checked again once it is active.
import { CvmError } from "../errors.js";
import type { LuksHeader } from "./header.js";

/** The ciphers a config may allow at all, with their key sizes in bits. Nothing else can be configured:
 *  not cipher_null, not ecb, not an unknown name. */
export const KNOWN_CIPHERS: Readonly<Record<string, readonly number[]>> = {
  "aes-xts-plain64": [256, 512],
  "serpent-xts-plain64": [256, 512],
  "twofish-xts-plain64": [256, 512],
  "aes-cbc-essiv:sha256": [256],
};
export const DEFAULT_CIPHERS = ["aes-xts-plain64:512"];

/** "<cipher>:<key bits>" for a known cipher and one of its key sizes. */
export function isCipherSpec(s: string): boolean {
  const i = s.lastIndexOf(":");
  const bits = Number(s.slice(i + 1));
  return i > 0 && (KNOWN_CIPHERS[s.slice(0, i)]?.includes(bits) ?? false);
}

/** What the live dm-crypt mapping of a volume must be: taken from the header that was checked. */
export interface ExpectedMapping {
  volume: string;
  uuid: string;
  cipher: string;
  keyBits: number;
  /** The data offset in 512-byte sectors, as dm-crypt's table gives it. */
  offsetSectors: number;
  sectorSize: number;
}

const bad = (volume: string, m: string): never => {
  throw new CvmError("LUKS", `volume ${volume}: ${m}: nothing is handed over`, { volume });
};

/** Checks the header's segment and keyslot-area ciphers against the allowlist; returns the expected mapping. */
export function checkHeaderCiphers(volume: string, h: LuksHeader, allowed: readonly string[]): ExpectedMapping {
  const list = allowed.join(", ");
  const ok = (cipher: string | undefined, bits: number) => cipher !== undefined && allowed.includes(`${cipher}:${bits}`);
  if (h.segments.length !== 1) bad(volume, `the header has ${h.segments.length} segments (one crypt segment expected; a reencryption in progress is not opened unattended)`);
  const seg = h.segments[0]!;
  if (seg.type !== "crypt") bad(volume, `segment ${seg.id} is of type ${JSON.stringify(seg.type).slice(0, 40)}, not crypt (its data would not be encrypted)`);
  const digest = h.digests.find((d) => d.segments.includes(seg.id));
  const slots = h.keyslots.filter((k) => digest?.keyslots.includes(k.id));
  const sizes = slots.map((k) => k.keySize).filter((s, i, all) => all.indexOf(s) === i);
  if (sizes.length !== 1 || typeof sizes[0] !== "number") bad(volume, `the keyslots of segment ${seg.id} do not agree on one volume key size`);
  const keyBits = sizes[0]! * 8;
  if (!ok(seg.encryption, keyBits)) bad(volume, `segment ${seg.id} uses ${JSON.stringify(seg.encryption ?? "no cipher").slice(0, 60)} with a ${keyBits}-bit key, which is not in the allowlist (${list})`);
  for (const k of h.keyslots) {
    const bits = (k.area?.keySize ?? 0) * 8;
    if (!ok(k.area?.encryption, bits)) bad(volume, `keyslot ${k.id}'s area uses ${JSON.stringify(k.area?.encryption ?? "no cipher").slice(0, 60)} with a ${bits}-bit key, which is not in the allowlist (${list})`);
  }
  const offset = /^\d{1,15}$/.test(seg.offset) ? Number(seg.offset) : NaN;
  if (!(offset % 512 === 0)) bad(volume, `segment ${seg.id} has a data offset ${JSON.stringify(seg.offset).slice(0, 30)} that is not a whole number of sectors`);
  const sectorSize = seg.sectorSize ?? 512;
  if (![512, 1024, 2048, 4096].includes(sectorSize)) bad(volume, `segment ${seg.id} has sector size ${sectorSize}`);
  return { volume, uuid: h.uuid, cipher: seg.encryption!, keyBits, offsetSectors: offset / 512, sectorSize };
}
