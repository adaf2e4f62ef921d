// The policy digests of systemd-tpm2 tokens, computed in software: PolicyPCR over the token's PCRs
// (SHA-256 session hash), and PolicyAuthValue after it for PIN tokens. A token "will unseal" exactly when
// this digest, over the current PCR values, equals its tpm2-policy-hash.
import { sha256 } from "../hash.js";
import { concat as cat, u32be } from "../bytes.js";
import { encode, pcrMask, TYPES } from "./marshal.js";
import { BANKS, CC } from "./commands.js";


/** policyPCR = SHA-256(0³² ‖ CC_PolicyPCR ‖ TPML_PCR_SELECTION ‖ SHA-256(PCR values, ascending)). */
export function policyPcrDigest(bank: string, values: Map<number, Uint8Array>, previous = new Uint8Array(32)): Uint8Array {
  const pcrs: number[] = [];
  for (const p of values.keys()) pcrs.push(p); // not [...keys]: a spread of a Map iterator costs ~0.5 ms on first use
  pcrs.sort((a, b) => a - b);
  const selection = encode(TYPES.TPML_PCR_SELECTION, [{ hash: BANKS[bank]!, pcrSelect: pcrMask(pcrs) }]);
  const pcrDigest = sha256(cat(...pcrs.map((p) => values.get(p)!)));
  return sha256(cat(previous, u32be(CC.PolicyPCR), selection, pcrDigest));
}

export function policyAuthValueDigest(previous: Uint8Array): Uint8Array {
  return sha256(cat(previous, u32be(CC.PolicyAuthValue)));
}

/** The digest a systemd-tpm2 token's policy has for these PCR values (no PCRs: 32 zero bytes). */
export function tokenPolicyDigest(bank: string, values: Map<number, Uint8Array>, pin: boolean): Uint8Array {
  let d = values.size > 0 ? policyPcrDigest(bank, values) : new Uint8Array(32);
  if (pin) d = policyAuthValueDigest(d);
  return d;
}
