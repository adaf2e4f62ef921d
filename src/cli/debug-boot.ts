// debug authenticode / debug pcrs: the measured-boot module for an admin — a PE file's Authenticode hashes,
// and PCR 4/7 per bank: live, replayed from the event log, and predicted for a new UKI or shim.
import { existsSync, readFileSync } from "node:fs";
import { hex } from "../bytes.js";
import { CvmError } from "../errors.js";
import { authenticode } from "../measured-boot/authenticode.js";
import { parseEventLog, replay, type EventLog } from "../measured-boot/eventlog.js";
import { predictPcrs, updateReplacements, type Digests, type NextBoot } from "../measured-boot/predict.js";
import type { Context, Runner } from "./command.js";
import { readFlagFile } from "./common.js";

export const EVENTLOG_PATH = "/sys/kernel/security/tpm0/binary_bios_measurements";
const SYSFS_PCRS = "/sys/class/tpm/tpm0";

/** A PE file's Authenticode digests, whether it is a UKI, and its kernel's digests if so. */
export const peOf = (b: Uint8Array): { digests: Digests; uki: boolean; kernel?: Digests } => {
  const a = authenticode(b);
  return { digests: { sha1: hex(a.sha1), sha256: hex(a.sha256) }, uki: a.uki, ...(a.kernel ? { kernel: { sha1: hex(a.kernel.sha1), sha256: hex(a.kernel.sha256) } } : {}) };
};

export const digestsOf = (b: Uint8Array): Digests => peOf(b).digests;

/** The binaries the next boot runs, from --uki FILE or --uki-authenticode, and --shim FILE. */
export function nextBinaries(f: Context["flags"]): NextBoot {
  const file = typeof f.uki === "string" ? peOf(readFlagFile("--uki", f.uki)) : undefined;
  const uki = file ? file.digests : typeof f["uki-authenticode"] === "string" ? parseDigests(f["uki-authenticode"], "--uki-authenticode") : undefined;
  return { uki, ukiKernel: file?.kernel, shim: typeof f.shim === "string" ? digestsOf(readFlagFile("--shim", f.shim)) : undefined };
}

export const debugAuthenticode: Runner = async (ctx) => {
  const file = ctx.positionals[0]!;
  const { digests: d, uki, kernel } = peOf(readFlagFile("FILE", file));
  ctx.print(`sha1   ${d.sha1}\nsha256 ${d.sha256}\nuki    ${uki ? "yes (a .linux section)" : "no"}${kernel ? `\nkernel sha1 ${kernel.sha1}\nkernel sha256 ${kernel.sha256}` : ""}`);
  return { status: "done", message: `Authenticode of ${file}`, data: { file, authenticode: d, uki, ...(kernel ? { kernel } : {}) } };
};

/** "sha1:HEX,sha256:HEX" → digests. */
export function parseDigests(s: string, flag: string): Digests {
  const out: Digests = {};
  for (const part of s.split(",")) {
    const m = /^(sha1|sha256|sha384|sha512):([0-9a-fA-F]+)$/.exec(part);
    if (!m) throw new CvmError("USAGE", `${flag}: expected sha1:HEX,sha256:HEX`);
    out[m[1]!] = m[2]!.toLowerCase();
  }
  return out;
}


/** The live PCR values the kernel shows in sysfs, for the log's banks (none when there is no TPM). */
function sysfsPcrs(log: EventLog, pcrs: number[]): Record<string, Record<number, string>> {
  const out: Record<string, Record<number, string>> = {};
  for (const b of log.banks) {
    for (const p of pcrs) {
      const f = `${SYSFS_PCRS}/pcr-${b.name}/${p}`;
      if (existsSync(f)) (out[b.name] ??= {})[p] = readFileSync(f, "utf8").trim().toLowerCase();
    }
  }
  return out;
}

export const debugPcrs: Runner = async (ctx) => {
  const f = ctx.flags;
  const path = typeof f.eventlog === "string" ? f.eventlog : EVENTLOG_PATH;
  const log = parseEventLog(readFlagFile("--eventlog", path));
  const pcrs = [4, 7];
  const replayed = replay(log);
  const rep = Object.fromEntries(log.banks.filter((b) => replayed.has(b.name)).map((b) => [b.name, Object.fromEntries(pcrs.map((p) => [p, hex(replayed.get(b.name)!.get(p) ?? new Uint8Array(b.size))]))]));
  // Live values: --live-pcrs FILE (JSON bank → pcr → hex) for a saved log, else sysfs when this is that boot.
  const live = typeof f["live-pcrs"] === "string" ? (JSON.parse(new TextDecoder().decode(readFlagFile("--live-pcrs", f["live-pcrs"]))) as Record<string, Record<number, string>>) : typeof f.eventlog === "string" ? {} : sysfsPcrs(log, pcrs);

  const next = nextBinaries(f);
  let predicted: Record<string, Record<number, string>> | undefined;
  if (next.uki || next.shim) {
    if (Object.keys(live).length === 0) throw new CvmError("USAGE", "a prediction needs the live PCRs to check the log against (run on the booted system, or give --live-pcrs FILE)");
    const { replace, known } = updateReplacements(log, next);
    predicted = predictPcrs(log, { live, replace, known, pcrs });
  }
  for (const bank of Object.keys(rep)) {
    for (const p of pcrs) ctx.print(`${bank.padEnd(6)} PCR ${p}: replayed ${rep[bank]![p]}${live[bank]?.[p] ? (live[bank]![p] === rep[bank]![p] ? " = live" : ` ≠ live ${live[bank]![p]}`) : ""}${predicted?.[bank]?.[p] ? `\n       PCR ${p}: predicted ${predicted[bank]![p]}` : ""}`);
  }
  return { status: "done", message: `PCR 4/7 from ${path}${predicted ? ", with the prediction for the next boot" : ""}`, data: { eventlog: path, replayed: rep, live, predicted } };
};
