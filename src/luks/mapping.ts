// The live dm-crypt mappings, checked after systemd-cryptsetup activated them and before the switch to root.
// The host can serve different header bytes on each read, so what the agent checked before the hand-off
// (luks/ciphers.ts) need not be what systemd-cryptsetup read: the mapping the kernel holds is the truth.
// Each one must use an allowed cipher and key size, and a volume's mapping must equal what the agent
// checked (cipher, key size, data offset, sector size, LUKS UUID, backing device).
import { exists, nodeFs, readFileText, writeFileReplacing } from "../native/files.js";
import { CvmError } from "../errors.js";
import type { ExpectedMapping } from "./ciphers.js";

export interface LiveMapping {
  name: string;
  /** The dm UUID (libcryptsetup: CRYPT-LUKS2-<uuid without dashes>-<name>). */
  dmUuid: string;
  cipher: string;
  keyBits: number;
  offsetSectors: number;
  sectorSize: number;
  /** The backing device as "major:minor". */
  device: string;
}

/** One `dmsetup table` line of a crypt target: start length crypt cipher key iv_offset device offset [n opts…].
 *  The key is hex, "-" (none: cipher_null), or a keyring reference :<bytes>:<type>:<description>. */
export function parseCryptTable(name: string, dmUuid: string, table: string): LiveMapping {
  const lines = table.split("\n").filter((l) => l.trim() !== "");
  const fail = (m: string): never => {
    throw new CvmError("LUKS", `mapping ${name}: ${m}`, { mapping: name });
  };
  if (lines.length !== 1) fail(`its table has ${lines.length} targets (one crypt target expected)`);
  const w = lines[0]!.trim().split(/\s+/);
  if (w[2] !== "crypt" || w.length < 8) fail(`not a dm-crypt target: ${JSON.stringify(lines[0]!.slice(0, 80))}`);
  const key = w[4]!;
  const ring = /^:(\d+):/.exec(key);
  const keyBits = key === "-" ? 0 : ring ? Number(ring[1]) * 8 : /^[0-9a-fA-F]*$/.test(key) ? key.length * 4 : fail("its key field has an unknown form");
  const opts = w.slice(9, 9 + Number(w[8] ?? 0));
  const ss = opts.find((o) => o.startsWith("sector_size:"));
  return { name, dmUuid, cipher: w[3]!, keyBits, offsetSectors: Number(w[7]), sectorSize: ss ? Number(ss.slice(12)) : 512, device: w[6]! };
}

/** The dm devices the kernel has: dm UUID and name from sysfs (the name falls back to the dm-N entry). */
export function listDm(sysBlock = "/sys/block"): { name: string; dmUuid: string }[] {
  let entries: string[] = [];
  try {
    entries = nodeFs().readdirSync(sysBlock).filter((d) => d.startsWith("dm-"));
  } catch {
    return [];
  }
  const out: { name: string; dmUuid: string }[] = [];
  const read = (f: string) => {
    try {
      return readFileText(f).trim();
    } catch {
      return undefined; // removed while we looked
    }
  };
  for (const d of entries) {
    const dmUuid = read(`${sysBlock}/${d}/dm/uuid`);
    if (dmUuid !== undefined) out.push({ name: read(`${sysBlock}/${d}/dm/name`) ?? d, dmUuid });
  }
  return out;
}

/** Is this dm UUID libcryptsetup's (CRYPT-LUKS<version>-<uuid without dashes>-<name>) for the LUKS volume
 *  with this UUID? versions: the LUKS versions that count (the mapping check: LUKS2 only). */
export const dmUuidIsLuks = (dmUuid: string, luksUuid: string, versions: readonly string[] = ["2"]): boolean =>
  versions.some((v) => dmUuid.toUpperCase().startsWith(`CRYPT-LUKS${v}-${luksUuid.replace(/-/g, "").toUpperCase()}-`));

/** "major:minor" of a block device path (following the udev symlink), or undefined. */
export function deviceNumber(path: string): string | undefined {
  try {
    const rdev = nodeFs().statSync(path).rdev;
    return `${Math.floor(rdev / 256) & 0xfff}:${(rdev & 0xff) | ((rdev >> 12) & 0xfff00)}`;
  } catch {
    return undefined;
  }
}

/** Every difference between a volume's live mapping and what was checked before the hand-off. */
export function mappingDifferences(want: ExpectedMapping & { device?: string }, live: LiveMapping): string[] {
  const diffs: string[] = [];
  if (!dmUuidIsLuks(live.dmUuid, want.uuid)) diffs.push(`dm UUID ${live.dmUuid.slice(0, 60)} is not LUKS UUID ${want.uuid}`);
  if (live.cipher !== want.cipher) diffs.push(`cipher ${live.cipher.slice(0, 40)} (checked: ${want.cipher})`);
  if (live.keyBits !== want.keyBits) diffs.push(`${live.keyBits}-bit key (checked: ${want.keyBits})`);
  if (live.offsetSectors !== want.offsetSectors) diffs.push(`data offset ${live.offsetSectors} sectors (checked: ${want.offsetSectors})`);
  if (live.sectorSize !== want.sectorSize) diffs.push(`sector size ${live.sectorSize} (checked: ${want.sectorSize})`);
  if (want.device !== undefined && live.device !== want.device) diffs.push(`backing device ${live.device} (the volume's device is ${want.device})`);
  return diffs;
}

/** The record of what was checked before the hand-off, for the check after activation (no secret in it). */
export const EXPECTED_FILE = "expected-mappings.json";

export function writeExpected(runDir: string, expected: ExpectedMapping[]): void {
  writeFileReplacing(runDir, EXPECTED_FILE, JSON.stringify({ v: 1, volumes: expected }) + "\n", 0o600);
}

export function readExpected(runDir: string): ExpectedMapping[] {
  const path = `${runDir}/${EXPECTED_FILE}`;
  if (!exists(path)) return [];
  try {
    const j = JSON.parse(readFileText(path)) as { v: number; volumes: ExpectedMapping[] };
    if (j.v !== 1 || !Array.isArray(j.volumes)) throw new Error("unknown version");
    return j.volumes;
  } catch (e) {
    throw new CvmError("LUKS", `${path}: unreadable (${(e as Error).message.slice(0, 80)})`);
  }
}
