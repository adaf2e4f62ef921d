// update: what the package manager's hook runs when a new UKI arrives. In this order, each step safe to
// repeat, so that a power loss anywhere leaves a VM that boots its old UKI with its old token, and a rerun
// finishes the job:
//   1. reseal: the volumes' secrets sealed to the PCRs the new UKI will give (a second token; flow/reseal.ts);
//   2. the UKI into the ESP: a temporary name, fsync, rename, fsync of the directory;
//   3. a Boot#### entry for it (reused when one already starts that file on that partition);
//   4. the trial record (which entry, which tokens belong to it), for finalize on the next boot;
//   5. BootNext = that entry: the firmware tries it once, and BootOrder still starts with the old entry.
// A trial boot that does not unlock powers off; the next boot comes from BootOrder's first entry.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { equalBytes } from "../bytes.js";
import { CvmError } from "../errors.js";
import { syncDir, syncFd } from "../fsync.js";
import type { Esp } from "../efi/esp.js";
import { encodeDevicePath, filePathNode, hardDriveNode, LOAD_OPTION_ACTIVE, type LoadOption } from "../efi/loadoption.js";
import { bootName, type EfiVars } from "../efi/vars.js";
import type { Logger } from "../log/logger.js";
import type { Digests } from "../measured-boot/predict.js";
import type { Fault } from "./fault.js";
import type { ResealResult } from "./reseal.js";

export const UPDATE_STEPS = ["resealed", "installed", "entry-written", "recorded", "boot-next-set"] as const;
export const TRIAL_STATE = "/var/lib/cvm-unlock/trial.json";

/** What finalize needs to know about a pending trial boot. */
export interface TrialRecord {
  version: 1;
  entry: number;
  /** ESP-relative, as in the boot entry. */
  file: string;
  authenticode: Digests;
  /** The tokens sealed for the new UKI: "device|keyslot|policy". */
  tokens: string[];
  /** BootOrder's first entry when the trial was set up (the fallback). */
  fallback?: number;
  created: string;
}

export interface UpdateResult {
  file: string;
  installed: boolean;
  entry: number;
  entryCreated: boolean;
  fallback?: number;
  resealed: ResealResult[];
}

export const trialTokens = (results: ResealResult[]): string[] => results.flatMap((r) => r.plans.map((p) => `${r.device}|${p.keyslot}|${p.policy}`));

/** An ESP-relative path as given ("/" or "\\" separated): relative, no "..", ending in .efi. */
function espPath(given: string): string {
  const target = given.replace(/\\/g, "/").replace(/^\/+/, "");
  if (target.split("/").some((p) => p === ".." || p === "") || !/\.efi$/i.test(target)) throw new CvmError("USAGE", `the ESP path ${given}: expected a relative path like EFI/Linux/NAME.efi`);
  return target;
}

