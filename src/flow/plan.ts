// Which volumes need the broker. A volume is skipped ("nothing to do") only when one of its systemd-tpm2
// tokens will unseal: its tpm2-policy-hash equals the policy digest of the *current* PCR values. A token
// whose PCRs changed (an update) is stale: the volume goes to the broker, and the log says so.
import type { Volume } from "../config/config.js";
import { hex } from "../bytes.js";
import { CvmError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import { readLuksHeaderFile, type LuksHeader, type Token } from "../luks/header.js";
import { isPcrList, lockoutCounts, tokenBank, type Lockout, type Tpm } from "../tpm/commands.js";
import { tokenPolicyDigest } from "../tpm/policy.js";

export interface TokenCheck {
  token: string;
  keyslot: string;
  state: "will-unseal" | "stale" | "pin-required" | "unsupported" | "no-tpm" | "lockout";
  detail: string;
}

export interface VolumePlan {
  volume: Volume;
  path: string;
  tokens: TokenCheck[];
  /** Set when the volume needs nothing from the agent. */
  skip?: string;
}

/** Checks one systemd-tpm2 token against the TPM's current PCRs. */
export async function checkTpm2Token(t: Token, tpm: Tpm | undefined): Promise<TokenCheck> {
  const j = t.json;
  const base = { token: t.id, keyslot: t.keyslots[0] ?? "" };
  const pcrs = j["tpm2-pcrs"], bank = tokenBank(j["tpm2-pcr-bank"], "sha256");
  const want = j["tpm2-policy-hash"];
  if (!isPcrList(pcrs) || typeof want !== "string" || !/^[0-9a-f]{64}$/i.test(want)) {
    return { ...base, state: "unsupported", detail: "token lacks tpm2-pcrs or a sha256 tpm2-policy-hash" };
  }
  if (bank === undefined) return { ...base, state: "unsupported", detail: `unknown tpm2-pcr-bank ${JSON.stringify(j["tpm2-pcr-bank"])}` };
  if (j.tpm2_pubkey_pcrs !== undefined && Array.isArray(j.tpm2_pubkey_pcrs) && j.tpm2_pubkey_pcrs.length > 0) return { ...base, state: "unsupported", detail: "signed PCR policy (tpm2_pubkey) is not checked" };
  if (!tpm) return { ...base, state: "no-tpm", detail: "no TPM to check against" };
  const values = pcrs.length > 0 ? await tpm.pcrRead(bank, pcrs) : new Map<number, Uint8Array>();
  const pin = j["tpm2-pin"] === true;
  const got = hex(tokenPolicyDigest(bank, values, pin));
  if (got !== want.toLowerCase()) return { ...base, state: "stale", detail: `policy for the current PCRs ${bank}:${(pcrs).join(",")} is ${got.slice(0, 16)}…, the token was sealed to ${want.slice(0, 16)}…` };
  if (pin) return { ...base, state: "pin-required", detail: "policy matches, but the token needs a PIN (unattended boot cannot enter it)" };
  return { ...base, state: "will-unseal", detail: `policy matches the current PCRs ${bank}:${(pcrs).join(",")}` };
}

/** Turns "will-unseal" into "lockout" when the TPM's dictionary-attack state (Tpm.lockout) says it is locked out. */
export function markLockout(checks: { state: string; detail: string }[], lock: Lockout | undefined): void {
  if (!lock?.inLockout) return;
  const why = `policy matches, but the TPM is in dictionary-attack lockout (${lockoutCounts(lock)}): nothing DA-protected unseals now`;
  for (const c of checks) if (c.state === "will-unseal") Object.assign(c, { state: "lockout", detail: why });
}

/** A volume's LUKS header; a bad one is a LUKS error naming the volume. */
export async function readVolumeHeader(volume: Volume, path: string): Promise<LuksHeader> {
  try {
    return await readLuksHeaderFile(path);
  } catch (e) {
    if (e instanceof CvmError) throw new CvmError("LUKS", `volume ${volume.name}: ${e.message}`, { volume: volume.name });
    throw e;
  }
}

/** header: the volume's header when the caller has just read it (else it is read here). */
export async function planVolumes(volumes: { volume: Volume; path: string; header?: LuksHeader }[], opts: { tpm: () => Promise<Tpm | undefined>; log: Logger }): Promise<VolumePlan[]> {
  let tpm: Tpm | undefined | null = null;
  let lock: Lockout | undefined | null = null;
  const plans: VolumePlan[] = [];
  for (const { volume, path, header } of volumes) {
    const tokens = (header ?? (await readVolumeHeader(volume, path))).tokens.filter((t) => t.type === "systemd-tpm2");
    const checks: TokenCheck[] = [];
    for (const t of tokens) {
      if (tpm === null) tpm = await opts.tpm();
      checks.push(await checkTpm2Token(t, tpm));
    }
    // A policy that matches still unseals nothing while the TPM is in dictionary-attack lockout: then the volume
    // needs the broker like a stale one (asked once, and only when a token would otherwise unseal).
    if (tpm && checks.some((c) => c.state === "will-unseal")) {
      if (lock === null) lock = await tpm.lockout().catch(() => undefined);
      markLockout(checks, lock);
    }
    const good = checks.find((c) => c.state === "will-unseal");
    const plan: VolumePlan = { volume, path, tokens: checks };
    if (good) plan.skip = `systemd-tpm2 token ${good.token} will unseal (${good.detail})`;
    for (const c of checks.filter((x) => x.state !== "will-unseal")) {
      const what = c.state === "stale" ? "stale (PCRs changed since it was sealed)" : c.state === "lockout" ? "blocked by the TPM's lockout" : c.state;
      opts.log.warn(`volume ${volume.name}: systemd-tpm2 token ${c.token} is ${what}: ${c.detail}`, { volume: volume.name });
    }
    plans.push(plan);
  }
  return plans;
}
