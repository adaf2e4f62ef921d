// The SEV-SNP launch digest a guest will have, computed from what the host loads: the OVMF image, its SEV
// metadata sections (zero, secrets, CPUID and kernel-hashes pages), the kernel/initrd/command line hashes
// QEMU puts into the kernel-hashes page for measured direct boot, and one VMSA per vCPU. The PSP folds each
// page into the digest as SHA-384(previous digest ‖ PAGE_INFO) (SNP ABI spec, PAGE_INFO of
// SNP_LAUNCH_UPDATE). A broker policy pinned to this digest covers the firmware *and* the kernel, the
// initramfs (the agent, its config and CA) and the command line; a disk boot's digest covers the firmware only.
// Checked against virtee/sev-snp-measure's published expectations (test/vectors/sev-snp-measure).
import { sha256, sha384 } from "@noble/hashes/sha2.js";
import { guidBytes, hex } from "../../bytes.js";
import { CvmError } from "../../errors.js";
import { bytes, encode, layout, seq } from "../layout.js";

const PAGE = 4096;
const FOUR_GB = 0x1_0000_0000;
const VMSA_GPA = 0xffff_ffff_f000; // the VMSA page's GPA in PAGE_INFO: (u64)-1, page aligned, bits above 51 clear

/** PAGE_INFO page types. */
const PAGE_TYPE = { NORMAL: 1, VMSA: 2, ZERO: 3, UNMEASURED: 4, SECRETS: 5, CPUID: 6 } as const;
/** OVMF SEV metadata section types (edk2 OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm). */
export const SECTION = { SNP_SEC_MEM: 1, SNP_SECRETS: 2, CPUID: 3, SVSM_CAA: 4, SNP_KERNEL_HASHES: 0x10 } as const;

const PAGE_INFO = layout("SNP PAGE_INFO", 0x70, seq(0, [
  ["digest_cur", bytes(48)], ["contents", bytes(48)], ["length", "u16"], ["page_type", "u8"], ["imi_page", "u8"],
  ["vmpl3_perms", "u8"], ["vmpl2_perms", "u8"], ["vmpl1_perms", "u8"], ["reserved", "u8"], ["gpa", "u64"],
]));

/** The running launch digest. */
class LaunchDigest {
  constructor(public ld: Uint8Array = new Uint8Array(48)) {}
  private update(pageType: number, gpa: number, contents: Uint8Array): void {
    this.ld = sha384(encode(PAGE_INFO, { digest_cur: this.ld, contents, length: 0x70, page_type: pageType, imi_page: 0, vmpl3_perms: 0, vmpl2_perms: 0, vmpl1_perms: 0, reserved: 0, gpa: BigInt(gpa) }));
  }
  normal(gpa: number, data: Uint8Array): void {
    for (let off = 0; off < data.length; off += PAGE) this.update(PAGE_TYPE.NORMAL, gpa + off, sha384(data.subarray(off, off + PAGE)));
  }
  blank(type: number, gpa: number, size: number): void {
    for (let off = 0; off < size; off += PAGE) this.update(type, gpa + off, new Uint8Array(48));
  }
  vmsa(page: Uint8Array): void {
    this.update(PAGE_TYPE.VMSA, VMSA_GPA, sha384(page));
  }
}

// --- OVMF: the GUIDed footer table and the SEV metadata it points to ---------------------------------------

const GUID = {
  FOOTER: "96b582de-1fb2-45f7-baea-a366c55a082d",
  SEV_HASH_TABLE_RV: "7255371f-3a3b-4b04-927b-1da6efa8d454",
  SEV_ES_RESET_BLOCK: "00f771de-1a7e-4fcb-890e-68c77e2fb44e",
  SEV_METADATA: "dc886566-984a-4798-a75e-5585a7bf67cc",
  HASH_TABLE: "9438d606-4f22-4cc9-b479-a793d411fd21",
  KERNEL: "4de79437-abd2-427f-b835-d5b172d2045b",
  INITRD: "44baf731-3a2f-4bd7-9af1-41e29169781d",
  CMDLINE: "97d02dd8-bd20-4c94-aa78-e7714d36ab2a",
} as const;

export interface OvmfInfo {
  gpa: number;
  table: Map<string, Uint8Array>;
  sections: { gpa: number; size: number; type: number }[];
}

const bad = (m: string): never => {
  throw new CvmError("TEE", `OVMF: ${m}`, { reason: "malformed" });
};

