// Reseal on rescue: a volume whose systemd-tpm2 tokens are all stale (an update nobody resealed for) was
// just unlocked through the broker. So that the next boot needs no broker, while the broker's passphrase is
// still in hand: a fresh 256-bit secret is sealed to the *current* PCRs (the stale token's bank and PCR
// list, systemd 252's template, a session salted to the pinned storage key), proven to unseal to the same
// bytes and to open a new keyslot (added with the broker's passphrase; removed again if a proof fails), and
// only then written as a systemd-tpm2 token. The stale token stays for finalize to drop once the new one has
// been used. A power loss before the token import leaves at most an unused keyslot; the next rescue adds
// another. Nothing here stops a boot: a failure is the caller's warning.
import { CvmError } from "../errors.js";
import type { LuksHeader } from "../luks/header.js";
import { Secret } from "../log/secret.js";
import { addKeyslot, freeKeyslot, importToken, keyslotOpens, killKeyslot } from "../luks/tokens.js";
import type { Tpm } from "../tpm/commands.js";
import type { TpmtPublic } from "../tpm/marshal.js";
import { tokenPolicyDigest } from "../tpm/policy.js";
import { passphraseOf, resealAndProve, sealToPolicy, systemdTpm2Token, tokenSealed, withEncryption } from "./convert.js";

export interface Rescued {
  keyslot: string;
  bank: string;
  pcrs: number[];
}

/**
 * A fresh 256-bit secret as a new keyslot (added with a passphrase the broker released) and a systemd-tpm2
 * token sealed to `values` of the stale token's bank and PCRs. When the values are the current PCRs the blob
 * is also proven to unseal; for predicted values (reseal for the next boot) the new object's policy is
 * checked to be the prediction. Either way base64 of the secret must open the new keyslot before the token
 * is written, and a failed proof removes the keyslot again.
 */
export async function sealNewKeyslot(device: string, header: LuksHeader, released: Secret, tpm: Tpm, srk: TpmtPublic | undefined, target?: { bank: string; pcrs: number[]; values: Map<number, Uint8Array> }): Promise<Rescued> {
  const stale = target ?? header.tokens.filter((t) => t.type === "systemd-tpm2").map(tokenSealed).find((s) => s !== undefined);
  if (!stale) throw new CvmError("LUKS", `${device}: no systemd-tpm2 token to take the PCR list from`);
  const { bank, pcrs } = stale;
  const current = target === undefined;
  const policy = tokenPolicyDigest(bank, target?.values ?? (await tpm.pcrRead(bank, pcrs)), false);
  const slot = freeKeyslot(header, device);
  const secret = Secret.adopt(crypto.getRandomValues(new Uint8Array(32)));
  const pass = passphraseOf(secret);
  try {
    // The session (salted to the pinned key, checked first) is up before anything is written.
    const token = await withEncryption(tpm, srk, async (c) => {
      await addKeyslot(device, slot, released, pass);
      try {
        if (current) return await resealAndProve(tpm, device, { id: "(new)", slot, bank, pcrs, policy }, secret, c);
        const blob = await sealToPolicy(tpm, c, policy, secret);
        if (!(await keyslotOpens(device, slot, pass))) throw new CvmError("LUKS", `${device}: the new keyslot ${slot} does not open with the sealed secret`);
        return systemdTpm2Token(slot, blob, pcrs, bank, policy);
      } catch (e) {
        await killKeyslot(device, slot).catch(() => {}); // not proven: the keyslot goes again, nothing else was written
        throw e;
      }
    });
    await importToken(device, token);
    return { keyslot: slot, bank, pcrs };
  } finally {
    pass.wipe();
    secret.wipe();
  }
}

/** Reseal on rescue: sealed to the current PCRs, proven to unseal. */
export const rescueReseal = (device: string, header: LuksHeader, released: Secret, tpm: Tpm, srk: TpmtPublic | undefined): Promise<Rescued> => sealNewKeyslot(device, header, released, tpm, srk);
