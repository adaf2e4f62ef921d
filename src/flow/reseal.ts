// reseal: after an update changes PCR 4 (a new UKI or shim), the same secret is sealed again to the PCR
// values the *next* boot will have (predicted from this boot's event log, measured-boot/predict.ts) and added
// as a second systemd-tpm2 token for the same keyslot. No new keyslot, no PBKDF cost: systemd-cryptsetup
// tries every token, so the old token keeps this boot (and a fallback to the old UKI) working, and the new
// one the next. The new object's policy digest is checked against the prediction before anything is
// written; a run interrupted before the token import left nothing, after it the rerun finds the token.
import { equalBytes, hex } from "../bytes.js";
import { CvmError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import type { Secret } from "../log/secret.js";
import { readLuksHeaderFile, type LuksHeader, type Token } from "../luks/header.js";
import { importToken } from "../luks/tokens.js";
import type { EventLog } from "../measured-boot/eventlog.js";
import { predictPcrs, updateReplacements, type NextBoot } from "../measured-boot/predict.js";
import type { Tpm } from "../tpm/commands.js";
import type { TpmtPublic } from "../tpm/marshal.js";
import { tokenPolicyDigest } from "../tpm/policy.js";
import { sealToPolicy, systemdTpm2Token, tokenSealed, unsealSystemdBlob, withEncryption } from "./convert.js";
import { sealNewKeyslot } from "./rescue.js";

export interface ResealPlan {
  token: string;
  keyslot: string;
  bank: string;
  pcrs: number[];
  /** The PCR values the next boot will have, for the token's PCRs (predicted 4/7, the rest as now). */
  next: Record<number, string>;
  policy: string;
  /** "add": a new token will be written; "present": a token for these values exists already. */
  action: "add" | "present";
}

export interface ResealResult {
  device: string;
  plans: ResealPlan[];
  written: string[];
}

/** The next boot's values of the token's PCRs: 4 and 7 predicted, every other PCR as it is now. */
async function nextValues(tpm: Tpm, log: EventLog, bank: string, pcrs: number[], next: NextBoot): Promise<Map<number, Uint8Array>> {
  const now = await tpm.pcrRead(bank, [...new Set([...pcrs, 4, 7])]);
  const live = { [bank]: { 4: hex(now.get(4)!), 7: hex(now.get(7)!) } };
  const { replace, known } = updateReplacements(log, next);
  const predicted = predictPcrs(log, { live, replace, known, pcrs: [4, 7] })[bank]!;
  return new Map(pcrs.map((p) => [p, p === 4 || p === 7 ? Uint8Array.from(Buffer.from(predicted[p]!, "hex")) : now.get(p)!]));
}

/** opts.released: when no token of a keyslot unseals now (the update came before a reseal), a passphrase
 *  from the broker, which authorizes a new keyslot sealed to the prediction instead (flow/rescue.ts). */
export async function resealDevice(device: string, header: LuksHeader, tpm: Tpm, opts: { log: Logger; eventlog: EventLog; next: NextBoot; srk: TpmtPublic | undefined; dryRun?: boolean; released?: () => Promise<Secret> }): Promise<ResealResult> {
  const tokens = header.tokens.filter((t) => t.type === "systemd-tpm2" && t.keyslots.length === 1);
  if (tokens.length === 0) throw new CvmError("LUKS", `${device}: no systemd-tpm2 token to reseal`, { reason: "no-token" });
  const result: ResealResult = { device, plans: [], written: [] };
  const sealedOf = new Map(tokens.map((t) => [t, tokenSealed(t)]));
  const predicted = new Map<string, Map<number, Uint8Array>>(); // per bank and PCR list: one read, one prediction
  const done = new Set<string>(); // one new token per keyslot and policy
  for (const t of tokens) {
    const sealed = sealedOf.get(t);
    if (!sealed || t.json["tpm2-pin"] === true) continue;
    const which = `${sealed.bank}:${sealed.pcrs.join(",")}`;
    if (!predicted.has(which)) predicted.set(which, await nextValues(tpm, opts.eventlog, sealed.bank, sealed.pcrs, opts.next));
    const values = predicted.get(which)!;
    const policy = tokenPolicyDigest(sealed.bank, values, false);
    const slot = t.keyslots[0]!;
    const key = `${slot}:${hex(policy)}`;
    if (done.has(key)) continue;
    done.add(key);
    const present = tokens.some((o) => o.keyslots[0] === slot && sealedOf.get(o) !== undefined && equalBytes(sealedOf.get(o)!.policy, policy));
    result.plans.push({ token: t.id, keyslot: slot, bank: sealed.bank, pcrs: sealed.pcrs, next: Object.fromEntries([...values].map(([p, v]) => [p, hex(v)])), policy: hex(policy), action: present ? "present" : "add" });
  }
  if (result.plans.length === 0) throw new CvmError("LUKS", `${device}: no systemd-tpm2 token this can reseal (a PIN, or a malformed token)`, { reason: "no-token" });
  const todo = result.plans.filter((p) => p.action === "add");
  if (opts.dryRun || todo.length === 0) return result;

  const viaBroker: ResealPlan[] = [];
  await withEncryption(tpm, opts.srk, async (c) => {
    for (const plan of todo) {
      // The secret, from a current token of this keyslot that unseals now (salted session: encrypted on the wire).
      let secret: Secret;
      try {
        secret = await unsealAny(tpm, tokens.filter((t) => t.keyslots[0] === plan.keyslot), c, opts.log);
      } catch (e) {
        if (!opts.released || !(e instanceof CvmError) || e.details.reason !== "nothing-unseals") throw e;
        viaBroker.push(plan);
        continue;
      }
      try {
        const policy = Uint8Array.from(Buffer.from(plan.policy, "hex"));
        const blob = await sealToPolicy(tpm, c, policy, secret);
        await importToken(device, systemdTpm2Token(plan.keyslot, blob, plan.pcrs, plan.bank, policy));
        result.written.push(plan.keyslot);
        opts.log.info(`resealed keyslot ${plan.keyslot} to the next boot's PCRs ${plan.bank}:${plan.pcrs.join(",")} (a second systemd-tpm2 token; the old one stays)`);
      } finally {
        secret.wipe();
      }
    }
  });
  if (viaBroker.length > 0) {
    const released = await opts.released!();
    try {
      for (const plan of viaBroker) {
        const values = new Map(Object.entries(plan.next).map(([p, v]) => [Number(p), Uint8Array.from(Buffer.from(v, "hex"))]));
        const r = await sealNewKeyslot(device, await readLuksHeaderFile(device), released, tpm, opts.srk, { bank: plan.bank, pcrs: plan.pcrs, values });
        result.written.push(r.keyslot);
        opts.log.info(`no token of keyslot ${plan.keyslot} unseals now: the broker's passphrase added keyslot ${r.keyslot} with a systemd-tpm2 token for the next boot's PCRs ${plan.bank}:${plan.pcrs.join(",")}`);
      }
    } finally {
      released.wipe();
    }
  }
  return result;
}

async function unsealAny(tpm: Tpm, tokens: Token[], c: Parameters<typeof unsealSystemdBlob>[5], log: Logger): Promise<Secret> {
  const why: string[] = [];
  for (const t of tokens) {
    const s = tokenSealed(t);
    if (!s) continue;
    try {
      return await unsealSystemdBlob(tpm, s.blob, s.bank, s.pcrs, s.policy, c);
    } catch (e) {
      why.push(`token ${t.id}: ${(e as Error).message}`);
    }
  }
  log.warn("no systemd-tpm2 token of the keyslot unseals with the current PCRs", { tokens: tokens.length });
  throw new CvmError("TPM", `no systemd-tpm2 token unseals now, so there is no secret to reseal (${why.join("; ").slice(0, 300)}); the broker path is the way in`, { reason: "nothing-unseals" });
}