/** Writes a file so that a power loss leaves the old file or the new one, never a torn one. */
export function writeAtomic(path: string, bytes: Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.${basename(path)}.cvm-unlock.tmp`);
  const fd = openSync(tmp, "w", 0o644);
  try {
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
    syncFd(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  syncDir(dirname(path));
}

export function readTrial(path: string): TrialRecord | undefined {
  if (!existsSync(path)) return undefined;
  let r: TrialRecord;
  try {
    r = JSON.parse(readFileSync(path, "utf8")) as TrialRecord;
  } catch (e) {
    throw new CvmError("EFI", `the trial record ${path} is not JSON (${(e as Error).message.slice(0, 80)})`);
  }
  if (r?.version !== 1 || !Number.isInteger(r.entry) || r.entry < 0 || r.entry > 0xffff || typeof r.file !== "string" || !Array.isArray(r.tokens) || !r.tokens.every((t) => typeof t === "string")) {
    throw new CvmError("EFI", `the trial record ${path} is malformed`);
  }
  return r;
}

export function removeTrial(path: string): void {
  try {
    unlinkSync(path);
    syncDir(dirname(path));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw new CvmError("EFI", `cannot remove ${path}: ${(e as NodeJS.ErrnoException).code}`);
  }
}

/** The Boot#### entries whose device path is exactly this one (an entry the firmware cannot read is left alone). */
function entriesStarting(vars: EfiVars, path: LoadOption["path"], log: Logger): number[] {
  const want = encodeDevicePath(path);
  return vars.bootNumbers().filter((n) => {
    try {
      const o = vars.bootEntry(n);
      return o !== undefined && equalBytes(encodeDevicePath(o.path), want);
    } catch (e) {
      log.warn(`${bootName(n)} is not a load option this can read; left alone`, { error: (e as Error).message });
      return false;
    }
  });
}

/** The Boot#### that starts this file on this partition, or the lowest free number for a new one. */
function entryFor(vars: EfiVars, option: LoadOption, log: Logger): { n: number; exists: boolean } {
  const found = entriesStarting(vars, option.path, log)[0];
  if (found !== undefined) return { n: found, exists: true };
  const used = new Set(vars.bootNumbers());
  let n = 0;
  while (used.has(n)) n++;
  if (n > 0xffff) throw new CvmError("EFI", "no free Boot#### number");
  return { n, exists: false };
}

export async function updateUki(opts: {
  uki: Uint8Array;
  authenticode: Digests;
  esp: Esp;
  /** ESP-relative path the UKI goes to, e.g. EFI/Linux/debian-6.1.0-27-cloud-amd64.efi. */
  target: string;
  vars: EfiVars;
  trialPath: string;
  reseal: () => Promise<ResealResult[]>;
  log: Logger;
  fault: Fault;
}): Promise<UpdateResult> {
  const { esp, vars, log, fault } = opts;
  const target = espPath(opts.target);
  if (!vars.available()) throw new CvmError("EFI", `no UEFI variables at ${vars.dir} (not booted through UEFI, or efivarfs not mounted): a boot entry cannot be added`);
  const fallback = vars.bootOrder()[0];
  const current = vars.bootCurrent();
  const option: LoadOption = { attributes: LOAD_OPTION_ACTIVE, description: `cvm-unlock ${basename(target, ".efi")}`, path: [hardDriveNode(esp.partition), filePathNode(target)], optional: new Uint8Array(0) };

  const resealed = await opts.reseal();
  fault("resealed");

  const dest = join(esp.dir, target);
  const installed = !(existsSync(dest) && equalBytes(new Uint8Array(readFileSync(dest)), opts.uki));
  if (installed) writeAtomic(dest, opts.uki);
  fault("installed");

  const { n, exists } = entryFor(vars, option, log);
  if (n === current) throw new CvmError("EFI", `${bootName(n)} already starts ${target} and is what this boot came from: install the new UKI under another name`);
  if (!exists) vars.setBootEntry(n, option);
  fault("entry-written");

  const record: TrialRecord = { version: 1, entry: n, file: target, authenticode: opts.authenticode, tokens: trialTokens(resealed), fallback: fallback === n ? undefined : fallback, created: new Date().toISOString() };
  writeAtomic(opts.trialPath, new TextEncoder().encode(`${JSON.stringify(record, null, 2)}\n`));
  fault("recorded");

  vars.setBootNext(n);
  fault("boot-next-set");
  log.info(`${target} installed as ${bootName(n)} and set as BootNext: the next boot tries it once; BootOrder still starts with ${fallback !== undefined ? bootName(fallback) : "(empty)"}`);
  return { file: target, installed, entry: n, entryCreated: !exists, fallback: record.fallback, resealed };
}

export interface RemoveResult {
  file: string;
  entries: number[];
  fileRemoved: boolean;
  recordRemoved: boolean;
}

/** What kernel-install's remove runs: the boot entries that start this ESP file leave BootOrder and efivarfs,
 *  then the file goes, then a trial record naming it. Never the entry this boot came from, and never the
 *  last entry of BootOrder: a VM must keep something to boot. */
export function removeUki(opts: { esp: Esp; target: string; vars: EfiVars; trialPath: string; log: Logger }): RemoveResult {
  const { esp, vars, log } = opts;
  const target = espPath(opts.target);
  const on = vars.available();
  const entries = on ? entriesStarting(vars, [hardDriveNode(esp.partition), filePathNode(target)], log) : [];
  const current = on ? vars.bootCurrent() : undefined;
  if (current !== undefined && entries.includes(current)) throw new CvmError("EFI", `${target} is what this boot came from (${bootName(current)}): not removed`);
  const order = on ? vars.bootOrder() : [];
  const rest = order.filter((n) => !entries.includes(n));
  if (order.length > 0 && rest.length === 0) throw new CvmError("EFI", `${target} is every entry of BootOrder: removing it would leave nothing to boot`);
  if (rest.length !== order.length) vars.setBootOrder(rest);
  if (on && entries.includes(vars.bootNext() ?? -1)) vars.remove("BootNext");
  for (const n of entries) vars.remove(bootName(n));
  const dest = join(esp.dir, target);
  const fileRemoved = existsSync(dest);
  if (fileRemoved) {
    unlinkSync(dest);
    syncDir(dirname(dest));
  }
  const record = readTrial(opts.trialPath);
  const recordRemoved = record !== undefined && record.file === target;
  if (recordRemoved) removeTrial(opts.trialPath);
  log.info(`${target}: ${entries.length} boot entr${entries.length === 1 ? "y" : "ies"} removed${fileRemoved ? ", the file removed" : ""}${recordRemoved ? ", its pending trial dropped" : ""}`);
  return { file: target, entries, fileRemoved, recordRemoved };
}