/** Reads the footer table (entries, each `data ‖ u16 size ‖ GUID`, laid out backwards from 32 bytes before the
 *  end) and the SEV metadata ("ASEV", version 1, section descriptors). The image ends at 4 GiB. */
export function parseOvmf(img: Uint8Array): OvmfInfo {
  if (img.length < 64 || img.length % PAGE !== 0) bad(`an image of ${img.length} bytes is not whole pages`);
  const dv = new DataView(img.buffer, img.byteOffset, img.byteLength);
  const table = new Map<string, Uint8Array>();
  const footerAt = img.length - 32 - 18;
  const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);
  if (same(img.subarray(footerAt + 2, footerAt + 18), guidBytes(GUID.FOOTER))) {
    const tableSize = dv.getUint16(footerAt, true) - 18;
    if (tableSize < 0 || tableSize > footerAt) bad("footer table size out of range");
    let end = footerAt;
    const start = footerAt - tableSize;
    while (end - start >= 18) {
      const size = dv.getUint16(end - 18, true);
      if (size < 18 || size > end - start) bad(`footer entry of size ${size}`);
      const guid = img.subarray(end - 16, end);
      table.set(hex(guid), img.slice(end - size, end - 18));
      end -= size;
    }
  }
  const sections: OvmfInfo["sections"] = [];
  const meta = table.get(hex(guidBytes(GUID.SEV_METADATA)));
  if (meta) {
    if (meta.length < 4) bad("SEV metadata entry too short");
    const at = img.length - new DataView(meta.buffer, meta.byteOffset).getUint32(0, true);
    if (at < 0 || at + 16 > img.length) bad("SEV metadata offset outside the image");
    if (new TextDecoder().decode(img.subarray(at, at + 4)) !== "ASEV") bad("SEV metadata signature is not ASEV");
    if (dv.getUint32(at + 8, true) !== 1) bad(`SEV metadata version ${dv.getUint32(at + 8, true)}`);
    const n = dv.getUint32(at + 12, true);
    if (n > 64 || at + 16 + n * 12 > img.length) bad(`SEV metadata lists ${n} sections`);
    for (let i = 0; i < n; i++) {
      const o = at + 16 + i * 12;
      const s = { gpa: dv.getUint32(o, true), size: dv.getUint32(o + 4, true), type: dv.getUint32(o + 8, true) };
      if (!Object.values(SECTION).includes(s.type as never)) bad(`SEV metadata section ${i} has unknown type ${s.type}`);
      if (s.size % PAGE !== 0 || s.gpa % PAGE !== 0) bad(`SEV metadata section ${i} is not page aligned`);
      sections.push(s);
    }
  }
  return { gpa: FOUR_GB - img.length, table, sections };
}

const tableU32 = (o: OvmfInfo, guid: string): number | undefined => {
  const e = o.table.get(hex(guidBytes(guid)));
  return e && e.length >= 4 ? new DataView(e.buffer, e.byteOffset).getUint32(0, true) : undefined;
};

// --- The kernel-hashes page QEMU fills for measured direct boot --------------------------------------------

/** SEV hash table: header GUID + u16 length, then cmdline, initrd, kernel entries (GUID, u16 length, SHA-256),
 *  padded to 16 bytes; placed at the table's offset within its page. */
export function kernelHashesPage(offsetInPage: number, h: { kernel: Uint8Array; initrd?: Uint8Array; append?: string }): Uint8Array {
  const entry = (guid: string, digest: Uint8Array) => Uint8Array.of(...guidBytes(guid), 50, 0, ...digest);
  const cmdline = new TextEncoder().encode(`${h.append ?? ""}\0`);
  const body = [entry(GUID.CMDLINE, sha256(cmdline)), entry(GUID.INITRD, sha256(h.initrd ?? new Uint8Array(0))), entry(GUID.KERNEL, sha256(h.kernel))];
  const len = 18 + 3 * 50;
  const table = new Uint8Array((len + 15) & ~15);
  table.set(guidBytes(GUID.HASH_TABLE));
  table.set([len & 0xff, len >> 8], 16);
  body.forEach((b, i) => table.set(b, 18 + i * 50));
  if (offsetInPage + table.length > PAGE) bad("the kernel hashes table does not fit its page");
  const page = new Uint8Array(PAGE);
  page.set(table, offsetInPage);
  return page;
}

// --- The VMSA of each vCPU at reset ---------------------------------------------------------------------

