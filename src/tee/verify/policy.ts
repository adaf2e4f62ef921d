// Policy (validation), kept apart from verification: given evidence that verified, is it the guest we
// expect? Expected launch measurement / MRTD, a minimum TCB, debug allowed or not, VMPL. The dev broker
// applies it; the agent never does (it cannot judge itself).
import { hex } from "../layout.js";
import { POLICY_BITS, type SnpReport, type Tcb } from "../snp/layout.js";
import { decodeTdAttributes, type Quote } from "../tdx/layout.js";

export interface TeePolicy {
  snp?: { measurements?: string[]; min_tcb?: Partial<Tcb>; allow_debug?: boolean };
  /** vTPM evidence (az-snp-vtpm, az-tdx-vtpm): index "0".."23" → the accepted SHA-256 PCR values (hex). */
  vtpm?: { pcrs?: Partial<Record<string, string[]>> };
  /** rtmrs: index "0".."3" → the accepted values (hex). */
  tdx?: { mr_td?: string[]; rtmrs?: Partial<Record<"0" | "1" | "2" | "3", string[]>>; allow_debug?: boolean };
}

/**
 * What a release needs the policy to pin, outside dev mode: the registers that cover what the host could
 * otherwise swap — the kernel, the initramfs (the agent, its config and CA) and the command line.
 *   SNP: the launch digest, which covers them only with measured direct boot (kernel hashes in OVMF);
 *   TDX: MRTD (the firmware) and RTMR 1 and 2 (kernel; command line and initrd).
 *   vTPM evidence (a paravisor's): PCR 4 (the UKI: kernel, initrd, command line), PCR 7 (Secure Boot) and
 *     PCR 11, whose value before the agent's "unlocked" event is the only thing that tells this boot's
 *     initramfs from root on the same booted system, which could otherwise quote PCR 4 and 7 unchanged.
 * A broker that releases on less gives the passphrase to any initramfs the host boots on that firmware.
 */
export const VTPM_REQUIRED_PCRS = ["4", "7", "11"] as const;

export function requiredPolicyGaps(tee: string, p: TeePolicy): string[] {
  const none = (v: unknown[] | undefined) => !v || v.length === 0;
  if (tee === "snp") return none(p.snp?.measurements) ? ["snp.measurements (the launch digest with measured direct boot)"] : [];
  if (tee === "tdx") {
    const gaps = none(p.tdx?.mr_td) ? ["tdx.mr_td"] : [];
    for (const i of ["1", "2"] as const) if (none(p.tdx?.rtmrs?.[i])) gaps.push(`tdx.rtmrs.${i}`);
    return gaps;
  }
  if (tee === "az-snp-vtpm" || tee === "az-tdx-vtpm") return VTPM_REQUIRED_PCRS.filter((i) => none(p.vtpm?.pcrs?.[i])).map((i) => `vtpm.pcrs.${i}`);
  return [];
}

/** The quoted PCRs (24 SHA-256 values, verified against the quote) against the policy's accepted values. */
export function validateVtpm(pcrs: Uint8Array[], p: TeePolicy["vtpm"] = {}): string[] {
  const out: string[] = [];
  for (const [i, want] of Object.entries(p.pcrs ?? {})) {
    const have = pcrs[Number(i)];
    if (!want) continue;
    if (!have) out.push(`PCR ${i} is not in the quote`);
    else if (!want.map((m) => m.toLowerCase()).includes(hex(have))) out.push(`PCR ${i} ${hex(have)} is not an expected one`);
  }
  return out;
}

/** opts.vmpl false: a paravisor's report (Azure's HCL report), of which no VMPL is required. */
export function validateSnp(r: SnpReport, tcb: Tcb, p: TeePolicy["snp"] = {}, opts: { vmpl?: boolean } = {}): string[] {
  const out: string[] = [];
  if (r.version < 3) out.push(`report version ${r.version} (Trustee accepts 3 to 5)`);
  if (opts.vmpl !== false && r.fields.vmpl !== 0) out.push(`VMPL ${r.fields.vmpl} (must be 0)`);
  const measurement = hex(r.fields.measurement as Uint8Array);
  if (p.measurements && !p.measurements.map((m) => m.toLowerCase()).includes(measurement)) out.push(`measurement ${measurement} is not an expected one`);
  const debug = (((r.fields.policy as bigint) >> BigInt(POLICY_BITS.debug)) & 1n) === 1n;
  if (debug && !p.allow_debug) out.push("guest policy allows debugging");
  for (const [k, min] of Object.entries(p.min_tcb ?? {})) {
    const have = tcb[k as keyof Tcb];
    if (min !== undefined && (have === undefined || have < min)) out.push(`TCB ${k} ${have ?? "absent"} below the minimum ${min}`);
  }
  return out;
}

export function validateTdx(q: Quote, p: TeePolicy["tdx"] = {}): string[] {
  const out: string[] = [];
  const mrTd = hex(q.body.mr_td as Uint8Array);
  if (p.mr_td && !p.mr_td.map((m) => m.toLowerCase()).includes(mrTd)) out.push(`MRTD ${mrTd} is not an expected one`);
  for (const [i, want] of Object.entries(p.rtmrs ?? {})) {
    const have = hex(q.body[`rtmr${i}`] as Uint8Array);
    if (want && !want.map((m) => m.toLowerCase()).includes(have)) out.push(`RTMR${i} ${have} is not an expected one`);
  }
  if (decodeTdAttributes(q.body.td_attributes as Uint8Array).debug && !p.allow_debug) out.push("TD is a debug TD");
  return out;
}
