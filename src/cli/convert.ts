// cvm-unlock convert: the first-boot conversion of tpm2-import tokens (see flow/convert.ts). No network,
// no unlocked volume: in the initramfs it runs before systemd-cryptsetup.
import { convertDevice, FAULT_STEPS, type ConvertResult } from "../flow/convert.js";
import { Deadline } from "../flow/deadline.js";
import { readLuksHeaderFile, type LuksHeader } from "../luks/header.js";
import { Tpm } from "../tpm/commands.js";
import { openTpm } from "../tpm/transport.js";
import { pinnedStorageKey } from "../tpm/keys.js";
import type { Runner } from "./command.js";
import { faultFlag, loadEffective, noCoreDumps, readFlagFile, refuseEscapes, waitForDevices } from "./common.js";

export const convert: Runner = async (ctx) => {
  await noCoreDumps(ctx);
  let devices: string[];
  let tpmSpec = typeof ctx.flags["tpm-device"] === "string" ? ctx.flags["tpm-device"] : undefined;
  // The pinned storage key: --srk, else the config's tpm.srk (withEncryption refuses to unseal without one).
  let srk = typeof ctx.flags.srk === "string" ? pinnedStorageKey(readFlagFile("--srk", ctx.flags.srk), `--srk ${ctx.flags.srk}`) : undefined;
  const fault = faultFlag(ctx, FAULT_STEPS);
  if (typeof ctx.flags.device === "string") {
    devices = [ctx.flags.device];
  } else {
    // The boot job: the configured volumes, waited for as udev brings them up (within the deadline).
    const eff = loadEffective(ctx);
    refuseEscapes(eff);
    if (eff.disabled) return { status: "disabled", message: "disabled by rd.cvm_unlock=0 on the kernel command line" };
    const volumes = eff.config.volumes;
    if (volumes.length === 0) return { status: "nothing-to-do", message: "nothing to do: no volume configured" };
    devices = [...(await ctx.trace.run("devices", () => waitForDevices(volumes, new Deadline(eff.config.deadline_s), ctx))).values()];
    tpmSpec ??= eff.config.tpm.device;
    srk ??= eff.srk;
  }
  // Only a volume with a tpm2-import token needs the TPM: a later boot reads the headers and is done.
  const todo: { device: string; header: LuksHeader }[] = [];
  for (const device of devices) {
    const header = await readLuksHeaderFile(device);
    if (header.tokens.some((t) => t.type === "tpm2-import")) todo.push({ device, header });
  }
  if (todo.length === 0) return { status: "nothing-to-do", message: "nothing to do: no tpm2-import token", data: { devices, timings_ms: ctx.trace.timings_ms } };
  const tpm = new Tpm(await openTpm(tpmSpec ?? "/dev/tpmrm0", ctx.native));
  const results: ConvertResult[] = [];
  try {
    for (const { device, header } of todo) results.push(await ctx.trace.run("convert", () => convertDevice(device, tpm, { log: ctx.log, srk, fault, header })));
  } finally {
    tpm.transport.close();
  }
  const n = results.reduce((k, r) => k + r.converted.length, 0);
  return { status: "done", message: `converted ${n} tpm2-import token(s) into systemd-tpm2 tokens sealed to this TPM`, data: { results, timings_ms: ctx.trace.timings_ms } };
};
