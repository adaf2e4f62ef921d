// PCR 4 / PCR 7 for the next boot after an update: the current boot's log, checked against the live PCRs,
// with the digests of the boot applications that change replaced and every other event kept
// (shared/reference/pcr-prediction.md §2.3). A log that does not replay to the TPM predicts nothing.
import { guidBytes, hex } from "../bytes.js";
import { CvmError } from "../errors.js";
import { EV, replay, type EventLog, type LogEvent } from "./eventlog.js";

/** bank → digest hex, for one binary (its Authenticode hashes). */
export type Digests = Record<string, string>;

export interface Replacement {
  /** The binary now booted (its Authenticode digests as the log holds them). */
  old: Digests;
  /** The binary the next boot will run. */
  new: Digests;
}

/** The live PCR values: bank → pcr → hex. */
export type PcrValues = Record<string, Record<number, string>>;

/** Throws unless every given live PCR equals the log's replay (the log is complete and untampered). */
export function checkLogMatchesTpm(log: EventLog, live: PcrValues): void {
  const r = replay(log);
  const bad: string[] = [];
  for (const [bank, pcrs] of Object.entries(live)) {
    for (const [pcr, value] of Object.entries(pcrs)) {
      const got = r.get(bank)?.get(Number(pcr));
      if (!got || hex(got) !== value.toLowerCase()) bad.push(`${bank}:${pcr}`);
    }
  }
  if (bad.length > 0) throw new CvmError("TPM", `the event log does not match the TPM (${bad.join(", ")} differ from its replay): nothing is predicted from it`, { reason: "eventlog-mismatch" });
}

/**
 * Predicts `pcrs` (default 4 and 7) for the banks of `live` after the replacements. Every PCR 4 boot
 * application event must be one of the known binaries (`known`: digests of what is booted and stays, e.g. the
 * shim; plus every replacement's old digests), or nothing is predicted: an unknown extra boot attempt would
 * make a guess.
 */
export function predictPcrs(log: EventLog, opts: { live: PcrValues; replace: Replacement[]; known?: Digests[]; pcrs?: number[] }): PcrValues {
  checkLogMatchesTpm(log, opts.live);
  const banks = Object.keys(opts.live);
  const same = (e: Map<string, Uint8Array>, d: Digests) => banks.every((bank) => d[bank] !== undefined && hex(e.get(bank) ?? new Uint8Array(0)) === d[bank]!.toLowerCase());
  let replaced = 0;
  const events = log.events.map((e) => {
    if (e.pcr !== 4 || e.type !== EV.EFI_BOOT_SERVICES_APPLICATION) return e;
    const r = opts.replace.find((x) => same(e.digests, x.old));
    if (r) {
      replaced++;
      return { ...e, digests: new Map(banks.map((bank) => [bank, Uint8Array.from(Buffer.from(r.new[bank] ?? "", "hex"))])) };
    }
    if ((opts.known ?? []).some((k) => same(e.digests, k))) return e;
    throw new CvmError("TPM", `PCR 4 event ${e.index} loads a binary that is neither known nor replaced (sha256 ${hex(e.digests.get("sha256") ?? new Uint8Array(0)).slice(0, 16)}…): nothing is predicted`, { reason: "unknown-boot-application" });
  });
  if (replaced === 0) throw new CvmError("TPM", "no PCR 4 boot application event is the binary being replaced: nothing is predicted", { reason: "nothing-replaced" });
  for (const r of opts.replace) for (const bank of banks) if (!/^[0-9a-f]+$/i.test(r.new[bank] ?? "")) throw new CvmError("USAGE", `the new binary has no ${bank} digest`);
  const out = replay({ ...log, events, banks: log.banks.filter((b) => banks.includes(b.name)) });
  const want = opts.pcrs ?? [4, 7];
  return Object.fromEntries(banks.map((bank) => [bank, Object.fromEntries(want.map((p) => [p, hex(out.get(bank)!.get(p)!)]))]));
}

/** systemd-stub's vendor media device path for the kernel it loads from the UKI (Secure Boot off). */
const STUB_KERNEL_GUID = guidBytes("55c5d1f8-04cd-46b5-8a20-e56cbb3052d0");
const isStubKernel = (e: LogEvent) => {
  for (let i = 0; i + 16 <= e.data.length; i++) if (STUB_KERNEL_GUID.every((b, k) => e.data[i + k] === b)) return true;
  return false;
};
const digestsOfEvent = (e: LogEvent): Digests => Object.fromEntries([...e.digests].map(([b, d]) => [b, hex(d)]));

/** What the next boot runs: the new UKI's and shim's Authenticode digests, and the kernel inside the new UKI
 *  (its .linux section), which systemd-stub has the firmware measure as its own event when Secure Boot is off. */
export interface NextBoot {
  uki?: Digests;
  ukiKernel?: Digests;
  shim?: Digests;
}

/**
 * Which PCR 4 events a UKI / shim update replaces, from the log's boot applications: [shim,] UKI[, the UKI's
 * kernel] — the kernel systemd-stub loads is recognised by its vendor media device path, the last other
 * application is the UKI, the one before it the shim. A log with that kernel event needs the new UKI's
 * kernel digests (the file, not only its hashes).
 */
export function updateReplacements(log: EventLog, next: NextBoot): { replace: Replacement[]; known: Digests[] } {
  const all = log.events.filter((e) => e.pcr === 4 && e.type === EV.EFI_BOOT_SERVICES_APPLICATION);
  const kernels = all.filter(isStubKernel);
  const apps = all.filter((e) => !isStubKernel(e));
  const uki = apps[apps.length - 1], shim = apps.length > 1 ? apps[apps.length - 2] : undefined;
  const replace: Replacement[] = [];
  if (next.uki && uki) replace.push({ old: digestsOfEvent(uki), new: next.uki });
  if (next.shim && shim) replace.push({ old: digestsOfEvent(shim), new: next.shim });
  if (next.uki && kernels.length > 0) {
    if (!next.ukiKernel) throw new CvmError("USAGE", "this boot measured the UKI's kernel as its own PCR 4 event (systemd-stub with Secure Boot off): the prediction needs the new UKI's kernel, so give the UKI file (--uki), not only its hashes", { reason: "stub-kernel-event" });
    for (const k of kernels) replace.push({ old: digestsOfEvent(k), new: next.ukiKernel });
  }
  const known = apps.filter((e) => e !== uki && e !== shim).map(digestsOfEvent).concat(shim && !next.shim ? [digestsOfEvent(shim)] : []);
  if (!next.uki) known.push(...kernels.map(digestsOfEvent));
  return { replace, known };
}
