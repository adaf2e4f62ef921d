// `measure snp` against an independent implementation: virtee/sev-snp-measure's published launch digests
// for the same inputs (test/vectors/sev-snp-measure: two real OVMF footers, kernel/initrd/command line,
// vCPU count and type, guest features, VMM).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { hex } from "../../src/bytes.js";
import { CvmError } from "../../src/errors.js";
import { parseOvmf, SECTION, snpLaunchDigest, snpOvmfHash, VCPU_TYPES, type Vmm } from "../../src/tee/snp/measure.js";
import { ROOT } from "../helpers/bin.js";

const DIR = join(ROOT, "test/vectors/sev-snp-measure");
const vec = JSON.parse(readFileSync(join(DIR, "expected.json"), "utf8"));
const ovmf = (f: string) => new Uint8Array(readFileSync(join(DIR, f)));
const input = (c: any) => ({
  ovmf: ovmf(c.ovmf), vcpus: c.vcpus, vcpuSig: c.vcpu_type ? VCPU_TYPES[c.vcpu_type]! : 0, guestFeatures: BigInt(c.guest_features), vmm: c.vmm as Vmm,
  kernel: c.kernel === null ? undefined : new Uint8Array(0), initrd: c.initrd === null ? undefined : new Uint8Array(0), append: c.append ?? undefined,
});

describe("SEV-SNP launch digest (measure snp)", () => {
  it.each(vec.cases.map((c: any) => [c.name, c]) as [string, any][])("%s: the same digest as sev-snp-measure", (_n, c) => {
    expect(hex(snpLaunchDigest(input(c)))).toBe(c.digest);
  });

  it("EPYC-v4's CPUID signature is 0x800f12", () => {
    expect(VCPU_TYPES["EPYC-v4"]).toBe(0x800f12);
  });

  it("reads the AmdSev build's metadata: zero, secrets, CPUID and kernel-hashes sections", () => {
    const o = parseOvmf(ovmf("ovmf_AmdSev_suffix.bin"));
    expect(o.gpa).toBe(0x1_0000_0000 - 4096);
    expect(new Set(o.sections.map((s) => s.type))).toEqual(new Set([SECTION.SNP_SEC_MEM, SECTION.SNP_SECRETS, SECTION.CPUID, SECTION.SVSM_CAA, SECTION.SNP_KERNEL_HASHES]));
    expect(hex(snpOvmfHash(ovmf("ovmf_AmdSev_suffix.bin")))).toBe(vec.ovmf_hash.digest);
    expect(parseOvmf(ovmf("ovmf_OvmfX64_suffix.bin")).sections.some((s) => s.type === SECTION.SNP_KERNEL_HASHES)).toBe(false);
  });

  it("a kernel with an OVMF that cannot measure it, and a damaged image: typed TEE errors", () => {
    const e = vec.errors[0];
    expect(() => snpLaunchDigest({ ...input({ ...vec.cases[0], ovmf: e.ovmf }), kernel: new Uint8Array(0) })).toThrow(new RegExp(e.message));
    const broken = ovmf("ovmf_AmdSev_suffix.bin");
    const at = parseOvmf(broken);
    expect(at.sections.length).toBeGreaterThan(0);
    const damaged = broken.slice();
    const asev = Buffer.from(damaged).indexOf("ASEV");
    damaged[asev] = 0x58;
    expect(() => snpLaunchDigest({ ...input(vec.cases[0]), ovmf: damaged })).toThrow(CvmError);
    expect(() => parseOvmf(damaged)).toThrow(/not ASEV/);
    expect(() => parseOvmf(new Uint8Array(100))).toThrow(/not whole pages/);
  });

  it("the digest changes with the kernel, the initrd and the command line (what measured direct boot pins)", () => {
    const base = input(vec.cases[0]);
    const d = (x: Partial<typeof base>) => hex(snpLaunchDigest({ ...base, ...x }));
    const all = new Set([d({}), d({ kernel: Uint8Array.of(1) }), d({ initrd: Uint8Array.of(1) }), d({ append: "init=/bin/sh" }), d({ vcpus: 2 })]);
    expect(all.size).toBe(5);
  });
});
