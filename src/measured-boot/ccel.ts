// The TDX CC event log (ACPI CCEL table; Linux: /sys/firmware/acpi/tables/data/CCEL): the firmware's and
// the kernel stub's measurements into RTMR0..3, in the crypto-agile format with SHA-384. Its event index is
// the UEFI CC measurement register index: 1..4 = RTMR0..3 (0 would be MRTD, which no event extends).
// The agent sends it as Trustee's `cc_eventlog`; the broker replays it against the quote's RTMRs.
import { sha384 } from "@noble/hashes/sha2.js";
import { readFileSync } from "node:fs";
import { EventLogError, parseEventLog } from "./eventlog.js";

export const CCEL_PATH = "/sys/firmware/acpi/tables/data/CCEL";

/** The log without the unused rest of the ACPI area (typed TEE error when it is not a CCEL). */
export function trimCcel(area: Uint8Array): Uint8Array {
  const log = parseEventLog(area, { code: "TEE", padded: true });
  return area.slice(0, log.length);
}

/** RTMR0..3 as the CCEL's SHA-384 digests replay them. */
export function ccelRtmrs(log: Uint8Array): Uint8Array[] {
  const parsed = parseEventLog(log, { code: "TEE" });
  if (!parsed.banks.some((b) => b.name === "sha384")) throw new EventLogError("TEE", "the CCEL has no SHA-384 digests");
  const rtmrs = [0, 1, 2, 3].map(() => new Uint8Array(48));
  for (const e of parsed.events) {
    if (e.type === 0x3) continue; // EV_NO_ACTION
    if (e.pcr < 1 || e.pcr > 4) throw new EventLogError("TEE", `CCEL event ${e.index} names MR index ${e.pcr} (only 1..4, RTMR0..3, are extended by events)`);
    const prev = rtmrs[e.pcr - 1]!;
    const next = new Uint8Array(96);
    next.set(prev);
    next.set(e.digests.get("sha384")!, 48);
    rtmrs[e.pcr - 1] = sha384(next);
  }
  return rtmrs;
}

/** This guest's CCEL, trimmed, or undefined when the platform has none (not TDX, or an old kernel). */
export function readCcel(path = CCEL_PATH): Uint8Array | undefined {
  let area: Uint8Array;
  try {
    area = new Uint8Array(readFileSync(path));
  } catch {
    return undefined;
  }
  return trimCcel(area);
}
