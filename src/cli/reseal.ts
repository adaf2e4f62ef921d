// cvm-unlock reseal: seal each volume's secret to the PCR values the next boot will have after a UKI or shim
// update, as a second systemd-tpm2 token (flow/reseal.ts). --dry-run prints the prediction and writes nothing.
import { CvmError } from "../errors.js";
import { readLuksHeaderFile } from "../luks/header.js";
import { devicePath } from "../luks/cryptsetup.js";
import { parseEventLog } from "../measured-boot/eventlog.js";
import type { NextBoot } from "../measured-boot/predict.js";
import { resealDevice, type ResealResult } from "../flow/reseal.js";
import { Tpm } from "../tpm/commands.js";
import type { TpmtPublic } from "../tpm/marshal.js";
import type { Effective, Volume } from "../config/config.js";
import { pinnedStorageKey } from "../tpm/keys.js";
import { openTpm } from "../tpm/transport.js";
import type { Context, Runner } from "./command.js";
import { loadEffective, noCoreDumps, readFlagFile } from "./common.js";
import { EVENTLOG_PATH, nextBinaries } from "./debug-boot.js";

/** The devices a command works on (--device, else the config's volumes), with the TPM it uses. */
export function volumesAndTpm(ctx: Context): { devices: string[]; tpmSpec: string; srk?: TpmtPublic; eff?: Effective; volumes?: Map<string, Volume> } {
  const f = ctx.flags;
  let tpmSpec = typeof f["tpm-device"] === "string" ? f["tpm-device"] : undefined;
  let srk = typeof f.srk === "string" ? pinnedStorageKey(readFlagFile("--srk", f.srk), `--srk ${f.srk}`) : undefined;
  if (typeof f.device === "string") return { devices: [f.device], tpmSpec: tpmSpec ?? "/dev/tpmrm0", srk };
  const eff = loadEffective(ctx);
  const volumes = new Map(eff.config.volumes.map((v) => [devicePath(v.device), v]));
  if (volumes.size === 0) throw new CvmError("USAGE", "no --device and no volumes in the config");
  return { devices: [...volumes.keys()], tpmSpec: tpmSpec ?? eff.config.tpm.device ?? "/dev/tpmrm0", srk: srk ?? eff.srk, eff, volumes };
}

/** Reseals every volume for the next boot's binaries; shared by reseal and update. */
export async function resealVolumes(ctx: Context, next: NextBoot, dryRun: boolean): Promise<ResealResult[]> {
  const f = ctx.flags;
  const eventlog = parseEventLog(readFlagFile("--eventlog", typeof f.eventlog === "string" ? f.eventlog : EVENTLOG_PATH));
  const { devices, tpmSpec, srk, eff, volumes } = volumesAndTpm(ctx);
  const tpm = new Tpm(await openTpm(tpmSpec, ctx.native));
  const results: ResealResult[] = [];
  try {
    for (const d of devices) {
      // With the config: a volume no token of which unseals now gets its passphrase from the broker instead.
      const v = volumes?.get(d);
      const released = eff && v?.resource !== undefined ? async () => (await import("./unlock-broker.js")).fetchPassphrase(ctx, eff, v, tpm) : undefined;
      results.push(await resealDevice(d, await readLuksHeaderFile(d), tpm, { log: ctx.log, eventlog, next, srk, dryRun, released }));
    }
  } finally {
    tpm.transport.close();
  }
  for (const r of results) for (const p of r.plans) ctx.print(`${r.device} keyslot ${p.keyslot} (token ${p.token}): next boot ${p.bank}:${p.pcrs.join(",")} → policy ${p.policy}: ${p.action === "present" ? "already sealed" : dryRun ? "would add a token" : "token added"}`);
  return results;
}

export const reseal: Runner = async (ctx) => {
  await noCoreDumps(ctx);
  const next = nextBinaries(ctx.flags);
  if (!next.uki && !next.shim) throw new CvmError("USAGE", "reseal needs --uki NEW.efi (or --uki-authenticode) and/or --shim NEW.efi");
  const dryRun = ctx.flags["dry-run"] === true;
  const results = await resealVolumes(ctx, next, dryRun);
  const n = results.reduce((k, r) => k + r.written.length, 0);
  const msg = dryRun ? "dry run: the prediction above, nothing written" : n > 0 ? `resealed ${n} keyslot(s) for the next boot (the old tokens stay)` : "nothing to do: every keyslot already has a token for the next boot";
  return { status: n > 0 ? "done" : "nothing-to-do", message: msg, data: { results } };
};
