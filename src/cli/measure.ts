// cvm-unlock measure snp: the SEV-SNP launch digest a guest launched from these files will report, for the
// broker's policy (tee/snp/measure.ts). With --kernel it is the measured direct boot digest, which pins the
// kernel, the initramfs (and so the agent, its config and CA) and the command line, not only the firmware.
import { hex } from "../bytes.js";
import { CvmError } from "../errors.js";
import { snpLaunchDigest, snpOvmfHash, VCPU_TYPES, type Vmm } from "../tee/snp/measure.js";
import type { Runner } from "./command.js";
import { readFlagFile } from "./common.js";

function intFlag(v: string | boolean | undefined, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  const n = typeof v === "string" && /^(0x[0-9a-f]+|\d+)$/i.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n)) throw new CvmError("USAGE", `--${name}: expected a number (decimal or 0x…)`);
  return n;
}

export const measureSnp: Runner = async (ctx) => {
  const f = ctx.flags;
  if (typeof f.ovmf !== "string") throw new CvmError("USAGE", "measure snp needs --ovmf FILE (the AmdSev OVMF build for measured direct boot)");
  const vmm = (f.vmm ?? "qemu") as Vmm;
  if (!["qemu", "ec2", "gce"].includes(vmm)) throw new CvmError("USAGE", "--vmm: expected qemu, ec2 or gce");
  let vcpuSig: number;
  if (typeof f["vcpu-type"] === "string") {
    vcpuSig = VCPU_TYPES[f["vcpu-type"]] ?? (() => {
      throw new CvmError("USAGE", `--vcpu-type ${f["vcpu-type"]}: unknown (known: ${Object.keys(VCPU_TYPES).join(", ")})`);
    })();
  } else if (f["vcpu-sig"] !== undefined) vcpuSig = intFlag(f["vcpu-sig"], "vcpu-sig", 0);
  else if (vmm === "qemu") throw new CvmError("USAGE", "measure snp needs --vcpu-type NAME (e.g. EPYC-v4) or --vcpu-sig N: QEMU puts the CPUID signature into each VMSA");
  else vcpuSig = 0;
  if (typeof f.kernel !== "string" && (f.initrd !== undefined || f.append !== undefined)) throw new CvmError("USAGE", "--initrd and --append need --kernel (measured direct boot)");
  const ovmf = readFlagFile("--ovmf", f.ovmf);
  const input = {
    ovmf,
    vcpus: intFlag(f.vcpus, "vcpus", 1),
    vcpuSig,
    guestFeatures: BigInt(intFlag(f["guest-features"], "guest-features", 1)),
    vmm,
    kernel: typeof f.kernel === "string" ? readFlagFile("--kernel", f.kernel) : undefined,
    initrd: typeof f.initrd === "string" ? readFlagFile("--initrd", f.initrd) : undefined,
    append: typeof f.append === "string" ? f.append : undefined,
  };
  const digest = hex(snpLaunchDigest(input));
  ctx.print(digest);
  return {
    status: "done",
    message: `SEV-SNP launch digest: ${digest}`,
    data: { launch_digest: digest, ovmf_hash: hex(snpOvmfHash(ovmf)), vcpus: input.vcpus, vcpu_sig: `0x${vcpuSig.toString(16)}`, guest_features: `0x${input.guestFeatures.toString(16)}`, vmm, measured_direct_boot: input.kernel !== undefined },
  };
};
