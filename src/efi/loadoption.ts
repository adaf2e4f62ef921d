// EFI_LOAD_OPTION (UEFI 2.10 §3.1.3), the value of a Boot#### variable:
//   UINT32 Attributes; UINT16 FilePathListLength; CHAR16 Description[] (NUL-terminated UTF-16LE);
//   EFI_DEVICE_PATH_PROTOCOL FilePathList[] (FilePathListLength bytes); UINT8 OptionalData[] (the rest).
// A device path is a list of nodes {UINT8 Type; UINT8 SubType; UINT16 Length (header included); data},
// ended by the End node (0x7f, 0xff). The entry cvm-unlock writes is the one firmware expects for a file
// on a GPT partition: HD(partition, start, size, partition GUID) / File(\EFI\Linux\x.efi) / End.
// Bytes from efivarfs are the firmware's (and so the host's): every length is checked, EfiError otherwise.
import { CvmError } from "../errors.js";
import { guidBytes, guidText } from "./guid.js";

export const LOAD_OPTION_ACTIVE = 0x1;
const MEDIA = 0x04, HARD_DRIVE = 0x01, FILE_PATH = 0x04, END = 0x7f, END_ENTIRE = 0xff;

export interface DevicePathNode {
  type: number;
  subtype: number;
  data: Uint8Array;
}

export interface LoadOption {
  attributes: number;
  description: string;
  path: DevicePathNode[];
  optional: Uint8Array;
}

export interface Partition {
  number: number;
  /** In logical blocks of the disk. */
  start: bigint;
  size: bigint;
  guid: string;
}

const bad = (what: string) => new CvmError("EFI", `malformed load option: ${what}`);

function utf16z(s: string): Uint8Array {
  if (s.includes("\0")) throw new CvmError("EFI", "a NUL inside an EFI string");
  return new Uint8Array(Buffer.from(`${s}\0`, "utf16le"));
}

/** A NUL-terminated UTF-16LE string at the start of b: the text and the bytes it took. */
function readUtf16z(b: Uint8Array, what: string): { text: string; length: number } {
  for (let i = 0; i + 1 < b.length; i += 2) {
    if (b[i] === 0 && b[i + 1] === 0) return { text: Buffer.from(b.subarray(0, i)).toString("utf16le"), length: i + 2 };
  }
  throw bad(`${what} has no terminating NUL`);
}

export function hardDriveNode(p: Partition): DevicePathNode {
  const d = Buffer.alloc(38);
  d.writeUInt32LE(p.number, 0);
  d.writeBigUInt64LE(p.start, 4);
  d.writeBigUInt64LE(p.size, 12);
  Buffer.from(guidBytes(p.guid)).copy(d, 20);
  d[36] = 0x02; // MBR type: GPT
  d[37] = 0x02; // signature type: GUID
  return { type: MEDIA, subtype: HARD_DRIVE, data: new Uint8Array(d) };
}

/** path: an ESP-relative path, "/" or "\" separated; firmware wants "\EFI\Linux\x.efi". */
export function filePathNode(path: string): DevicePathNode {
  const p = `\\${path.replace(/\//g, "\\").replace(/^\\+/, "")}`;
  return { type: MEDIA, subtype: FILE_PATH, data: utf16z(p) };
}

export function encodeDevicePath(nodes: DevicePathNode[]): Uint8Array {
  const parts = [...nodes, { type: END, subtype: END_ENTIRE, data: new Uint8Array(0) }].map((n) => {
    if (n.data.length + 4 > 0xffff) throw new CvmError("EFI", "a device path node over 64 KiB");
    const b = new Uint8Array(4 + n.data.length);
    b[0] = n.type;
    b[1] = n.subtype;
    new DataView(b.buffer).setUint16(2, b.length, true);
    b.set(n.data, 4);
    return b;
  });
  return new Uint8Array(Buffer.concat(parts));
}

/** The nodes of a device path up to its End node (which must be there, and last). */
export function decodeDevicePath(b: Uint8Array): DevicePathNode[] {
  const out: DevicePathNode[] = [];
  let off = 0;
  for (;;) {
    if (off + 4 > b.length) throw bad("a device path runs past its length");
    const len = b[off + 2]! | (b[off + 3]! << 8);
    if (len < 4 || off + len > b.length) throw bad(`a device path node of length ${len}`);
    const node = { type: b[off]!, subtype: b[off + 1]!, data: b.slice(off + 4, off + len) };
    off += len;
    if (node.type === END && node.subtype === END_ENTIRE) {
      if (off !== b.length) throw bad("bytes after the device path's end node");
      return out;
    }
    out.push(node);
  }
}

export function encodeLoadOption(o: LoadOption): Uint8Array {
  const desc = utf16z(o.description);
  const path = encodeDevicePath(o.path);
  const b = Buffer.alloc(6 + desc.length + path.length + o.optional.length);
  b.writeUInt32LE(o.attributes >>> 0, 0);
  b.writeUInt16LE(path.length, 4);
  b.set(desc, 6);
  b.set(path, 6 + desc.length);
  b.set(o.optional, 6 + desc.length + path.length);
  return new Uint8Array(b);
}

export function decodeLoadOption(b: Uint8Array): LoadOption {
  if (b.length < 6) throw bad(`${b.length} bytes`);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const attributes = v.getUint32(0, true);
  const pathLen = v.getUint16(4, true);
  const desc = readUtf16z(b.subarray(6), "the description");
  const start = 6 + desc.length;
  if (start + pathLen > b.length) throw bad("the device path runs past the variable");
  return { attributes, description: desc.text, path: decodeDevicePath(b.subarray(start, start + pathLen)), optional: b.slice(start + pathLen) };
}

/** The ESP-relative file a load option starts, with its partition's GUID, when it has that shape. */
export function fileOf(o: LoadOption): { partition?: string; file: string } | undefined {
  const file = o.path.find((n) => n.type === MEDIA && n.subtype === FILE_PATH);
  if (!file) return undefined;
  const hd = o.path.find((n) => n.type === MEDIA && n.subtype === HARD_DRIVE && n.data.length === 38);
  return { partition: hd ? guidText(hd.data.subarray(20, 36)) : undefined, file: readUtf16z(file.data, "a file path").text };
}

/** efibootmgr-style text of a device path, for humans. */
export function describeDevicePath(nodes: DevicePathNode[]): string {
  return nodes.map((n) => {
    if (n.type === MEDIA && n.subtype === HARD_DRIVE && n.data.length === 38) {
      const d = Buffer.from(n.data);
      return `HD(${d.readUInt32LE(0)},GPT,${guidText(n.data.subarray(20, 36))},0x${d.readBigUInt64LE(4).toString(16)},0x${d.readBigUInt64LE(12).toString(16)})`;
    }
    if (n.type === MEDIA && n.subtype === FILE_PATH) return `File(${readUtf16z(n.data, "a file path").text})`;
    return `Node(${n.type},${n.subtype},${n.data.length})`;
  }).join("/");
}
