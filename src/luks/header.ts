// LUKS2 on-disk metadata, read-only: the binary header and JSON area, in both copies (primary at 0,
// secondary at hdr_size), each checked against its SHA-256 checksum; the valid copy with the highest seqid
// wins. The JSON becomes a typed model of keyslots, tokens, segments and digests. Writes never happen here:
// they go through cryptsetup itself.
import { openRandom, type RandomReader } from "../native/files.js";
import { equalBytes } from "../bytes.js";
import { sha256 } from "../hash.js";
import { CvmError } from "../errors.js";
import { bytes, layout, parse } from "../tee/layout.js";

const be64 = (b: Uint8Array, off: number): bigint => new DataView(b.buffer, b.byteOffset + off, 8).getBigUint64(0, false);

/** The binary header (big-endian on disk; the table holds the byte fields, integers are read apart). */
export const BINARY_HEADER = layout("LUKS2 binary header", 4096, [
  { name: "magic", off: 0, type: bytes(6) },
  { name: "version_be", off: 6, type: bytes(2) },
  { name: "hdr_size_be", off: 8, type: bytes(8) },
  { name: "seqid_be", off: 16, type: bytes(8) },
  { name: "label", off: 24, type: bytes(48) },
  { name: "checksum_alg", off: 72, type: bytes(32) },
  { name: "salt", off: 104, type: bytes(64) },
  { name: "uuid", off: 168, type: bytes(40) },
  { name: "subsystem", off: 208, type: bytes(48) },
  { name: "hdr_offset_be", off: 256, type: bytes(8) },
  { name: "csum", off: 448, type: bytes(64) },
]);

const MAGIC_1 = new Uint8Array([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]); // "LUKS\xba\xbe"
const MAGIC_2 = new Uint8Array([0x53, 0x4b, 0x55, 0x4c, 0xba, 0xbe]); // "SKUL\xba\xbe"
const HDR_SIZES = [16384, 32768, 65536, 131072, 262144, 524288, 1048576, 2097152, 4194304];

export interface Keyslot {
  id: string;
  type: string;
  priority?: number;
  /** Bytes of the volume key this keyslot holds. */
  keySize?: number;
  /** How the keyslot's own area is encrypted (cipher and key bytes). */
  area?: { encryption?: string; keySize?: number };
  kdf: { type: string; hash?: string; iterations?: number; time?: number; memory?: number };
}

export interface Token {
  id: string;
  type: string;
  keyslots: string[];
  /** The whole token JSON, as stored (for token-specific fields). */
  json: Record<string, unknown>;
}

export interface LuksHeader {
  uuid: string;
  label: string;
  seqid: bigint;
  hdrSize: number;
  keyslots: Keyslot[];
  tokens: Token[];
  segments: { id: string; type: string; offset: string; size: string; encryption?: string; sectorSize?: number }[];
  digests: { id: string; type: string; keyslots: string[]; segments: string[] }[];
  /** Which copies were valid (a damaged copy is reported, not fatal, when the other is good). */
  copies: { primary: boolean; secondary: boolean };
}

const cstr = (b: Uint8Array) => new TextDecoder().decode(b.subarray(0, b.indexOf(0) < 0 ? b.length : b.indexOf(0)));
const bad = (m: string): never => {
  throw new CvmError("LUKS", `LUKS2 header: ${m}`);
};

interface Copy {
  seqid: bigint;
  hdrSize: number;
  uuid: string;
  label: string;
  json: string;
}

function readCopy(img: Uint8Array, off: number, magic: Uint8Array): Copy | string {
  if (img.length < off + 4096) return "truncated";
  const h = parse(BINARY_HEADER, img, off, { checkReserved: false });
  if (!equalBytes(h.magic as Uint8Array, magic)) return "bad magic";
  const version = ((h.version_be as Uint8Array)[0]! << 8) | (h.version_be as Uint8Array)[1]!;
  if (version !== 2) return `version ${version}`;
  const hdrSize = Number(be64(img, off + 8));
  if (!HDR_SIZES.includes(hdrSize)) return `bad hdr_size ${hdrSize}`;
  if (Number(be64(img, off + 256)) !== off) return "hdr_offset does not match the copy's position";
  if (img.length < off + hdrSize) return "truncated";
  if (cstr(h.checksum_alg as Uint8Array) !== "sha256") return `checksum algorithm ${cstr(h.checksum_alg as Uint8Array)} not supported`;
  const area = img.slice(off, off + hdrSize);
  area.fill(0, 448, 448 + 64);
  const want = (h.csum as Uint8Array).subarray(0, 32);
  const got = sha256(area); // native: the later boot reads this on every start
  if (!equalBytes(got, want)) return "checksum mismatch";
  const jsonBytes = img.subarray(off + 4096, off + hdrSize);
  return { seqid: be64(img, off + 16), hdrSize, uuid: cstr(h.uuid as Uint8Array), label: cstr(h.label as Uint8Array), json: cstr(jsonBytes) };
}