/** The fields of the SEV-ES save area this needs (AMD APM vol. 2, table B-4); everything else is zero. */
const seg = (n: string, off: number) => seq(off, [[`${n}_selector`, "u16"], [`${n}_attrib`, "u16"], [`${n}_limit`, "u32"], [`${n}_base`, "u64"]]);
const VMSA = layout("SEV-ES save area", PAGE, [
  ...["es", "cs", "ss", "ds", "fs", "gs", "gdtr", "ldtr", "idtr", "tr"].flatMap((n, i) => seg(n, i * 16)),
  { name: "efer", off: 0xd0, type: "u64" },
  ...seq(0x148, [["cr4", "u64"], ["cr3", "u64"], ["cr0", "u64"], ["dr7", "u64"], ["dr6", "u64"], ["rflags", "u64"], ["rip", "u64"]]),
  { name: "g_pat", off: 0x268, type: "u64" },
  { name: "rdx", off: 0x310, type: "u64" },
  { name: "sev_features", off: 0x3b0, type: "u64" },
  { name: "xcr0", off: 0x3e8, type: "u64" },
  { name: "mxcsr", off: 0x408, type: "u32" },
  { name: "x87_fcw", off: 0x410, type: "u16" },
]);

export type Vmm = "qemu" | "ec2" | "gce";

function vmsaPage(eip: number, sevFeatures: bigint, vcpuSig: number, vmm: Vmm): Uint8Array {
  const v: Record<string, number | bigint> = {};
  const set = (n: string, selector: number, attrib: number, limit: number, base: number) => Object.assign(v, { [`${n}_selector`]: selector, [`${n}_attrib`]: attrib, [`${n}_limit`]: limit, [`${n}_base`]: BigInt(base) });
  // How the VMMs differ in the reset state they give a vCPU.
  const k = vmm === "qemu"
    ? { cs: 0x9b, ss: 0x93, tr: 0x8b, rdx: vcpuSig, mxcsr: 0x1f80, fcw: 0x37f, gpat: 0x7040600070406n }
    : vmm === "ec2"
      ? { cs: eip === 0xfffffff0 ? 0x9a : 0x9b, ss: 0x92, tr: 0x83, rdx: 0x600, mxcsr: 0, fcw: 0, gpat: 0x7040600070406n }
      : { cs: 0x9b, ss: 0x93, tr: 0x8b, rdx: 0x600, mxcsr: 0, fcw: 0, gpat: 0x00070106n };
  set("es", 0, 0x93, 0xffff, 0);
  set("cs", 0xf000, k.cs, 0xffff, (eip & 0xffff0000) >>> 0); // >>> 0: JS bit operations are signed
  set("ss", 0, k.ss, 0xffff, 0);
  for (const n of ["ds", "fs", "gs"]) set(n, 0, 0x93, 0xffff, 0);
  set("gdtr", 0, 0, 0xffff, 0);
  set("idtr", 0, 0, 0xffff, 0);
  set("ldtr", 0, 0x82, 0xffff, 0);
  set("tr", 0, k.tr, 0xffff, 0);
  Object.assign(v, {
    efer: 0x1000n /* SVME, as KVM sets it */, cr4: 0x40n /* MCE */, cr3: 0n, cr0: 0x10n, dr7: 0x400n, dr6: 0xffff0ff0n, rflags: 0x2n, rip: BigInt(eip & 0xffff),
    g_pat: k.gpat, rdx: BigInt(k.rdx), sev_features: sevFeatures, xcr0: 1n, mxcsr: k.mxcsr, x87_fcw: k.fcw,
  });
  return encode(VMSA, v);
}

// --- The whole digest ---------------------------------------------------------------------------------------

