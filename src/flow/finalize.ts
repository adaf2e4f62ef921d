// finalize: run by the booted system once the root is unlocked.
//   1. A trial boot (BootCurrent is the entry update set as BootNext) that got this far unlocked: its entry
//      goes to the front of BootOrder, so it is the default from now on.
//   2. systemd-tpm2 tokens whose PCR policy can no longer match are removed: a token is kept when it matches
//      this boot's PCRs (the one this boot unlocked with) or belongs to a trial not yet taken, and nothing is
//      removed from a keyslot none of whose tokens matches this boot (a broker boot: the last working way
//      in for the next boot might be among them).
//   3. The trial record is removed last. Every step is safe to repeat after a power loss.
import { hex } from "../bytes.js";
import { bootName, type EfiVars } from "../efi/vars.js";
import type { LuksHeader } from "../luks/header.js";
import { removeToken } from "../luks/tokens.js";
import type { Logger } from "../log/logger.js";
import type { Tpm } from "../tpm/commands.js";
import { tokenSealed } from "./convert.js";
import { checkTpm2Token } from "./plan.js";
import type { Fault } from "./fault.js";
import { readTrial, removeTrial, type TrialRecord } from "./update.js";

export const FINALIZE_STEPS = ["order-set", "token-removed", "record-removed"] as const;

/** finalized: this boot is the trial and is now the default; pending: BootNext still points at the trial
 *  (not rebooted yet); not-taken: this boot came from another entry (the trial failed, or was never armed). */
export type TrialOutcome = "none" | "finalized" | "pending" | "not-taken";

export interface VolumeCleanup {
  device: string;
  kept: { token: string; keyslot: string; why: "this-boot" | "trial" | "no-match-this-boot" }[];
  removed: { token: string; keyslot: string }[];
  /** Keyslots with systemd-tpm2 tokens of which none matches this boot (unlocked another way). */
  stale: string[];
}

export interface FinalizeResult {
  trial: TrialOutcome;
  entry?: number;
  bootOrder?: number[];
  volumes: VolumeCleanup[];
}

export async function finalize(opts: {
  vars: EfiVars | undefined;
  trialPath: string;
  volumes: { device: string; header: LuksHeader }[];
  tpm: () => Promise<Tpm>;
  log: Logger;
  dryRun: boolean;
  fault: Fault;
}): Promise<FinalizeResult> {
  const { vars, log, fault } = opts;
  const record = readTrial(opts.trialPath);
  const result: FinalizeResult = { trial: "none", volumes: [] };
  if (record) {
    result.entry = record.entry;
    result.trial = trialOutcome(vars, record);
    if (result.trial === "finalized" && vars) {
      const order = vars.bootOrder();
      const next = [record.entry, ...order.filter((n) => n !== record.entry)];
      result.bootOrder = next;
      if (order.join(",") !== next.join(",") && !opts.dryRun) {
        vars.setBootOrder(next);
        log.info(`this boot came from the trial entry ${bootName(record.entry)} and unlocked: it is first in BootOrder now`);
      }
      fault("order-set");
    } else if (result.trial === "not-taken") {
      log.warn(`the trial entry ${bootName(record.entry)} (${record.file}) is not what this boot came from and BootNext no longer names it: the trial did not come up (or was never armed); its tokens are kept, rerun update to try again`);
    }
  }

  const pending = record && result.trial !== "finalized" ? new Set(record.tokens) : new Set<string>();
  let tpm: Tpm | undefined;
  for (const { device, header } of opts.volumes) {
    const v: VolumeCleanup = { device, kept: [], removed: [], stale: [] };
    result.volumes.push(v);
    const tokens = header.tokens.filter((t) => t.type === "systemd-tpm2" && t.keyslots.length === 1).flatMap((t) => {
      const s = tokenSealed(t);
      return s ? [{ t, s }] : [];
    });
    if (tokens.length === 0) continue;
    tpm ??= await opts.tpm();
    // The same check as the boot's plan: the token's policy over the current PCRs (with or without a PIN).
    const matches = new Map<string, boolean>();
    for (const { t } of tokens) matches.set(t.id, ["will-unseal", "pin-required"].includes((await checkTpm2Token(t, tpm)).state));
    for (const slot of [...new Set(tokens.map(({ t }) => t.keyslots[0]!))]) {
      const mine = tokens.filter(({ t }) => t.keyslots[0] === slot);
      const anyMatch = mine.some(({ t }) => matches.get(t.id));
      if (!anyMatch) v.stale.push(slot);
      for (const { t, s } of mine) {
        const why = matches.get(t.id) ? "this-boot" : pending.has(`${device}|${slot}|${hex(s.policy)}`) ? "trial" : !anyMatch ? "no-match-this-boot" : undefined;
        if (why) {
          v.kept.push({ token: t.id, keyslot: slot, why });
          continue;
        }
        v.removed.push({ token: t.id, keyslot: slot });
        if (opts.dryRun) continue;
        await removeToken(device, t.id);
        log.info(`${device}: removed systemd-tpm2 token ${t.id} of keyslot ${slot}: its PCR policy no longer matches (keyslot ${slot} keeps the token this boot unlocked with)`);
        fault("token-removed");
      }
    }
    if (v.stale.length > 0) log.warn(`${device}: no systemd-tpm2 token of keyslot(s) ${v.stale.join(", ")} matches this boot's PCRs; nothing removed there (the next boot may need the broker)`);
  }

  if (record && result.trial === "finalized" && !opts.dryRun) {
    removeTrial(opts.trialPath);
    fault("record-removed");
  }
  return result;
}

function trialOutcome(vars: EfiVars | undefined, r: TrialRecord): TrialOutcome {
  if (!vars?.available()) return "not-taken";
  if (vars.bootCurrent() === r.entry) return "finalized";
  return vars.bootNext() === r.entry ? "pending" : "not-taken";
}
