// The compiled `measure snp` on the independent implementation's inputs: the same launch digests.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { requireBin, ROOT, runBin } from "../helpers/bin.js";

beforeAll(requireBin);
const DIR = join(ROOT, "test/vectors/sev-snp-measure");
const vec = JSON.parse(readFileSync(join(DIR, "expected.json"), "utf8"));

describe("cvm-unlock measure snp", () => {
  it.each((vec.cases as any[]).filter((c) => c.vmm === "qemu").map((c) => [c.name, c]) as [string, any][])("%s", (_n, c) => {
    const args = ["measure", "snp", "--json", "--ovmf", join(DIR, c.ovmf), "--vcpus", String(c.vcpus), "--vcpu-type", c.vcpu_type, "--guest-features", `0x${c.guest_features.toString(16)}`];
    if (c.kernel !== null) args.push("--kernel", "/dev/null", "--initrd", "/dev/null", "--append", c.append);
    const r = runBin(args);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json.launch_digest).toBe(c.digest);
  });

  it("usage errors exit 2; an OVMF that cannot measure a kernel is a TEE error (7)", () => {
    expect(runBin(["measure", "snp", "--vcpu-type", "EPYC-v4"]).status).toBe(2);
    expect(runBin(["measure", "snp", "--ovmf", join(DIR, "ovmf_AmdSev_suffix.bin")]).status).toBe(2); // no vCPU type
    expect(runBin(["measure", "snp", "--ovmf", join(DIR, "ovmf_AmdSev_suffix.bin"), "--vcpu-type", "Pentium"]).status).toBe(2);
    const r = runBin(["measure", "snp", "--ovmf", join(DIR, "ovmf_OvmfX64_suffix.bin"), "--kernel", "/dev/null", "--vcpu-type", "EPYC-v4"]);
    expect(r.status).toBe(7);
    expect(r.stderr).toMatch(/no SNP_KERNEL_HASHES section/);
  });
});