/** Parses a LUKS2 header from the first megabytes of a device or image. */
export function parseLuks2(img: Uint8Array): LuksHeader {
  const primary = readCopy(img, 0, MAGIC_1);
  const secOff = typeof primary === "string" ? HDR_SIZES.find((s) => typeof readCopy(img, s, MAGIC_2) !== "string") : primary.hdrSize;
  const secondary = secOff === undefined ? "not found" : readCopy(img, secOff, MAGIC_2);
  const good = [primary, secondary].filter((c): c is Copy => typeof c !== "string");
  if (good.length === 0) bad(`no valid header copy (primary: ${primary}; secondary: ${secondary as string})`);
  const best = good.length === 2 && good[1]!.seqid > good[0]!.seqid ? good[1]! : good[0]!; // the higher seqid; the primary on a tie
  let j: any;
  try {
    j = JSON.parse(best.json);
  } catch {
    return bad("JSON area is not JSON");
  }
  return { ...luksModel(j), uuid: best.uuid, label: best.label, seqid: best.seqid, hdrSize: best.hdrSize, copies: { primary: typeof primary !== "string", secondary: typeof secondary !== "string" } };
}

const obj = (v: unknown, what: string): Record<string, any> => (typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, any>) : bad(`${what} is not an object`));
/** A JSON scalar as text; anything else (an object whose toString the host chose) is a typed error. */
const text = (v: unknown, what: string): string => (typeof v === "string" ? v : typeof v === "number" ? String(v) : bad(`${what} is not a string`));
function strs(v: unknown, what: string): string[] {
  if (!Array.isArray(v)) return bad(`${what} is not an array of strings`);
  for (const x of v) if (typeof x !== "string") bad(`${what} is not an array of strings`);
  return v as string[];
}

/** The most memory (MiB) any keyslot's KDF takes (argon2i/argon2id; pbkdf2 takes none), 0 when none does.
 *  cryptsetup may try every keyslot in turn, so this is what unlocking the volume can need. */
export function kdfMemoryMiB(h: Pick<LuksHeader, "keyslots">): number {
  let kib = 0;
  for (const k of h.keyslots) {
    const m = k.kdf.memory;
    if (typeof m === "number" && Number.isFinite(m) && m > kib) kib = m;
  }
  return Math.ceil(kib / 1024);
}

export function luksModel(j: unknown): Pick<LuksHeader, "keyslots" | "tokens" | "segments" | "digests"> {
  const root = obj(j, "metadata");
  const keyslots = Object.entries(obj(root.keyslots, "keyslots")).map(([id, k]) => {
    const o = obj(k, `keyslot ${id}`);
    const kdf = obj(o.kdf, `keyslot ${id}.kdf`);
    if (typeof o.type !== "string" || typeof kdf.type !== "string") bad(`keyslot ${id} has no type`);
    const area = typeof o.area === "object" && o.area !== null ? (o.area as Record<string, unknown>) : {};
    return {
      id, type: o.type, priority: typeof o.priority === "number" ? o.priority : undefined,
      keySize: typeof o.key_size === "number" ? o.key_size : undefined,
      area: { encryption: typeof area.encryption === "string" ? area.encryption : undefined, keySize: typeof area.key_size === "number" ? area.key_size : undefined },
      kdf: { type: kdf.type, hash: kdf.hash, iterations: kdf.iterations, time: kdf.time, memory: kdf.memory },
    };
  });
  const tokens = Object.entries(obj(root.tokens ?? {}, "tokens")).map(([id, t]) => {
    const o = obj(t, `token ${id}`);
    if (typeof o.type !== "string") bad(`token ${id} has no type`);
    return { id, type: o.type, keyslots: strs(o.keyslots, `token ${id}.keyslots`), json: o };
  });
  const segments = Object.entries(obj(root.segments, "segments")).map(([id, s]) => {
    const o = obj(s, `segment ${id}`);
    return { id, type: text(o.type, `segment ${id}.type`), offset: text(o.offset, `segment ${id}.offset`), size: text(o.size, `segment ${id}.size`), encryption: typeof o.encryption === "string" ? o.encryption : undefined, sectorSize: typeof o.sector_size === "number" ? o.sector_size : undefined };
  });
  const digests = Object.entries(obj(root.digests, "digests")).map(([id, d]) => {
    const o = obj(d, `digest ${id}`);
    return { id, type: text(o.type, `digest ${id}.type`), keyslots: strs(o.keyslots, `digest ${id}.keyslots`), segments: strs(o.segments, `digest ${id}.segments`) };
  });
  return { keyslots, tokens, segments, digests };
}

/** Reads just enough of a device or image file for both header copies (at most 8 MiB). */
export async function readLuksHeaderFile(path: string): Promise<LuksHeader> {
  let f: RandomReader;
  try {
    f = openRandom(path);
  } catch (e) {
    throw new CvmError("LUKS", `cannot open ${path} (${(e as NodeJS.ErrnoException).code})`);
  }
  try {
    const limit = Math.min(f.size, 8 << 20);
    // Both copies only: the primary's hdr_size says where the secondary ends (2 × hdr_size, usually 32 KiB).
    // A damaged primary falls back to reading the largest area a secondary can sit in.
    let buf: Uint8Array;
    try {
      const first = new Uint8Array(4096);
      const n = f.readAt(first, 0);
      const hdrSize = n >= 16 ? Number(be64(first, 8)) : 0;
      const want = HDR_SIZES.includes(hdrSize) ? Math.min(2 * hdrSize, limit) : limit;
      // The first 4 KiB are in hand: read only the rest.
      if (want <= n) buf = first.subarray(0, want);
      else {
        buf = new Uint8Array(want);
        buf.set(first.subarray(0, n));
        buf = buf.subarray(0, n < first.length ? n : n + f.readAt(buf.subarray(n), n));
      }
    } catch (e) {
      throw new CvmError("LUKS", `cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    return parseLuks2(buf);
  } finally {
    f.close();
  }
}
