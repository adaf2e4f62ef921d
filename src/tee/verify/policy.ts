// Policy (validation), kept apart from verification: given evidence that verified, is it the guest we
// expect? Expected launch measurement / MRTD, a minimum TCB, debug allowed or not, VMPL. The dev broker
// applies it; the agent never does (it cannot judge itself).
import { hex } from "../layout.js";
import { POLICY_BITS, type SnpReport, type Tcb } from "../snp/layout.js";
import { decodeTdAttributes, type Quote } from "../tdx/layout.js";

export interface TeePolicy {
  snp?: { measurements?: string[]; min_tcb?: Partial<Tcb>; allow_debug?: boolean };
  /** rtmrs: index "0".."3" → the accepted values (hex). */
  tdx?: { mr_td?: string[]; rtmrs?: Partial<Record<"0" | "1" | "2" | "3", string[]>>; allow_debug?: boolean };
}

/**
 * What a release needs the policy to pin, outside dev mode: the registers that cover what the host could
 * otherwise swap — the kernel, the initramfs (the agent, its config and CA) and the command line.
 *   SNP: the launch digest, which covers them only with measured direct boot (kernel hashes in OVMF);
 *   TDX: MRTD (the firmware) and RTMR 1 and 2 (kernel; command line and initrd).
 * A broker that releases on less gives the passphrase to any initramfs the host boots on that firmware.
 */
export function requiredPolicyGaps(tee: string, p: TeePolicy): string[] {
  const none = (v: unknown[] | undefined) => !v || v.length === 0;
  if (tee === "snp") return none(p.snp?.measurements) ? ["snp.measurements (the launch digest with measured direct boot)"] : [];
  if (tee === "tdx") {
    const gaps = none(p.tdx?.mr_td) ? ["tdx.mr_td"] : [];
    for (const i of ["1", "2"] as const) if (none(p.tdx?.rtmrs?.[i])) gaps.push(`tdx.rtmrs.${i}`);
    return gaps;
  }
  return [];
}

export function validateSnp(r: SnpReport, tcb: Tcb, p: TeePolicy["snp"] = {}): string[] {
  const out: string[] = [];
  if (r.version < 3) out.push(`report version ${r.version} (Trustee accepts 3 to 5)`);
  if (r.fields.vmpl !== 0) out.push(`VMPL ${r.fields.vmpl} (must be 0)`);
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
