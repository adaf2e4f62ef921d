// cvm-unlock convert: the first-boot conversion of tpm2-import tokens (see flow/convert.ts). No network,
// no unlocked volume: in the initramfs it runs before systemd-cryptsetup.
import { existsSync } from "node:fs";
import { CvmError } from "../errors.js";
import { convertDevice, FAULT_STEPS, type ConvertResult, type FaultStep } from "../flow/convert.js";
import { devicePath } from "../luks/cryptsetup.js";
import { Tpm } from "../tpm/commands.js";
import { openTpm } from "../tpm/transport.js";
import type { Runner } from "./command.js";
import { loadEffective } from "./common.js";

export const convert: Runner = async (ctx) => {
  let devices: string[];
  let tpmSpec = typeof ctx.flags["tpm-device"] === "string" ? ctx.flags["tpm-device"] : undefined;
  if (typeof ctx.flags.device === "string") {
    devices = [ctx.flags.device];
  } else {
    const eff = loadEffective(ctx);
    if (eff.disabled) return { status: "disabled", message: "disabled by rd.cvm_unlock=0 on the kernel command line" };
    devices = eff.config.volumes.map((v) => devicePath(v.device));
    tpmSpec ??= eff.config.tpm.device;
  }
  const fault = ctx.flags["fault-at"];
  if (fault !== undefined && !FAULT_STEPS.includes(fault as FaultStep)) throw new CvmError("USAGE", `--fault-at: expected one of ${FAULT_STEPS.join(", ")}`);
  devices = devices.filter((d) => existsSync(d) || ctx.flags.device !== undefined);
  if (devices.length === 0) return { status: "nothing-to-do", message: "nothing to do: no volume to convert" };
  const tpm = new Tpm(await openTpm(tpmSpec ?? "/dev/tpmrm0", ctx.native));
  const results: ConvertResult[] = [];
  try {
    for (const d of devices) results.push(await ctx.trace.run("convert", () => convertDevice(d, tpm, { log: ctx.log, faultAt: fault as FaultStep | undefined })));
  } finally {
    tpm.transport.close();
  }
  const n = results.reduce((k, r) => k + r.converted.length, 0);
  if (n === 0) return { status: "nothing-to-do", message: "nothing to do: no tpm2-import token", data: { results } };
  return { status: "done", message: `converted ${n} tpm2-import token(s) into systemd-tpm2 tokens sealed to this TPM`, data: { results, timings_ms: ctx.trace.timings_ms } };
};
