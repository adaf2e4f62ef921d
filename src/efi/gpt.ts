// The GUID partition table (UEFI 2.10 §5.3), read to name the ESP in a boot entry: the header at LBA 1
// ("EFI PART", its CRC32 over HeaderSize bytes with the CRC field zeroed) and the entry array (its own
// CRC32). A damaged primary falls back to the backup header at the disk's last LBA, as firmware does.
import { closeSync, fstatSync, openSync, readFileSync, readSync } from "node:fs";
import { CvmError } from "../errors.js";
import { guidText } from "./guid.js";
import type { Partition } from "./loadoption.js";

export interface GptEntry extends Partition {
  type: string;
  last: bigint;
  name: string;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (const x of b) c = CRC_TABLE[(c ^ x) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const UNUSED = "00000000-0000-0000-0000-000000000000";

/** read(offset, length) gives the disk's bytes; size is the disk's length in bytes. */
export function parseGpt(read: (offset: number, length: number) => Uint8Array, size: number, blockSize = 512): { diskGuid: string; entries: GptEntry[]; usedBackup: boolean } {
  const why: string[] = [];
  for (const [lba, label] of [[1, "primary"], [Math.floor(size / blockSize) - 1, "backup"]] as const) {
    try {
      return { ...headerAt(read, lba, blockSize, size), usedBackup: label === "backup" };
    } catch (e) {
      why.push(`${label}: ${(e as Error).message}`);
    }
  }
  throw new CvmError("EFI", `no valid GPT (${why.join("; ")})`);
}

function headerAt(read: (o: number, l: number) => Uint8Array, lba: number, bs: number, size: number): { diskGuid: string; entries: GptEntry[] } {
  const h = Buffer.from(read(lba * bs, bs));
  if (h.length < 92 || h.toString("latin1", 0, 8) !== "EFI PART") throw new Error("no EFI PART signature");
  const hsize = h.readUInt32LE(12);
  if (hsize < 92 || hsize > bs) throw new Error(`header size ${hsize}`);
  const copy = Buffer.from(h.subarray(0, hsize));
  copy.writeUInt32LE(0, 16);
  if (crc32(copy) !== h.readUInt32LE(16)) throw new Error("header CRC32 mismatch");
  if (h.readBigUInt64LE(24) !== BigInt(lba)) throw new Error("the header does not name its own LBA");
  const entriesLba = h.readBigUInt64LE(72), count = h.readUInt32LE(80), esize = h.readUInt32LE(84);
  if (esize < 128 || esize % 8 || count > 4096) throw new Error(`${count} entries of ${esize} bytes`);
  const off = Number(entriesLba) * bs, len = count * esize;
  if (off + len > size) throw new Error("the entry array runs past the disk");
  const arr = read(off, len);
  if (crc32(arr) !== h.readUInt32LE(88)) throw new Error("entry array CRC32 mismatch");
  const entries: GptEntry[] = [];
  for (let i = 0; i < count; i++) {
    const e = Buffer.from(arr.subarray(i * esize, (i + 1) * esize));
    const type = guidText(e.subarray(0, 16));
    if (type === UNUSED) continue;
    const first = e.readBigUInt64LE(32), last = e.readBigUInt64LE(40);
    if (last < first) throw new Error(`entry ${i + 1} ends before it starts`);
    entries.push({ number: i + 1, type, guid: guidText(e.subarray(16, 32)), start: first, last, size: last - first + 1n, name: e.toString("utf16le", 56, 128).replace(/\0.*$/s, "") });
  }
  return { diskGuid: guidText(h.subarray(56, 72)), entries };
}

/** The GPT of a disk or image file. */
export function readGpt(path: string, blockSize = 512): ReturnType<typeof parseGpt> {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    throw new CvmError("EFI", `cannot open ${path}: ${(e as NodeJS.ErrnoException).code}`);
  }
  try {
    const st = fstatSync(fd);
    const size = st.isBlockDevice() ? blockDeviceSize(st.rdev) : st.size;
    return parseGpt((o, l) => {
      const b = new Uint8Array(l);
      const n = readSync(fd, b, 0, l, o);
      return b.subarray(0, n);
    }, size, blockSize);
  } finally {
    closeSync(fd);
  }
}

/** A block device's size from sysfs (its st_size is 0): 512-byte sectors in /sys/dev/block/MAJ:MIN/size. */
function blockDeviceSize(rdev: number): number {
  const r = BigInt(rdev);
  const major = ((r >> 8n) & 0xfffn) | ((r >> 32n) & ~0xfffn), minor = (r & 0xffn) | ((r >> 12n) & ~0xffn);
  return Number(readFileSync(`/sys/dev/block/${major}:${minor}/size`, "utf8").trim()) * 512;
}
