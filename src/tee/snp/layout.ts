// AMD SEV-SNP ATTESTATION_REPORT (1184 bytes), versions 2 to 5 (4 shares 3's layout), the TCB_VERSION
// byte layouts per product, and the extended-report certificate table. Pure data and byte work; nothing
// here can open a device. Offsets: shared/reference/tee-evidence.md §1.2–1.5.
import { bytes, encode, hex, layout, LayoutError, parse, type Field, type Layout, type Parsed } from "../layout.js";

export const REPORT_SIZE = 0x4a0;
export const SIGNED_SIZE = 0x2a0;

const COMMON: Field[] = [
  { name: "version", off: 0x000, type: "u32" },
  { name: "guest_svn", off: 0x004, type: "u32" },
  { name: "policy", off: 0x008, type: "u64" },
  { name: "family_id", off: 0x010, type: bytes(16) },
  { name: "image_id", off: 0x020, type: bytes(16) },
  { name: "vmpl", off: 0x030, type: "u32" },
  { name: "signature_algo", off: 0x034, type: "u32" },
  { name: "current_tcb", off: 0x038, type: "u64" },
  { name: "platform_info", off: 0x040, type: "u64" },
  { name: "signer_info", off: 0x048, type: "u32" },
  { name: "report_data", off: 0x050, type: bytes(64) },
  { name: "measurement", off: 0x090, type: bytes(48) },
  { name: "host_data", off: 0x0c0, type: bytes(32) },
  { name: "id_key_digest", off: 0x0e0, type: bytes(48) },
  { name: "author_key_digest", off: 0x110, type: bytes(48) },
  { name: "report_id", off: 0x140, type: bytes(32) },
  { name: "report_id_ma", off: 0x160, type: bytes(32) },
  { name: "reported_tcb", off: 0x180, type: "u64" },
  { name: "chip_id", off: 0x1a0, type: bytes(64) },
  { name: "committed_tcb", off: 0x1e0, type: "u64" },
  { name: "current_build", off: 0x1e8, type: "u8" },
  { name: "current_minor", off: 0x1e9, type: "u8" },
  { name: "current_major", off: 0x1ea, type: "u8" },
  { name: "committed_build", off: 0x1ec, type: "u8" },
  { name: "committed_minor", off: 0x1ed, type: "u8" },
  { name: "committed_major", off: 0x1ee, type: "u8" },
  { name: "launch_tcb", off: 0x1f0, type: "u64" },
  { name: "signature_r", off: 0x2a0, type: bytes(72) },
  { name: "signature_s", off: 0x2e8, type: bytes(72) },
];
const CPUID: Field[] = [
  { name: "cpuid_fam_id", off: 0x188, type: "u8" },
  { name: "cpuid_mod_id", off: 0x189, type: "u8" },
  { name: "cpuid_step", off: 0x18a, type: "u8" },
];
const MIT: Field[] = [
  { name: "launch_mit_vector", off: 0x1f8, type: "u64" },
  { name: "current_mit_vector", off: 0x200, type: "u64" },
];

export const REPORT_LAYOUTS: Record<number, Layout> = {
  2: layout("SNP report v2", REPORT_SIZE, COMMON),
  3: layout("SNP report v3", REPORT_SIZE, [...COMMON, ...CPUID]),
  4: layout("SNP report v4", REPORT_SIZE, [...COMMON, ...CPUID]),
  5: layout("SNP report v5", REPORT_SIZE, [...COMMON, ...CPUID, ...MIT]),
};

export type Product = "Milan" | "Genoa" | "Turin";

export interface Tcb {
  fmc?: number;
  bootloader: number;
  tee: number;
  snp: number;
  microcode: number;
}

/** TCB_VERSION byte positions: Milan/Genoa vs Turin and later. */
const TCB_BYTES: Record<"legacy" | "turin", Partial<Record<keyof Tcb, number>>> = {
  legacy: { bootloader: 0, tee: 1, snp: 6, microcode: 7 },
  turin: { fmc: 0, bootloader: 1, tee: 2, snp: 3, microcode: 7 },
};
const tcbKind = (p: Product) => (p === "Turin" ? "turin" : "legacy");

export function decodeTcb(raw: bigint, product: Product): Tcb {
  const pos = TCB_BYTES[tcbKind(product)];
  const byte = (i: number | undefined) => (i === undefined ? 0 : Number((raw >> BigInt(8 * i)) & 0xffn));
  const t: Tcb = { bootloader: byte(pos.bootloader), tee: byte(pos.tee), snp: byte(pos.snp), microcode: byte(pos.microcode) };
  if (pos.fmc !== undefined) t.fmc = byte(pos.fmc);
  return t;
}

export function encodeTcb(t: Tcb, product: Product): bigint {
  let raw = 0n;
  for (const [k, i] of Object.entries(TCB_BYTES[tcbKind(product)])) raw |= BigInt((t[k as keyof Tcb] ?? 0) & 0xff) << BigInt(8 * i!);
  return raw;
}

/** Product from the CPUID fields (v3+); undefined when the report does not say (v2) or the model is unknown. */
export function productFromCpuid(fam: number, mod: number): Product | undefined {
  if (fam === 0x19 && mod <= 0x0f) return "Milan";
  if (fam === 0x19 && ((mod >= 0x10 && mod <= 0x1f) || (mod >= 0xa0 && mod <= 0xaf))) return "Genoa";
  if (fam === 0x1a && mod <= 0x11) return "Turin";
  return undefined;
}

