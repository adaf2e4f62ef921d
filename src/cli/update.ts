// cvm-unlock update / finalize: the UKI update lifecycle (flow/update.ts, flow/finalize.ts). update is what
// the kernel-install plugin runs when a UKI is added; finalize is run by cvm-unlock-finalize.service once
// the booted system's root is unlocked.
import { existsSync } from "node:fs";
import { basename } from "node:path";
import { CvmError } from "../errors.js";
import { locateEsp, mountedDevice } from "../efi/esp.js";
import { bootName, EfiVars, EFIVARS } from "../efi/vars.js";
import { FINALIZE_STEPS, finalize as finalizeFlow } from "../flow/finalize.js";
import { removeUki, TRIAL_STATE, UPDATE_STEPS, updateUki } from "../flow/update.js";
import { readLuksHeaderFile } from "../luks/header.js";
import { Tpm } from "../tpm/commands.js";
import { openTpm } from "../tpm/transport.js";
import type { Context, Runner } from "./command.js";
import { faultFlag, noCoreDumps, readFlagFile } from "./common.js";
import { peOf } from "./debug-boot.js";
import { resealVolumes, volumesAndTpm } from "./reseal.js";

const str = (ctx: Context, name: string): string | undefined => (typeof ctx.flags[name] === "string" ? (ctx.flags[name] as string) : undefined);

/** --esp, else /efi or /boot/efi, whichever is a mount point (systemd's order). */
function espDir(ctx: Context): string {
  const given = str(ctx, "esp");
  if (given) return given;
  const found = ["/efi", "/boot/efi", "/boot"].find((d) => existsSync(d) && mountedDevice(d));
  if (!found) throw new CvmError("EFI", "no ESP mounted at /efi, /boot/efi or /boot: give --esp DIR");
  return found;
}

/** The ESP: --esp (or the usual mount points), --esp-disk and --esp-partition for an image. */
function espOf(ctx: Context) {
  const part = str(ctx, "esp-partition");
  if (part !== undefined && !/^[1-9][0-9]{0,2}$/.test(part)) throw new CvmError("USAGE", "--esp-partition: a partition number");
  if ((part === undefined) !== (str(ctx, "esp-disk") === undefined)) throw new CvmError("USAGE", "--esp-disk and --esp-partition go together");
  return locateEsp(espDir(ctx), { disk: str(ctx, "esp-disk"), partition: part ? Number(part) : undefined });
}

export const update: Runner = async (ctx) => {
  await noCoreDumps(ctx);
  const ukiPath = str(ctx, "uki");
  if (!ukiPath) throw new CvmError("USAGE", "update needs --uki NEW.efi");
  const f = faultFlag(ctx, UPDATE_STEPS);
  const uki = readFlagFile("--uki", ukiPath);
  const pe = peOf(uki);
  if (!pe.uki) throw new CvmError("USAGE", `--uki ${ukiPath}: not a unified kernel image (no .linux section)`);
  const authenticode = pe.digests;
  const esp = espOf(ctx);
  const r = await updateUki({
    uki,
    authenticode,
    esp,
    target: str(ctx, "install-as") ?? `EFI/Linux/${basename(ukiPath)}`,
    vars: new EfiVars(str(ctx, "efivars") ?? EFIVARS),
    trialPath: str(ctx, "trial-record") ?? TRIAL_STATE,
    reseal: () => resealVolumes(ctx, { uki: authenticode, ukiKernel: pe.kernel }, false),
    log: ctx.log,
    fault: f,
  });
  ctx.print(`${r.file}: ${r.installed ? "installed" : "already in place"} on ${esp.disk} partition ${esp.partition.number}; ${bootName(r.entry)} ${r.entryCreated ? "added" : "reused"}, BootNext=${bootName(r.entry)}; fallback ${r.fallback !== undefined ? bootName(r.fallback) : "none"}`);
  return { status: "done", message: `the next boot tries ${r.file} once (${bootName(r.entry)}); the old entry stays first until finalize`, data: { ...r, esp: { dir: esp.dir, disk: esp.disk, partition: esp.partition.number, guid: esp.partition.guid } } };
};

export const remove: Runner = async (ctx) => {
  const file = str(ctx, "file");
  if (!file) throw new CvmError("USAGE", "remove needs --file EFI/Linux/NAME.efi");
  const esp = espOf(ctx);
  const r = removeUki({ esp, target: file, vars: new EfiVars(str(ctx, "efivars") ?? EFIVARS), trialPath: str(ctx, "trial-record") ?? TRIAL_STATE, log: ctx.log });
  const did = r.entries.length > 0 || r.fileRemoved || r.recordRemoved;
  return { status: did ? "done" : "nothing-to-do", message: did ? `${r.file}: removed ${r.entries.map(bootName).join(", ") || "no boot entry"}${r.fileRemoved ? " and the file" : ""}` : `${r.file}: no boot entry and no file: nothing to do`, data: { ...r } };
};

export const finalize: Runner = async (ctx) => {
  const f = faultFlag(ctx, FINALIZE_STEPS);
  const dir = str(ctx, "efivars") ?? EFIVARS;
  const vars = existsSync(dir) ? new EfiVars(dir) : undefined;
  const { devices, tpmSpec } = volumesAndTpm(ctx);
  const volumes = [];
  for (const device of devices) volumes.push({ device, header: await readLuksHeaderFile(device) });
  let tpm: Tpm | undefined;
  try {
    const r = await finalizeFlow({
      vars,
      trialPath: str(ctx, "trial-record") ?? TRIAL_STATE,
      volumes,
      tpm: async () => (tpm = new Tpm(await openTpm(tpmSpec, ctx.native))),
      log: ctx.log,
      dryRun: ctx.flags["dry-run"] === true,
      fault: f,
    });
    const would = ctx.flags["dry-run"] === true ? "would remove" : "removed";
    for (const v of r.volumes) ctx.print(`${v.device}: kept ${v.kept.map((k) => `${k.token} (${k.why})`).join(", ") || "-"}; ${would} ${v.removed.map((k) => k.token).join(", ") || "-"}`);
    const removed = r.volumes.reduce((n, v) => n + v.removed.length, 0);
    const trial = { none: "no trial pending", finalized: `this boot came from the trial entry ${bootName(r.entry ?? 0)}: it is the default now`, pending: `the trial entry ${bootName(r.entry ?? 0)} is set for the next boot`, "not-taken": `the trial entry ${bootName(r.entry ?? 0)} did not come up; the old entry stays the default` }[r.trial];
    return { status: removed > 0 || r.trial === "finalized" ? "done" : "nothing-to-do", message: `${trial}; ${removed} stale token(s) ${would}`, data: { ...r } };
  } finally {
    tpm?.transport.close();
  }
};