/** QEMU's CPU models and their CPUID signature (family, model, stepping encoded as CPUID Fn0000_0001 EAX). */
export function cpuSig(family: number, model: number, stepping: number): number {
  const [famLo, famHi] = family > 0xf ? [0xf, (family - 0xf) & 0xff] : [family, 0];
  return (famHi << 20) | (((model >> 4) & 0xf) << 16) | (famLo << 8) | ((model & 0xf) << 4) | (stepping & 0xf);
}
export const VCPU_TYPES: Record<string, number> = {
  EPYC: cpuSig(23, 1, 2), "EPYC-v1": cpuSig(23, 1, 2), "EPYC-v2": cpuSig(23, 1, 2), "EPYC-IBPB": cpuSig(23, 1, 2), "EPYC-v3": cpuSig(23, 1, 2), "EPYC-v4": cpuSig(23, 1, 2),
  "EPYC-Rome": cpuSig(23, 49, 0), "EPYC-Rome-v1": cpuSig(23, 49, 0), "EPYC-Rome-v2": cpuSig(23, 49, 0), "EPYC-Rome-v3": cpuSig(23, 49, 0),
  "EPYC-Milan": cpuSig(25, 1, 1), "EPYC-Milan-v1": cpuSig(25, 1, 1), "EPYC-Milan-v2": cpuSig(25, 1, 1),
  "EPYC-Genoa": cpuSig(25, 17, 0), "EPYC-Genoa-v1": cpuSig(25, 17, 0), "EPYC-Turin": cpuSig(26, 0, 0),
};

export interface SnpMeasureInput {
  ovmf: Uint8Array;
  vcpus: number;
  vcpuSig: number;
  /** SEV_FEATURES of the VMSAs (QEMU: 0x1 SNPActive; 0x21 with DebugSwap). */
  guestFeatures: bigint;
  vmm: Vmm;
  /** Measured direct boot: kernel (and initrd, command line) hashed into the kernel-hashes page. */
  kernel?: Uint8Array;
  initrd?: Uint8Array;
  append?: string;
}

/** The digest after the OVMF image's pages alone (sev-snp-measure's "OVMF hash", a precomputable prefix). */
export function snpOvmfHash(ovmf: Uint8Array): Uint8Array {
  const ld = new LaunchDigest();
  ld.normal(parseOvmf(ovmf).gpa, ovmf);
  return ld.ld;
}

export function snpLaunchDigest(i: SnpMeasureInput): Uint8Array {
  if (!Number.isInteger(i.vcpus) || i.vcpus < 1 || i.vcpus > 512) throw new CvmError("USAGE", `--vcpus ${i.vcpus}: expected 1 to 512`);
  const o = parseOvmf(i.ovmf);
  const ld = new LaunchDigest();
  ld.normal(o.gpa, i.ovmf);
  if (i.kernel && !o.sections.some((s) => s.type === SECTION.SNP_KERNEL_HASHES)) bad("a kernel is given, but this OVMF has no SNP_KERNEL_HASHES section (it is not the AmdSev build: no measured direct boot)");
  const cpuid = (s: { gpa: number }) => ld.blank(PAGE_TYPE.CPUID, s.gpa, PAGE);
  for (const s of o.sections) {
    if (s.type === SECTION.SNP_SEC_MEM) ld.blank(i.vmm === "gce" ? PAGE_TYPE.UNMEASURED : PAGE_TYPE.ZERO, s.gpa, s.size);
    else if (s.type === SECTION.SNP_SECRETS) ld.blank(PAGE_TYPE.SECRETS, s.gpa, PAGE);
    else if (s.type === SECTION.CPUID) {
      if (i.vmm !== "ec2") cpuid(s);
    } else if (s.type === SECTION.SVSM_CAA) ld.blank(PAGE_TYPE.ZERO, s.gpa, s.size);
    else if (s.type === SECTION.SNP_KERNEL_HASHES) {
      if (!i.kernel) ld.blank(PAGE_TYPE.ZERO, s.gpa, s.size);
      else {
        const at = tableU32(o, GUID.SEV_HASH_TABLE_RV) ?? bad("no SEV hash table entry in the footer table");
        if (s.size !== PAGE) bad(`the kernel hashes section is ${s.size} bytes, not one page`);
        ld.normal(s.gpa, kernelHashesPage(at & (PAGE - 1), { kernel: i.kernel, initrd: i.initrd, append: i.append }));
      }
    }
  }
  if (i.vmm === "ec2") for (const s of o.sections.filter((x) => x.type === SECTION.CPUID)) cpuid(s); // EC2 loads CPUID pages last
  const apEip = tableU32(o, GUID.SEV_ES_RESET_BLOCK) ?? bad("no SEV-ES reset block in the footer table (not an SEV-capable OVMF)");
  const bsp = vmsaPage(0xfffffff0, i.guestFeatures, i.vcpuSig, i.vmm);
  const ap = vmsaPage(apEip, i.guestFeatures, i.vcpuSig, i.vmm);
  for (let c = 0; c < i.vcpus; c++) ld.vmsa(c === 0 ? bsp : ap);
  return ld.ld;
}