export interface SnpReport {
  raw: Uint8Array;
  fields: Parsed;
  version: number;
  /** From CPUID fields; v2 reports need the VCEK's productName (see verify). */
  product?: Product;
}

export function parseReport(buf: Uint8Array): SnpReport {
  if (buf.length < 4) throw new LayoutError("SNP report", `too short (${buf.length} bytes)`);
  if (buf.length !== REPORT_SIZE) throw new LayoutError("SNP report", `must be exactly ${REPORT_SIZE} bytes, got ${buf.length}`);
  const version = new DataView(buf.buffer, buf.byteOffset, 4).getUint32(0, true);
  const l = REPORT_LAYOUTS[version];
  if (!l) throw new LayoutError("SNP report", `unknown version ${version} (known: 2 to 5)`);
  const fields = parse(l, buf);
  if (fields.signature_algo !== 1) throw new LayoutError("SNP report", `signature algorithm ${fields.signature_algo} is not ECDSA P-384/SHA-384 (1)`);
  const product = version >= 3 ? productFromCpuid(fields.cpuid_fam_id as number, fields.cpuid_mod_id as number) : undefined;
  return { raw: buf.slice(), fields, version, product };
}

export const encodeReport = (r: { version: number; fields: Parsed }): Uint8Array => encode(REPORT_LAYOUTS[r.version]!, r.fields);

export const POLICY_BITS = { smt: 16, reserved17: 17, migrate_ma: 18, debug: 19, single_socket: 20, cxl_allow: 21, mem_aes_256_xts: 22, rapl_dis: 23, ciphertext_hiding: 24, page_swap_disable: 25 } as const;

export function decodePolicy(p: bigint): Record<string, number | boolean> {
  const out: Record<string, number | boolean> = { abi_minor: Number(p & 0xffn), abi_major: Number((p >> 8n) & 0xffn) };
  for (const [k, bit] of Object.entries(POLICY_BITS)) out[k] = ((p >> BigInt(bit)) & 1n) === 1n;
  return out;
}

export const SIGNING_KEYS: Record<number, string> = { 0: "VCEK", 1: "VLEK", 7: "none" };
export const signingKey = (signerInfo: number): string => SIGNING_KEYS[(signerInfo >> 2) & 7] ?? `reserved(${(signerInfo >> 2) & 7})`;

/** R and S are 72-byte little-endian fields; returns the 96-byte big-endian r‖s a P-384 verifier takes. */
export function signatureP1363(fields: Parsed): Uint8Array {
  const out = new Uint8Array(96);
  const r = fields.signature_r as Uint8Array, s = fields.signature_s as Uint8Array;
  for (let i = 0; i < 48; i++) {
    out[47 - i] = r[i]!;
    out[95 - i] = s[i]!;
  }
  return out;
}

// ---- certificate table (extended report pages / configfs auxblob) ----

export const CERT_GUIDS: Record<string, string> = {
  "63da758d-e664-4564-adc5-f4b93be8accd": "VCEK",
  "a8074bc2-a25a-483e-aae6-39c045a0b8a1": "VLEK",
  "4ab7b379-bbac-4fe4-a02f-05aef327c782": "ASK",
  "c0b406a4-a803-4952-9743-3fb6014cd0ae": "ARK",
  "92f81bc3-5811-4d3d-97ff-d19f88dc67ea": "CRL",
};
const guidString = (b: Uint8Array) => hex(b).replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, "$1-$2-$3-$4-$5");
const guidBytes = (s: string) => Uint8Array.from(s.replace(/-/g, "").match(/../g)!.map((x) => parseInt(x, 16)));

export interface CertEntry {
  guid: string;
  kind: string;
  data: Uint8Array;
}

export function parseCertTable(buf: Uint8Array): CertEntry[] {
  if (buf.length === 0) return [];
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const heads: { guid: string; off: number; len: number }[] = [];
  for (let pos = 0; ; pos += 24) {
    if (pos + 24 > buf.length) throw new LayoutError("SNP cert table", "no terminator entry");
    const g = buf.subarray(pos, pos + 16);
    const off = dv.getUint32(pos + 16, true), len = dv.getUint32(pos + 20, true);
    if (g.every((x) => x === 0)) {
      if (off !== 0 || len !== 0) throw new LayoutError("SNP cert table", "terminator entry with non-zero offset or length");
      const headerEnd = pos + 24;
      for (const h of heads) {
        if (h.off < headerEnd || h.off + h.len > buf.length) throw new LayoutError("SNP cert table", `entry ${h.guid} points outside the table`);
      }
      break;
    }
    heads.push({ guid: guidString(g), off, len });
    if (heads.length > 64) throw new LayoutError("SNP cert table", "more than 64 entries");
  }
  return heads.map((h) => ({ guid: h.guid, kind: CERT_GUIDS[h.guid] ?? "OTHER", data: buf.slice(h.off, h.off + h.len) }));
}

export function encodeCertTable(entries: readonly { guid: string; data: Uint8Array }[]): Uint8Array {
  const headerLen = 24 * (entries.length + 1);
  const total = headerLen + entries.reduce((n, e) => n + e.data.length, 0);
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  let off = headerLen;
  entries.forEach((e, i) => {
    out.set(guidBytes(e.guid), 24 * i);
    dv.setUint32(24 * i + 16, off, true);
    dv.setUint32(24 * i + 20, e.data.length, true);
    out.set(e.data, off);
    off += e.data.length;
  });
  return out;
}

export const guidOf = (kind: string): string => Object.entries(CERT_GUIDS).find(([, k]) => k === kind)![0];
