// After the release: record an "unlocked" event in a register the boot's evidence covers, so that root,
// once booted, cannot mint evidence that passes the same policy as the initramfs did (the register no
// longer holds its initramfs value). Where the platform gives the guest such a register:
//   - a vTPM: PCR 11 (systemd's boot-phase PCR) is extended in every bank it has;
//   - TDX: RTMR3 through the kernel's measurement register file (Linux 6.16+; the 6.1 kernel has none);
//   - SEV-SNP without a vTPM: the launch measurement is fixed at launch and the guest has no register it
//     can extend, so there is nothing to record; the broker's policy must not release twice to one launch.
import { sha1, sha256, sha384, sha512 } from "../hash.js";
import { existsSync, openSync, writeSync, closeSync } from "node:fs";
import type { Logger } from "../log/logger.js";
import type { Tpm } from "../tpm/commands.js";

export const UNLOCKED_EVENT = "cvm-unlock: volumes unlocked, leaving the initramfs";
export const UNLOCKED_PCR = 11;
/** The kernel's file for extending TDX RTMR3 with a SHA-384 digest (tsm-mr, Linux 6.16). */
export const RTMR3_PATH = "/sys/class/misc/tdx_guest/measurements/rtmr3:sha384";

const HASHES: Record<string, (b: Uint8Array) => Uint8Array> = { sha1, sha256, sha384, sha512 };
const event = () => new TextEncoder().encode(UNLOCKED_EVENT);

/** Extends the event into every register there is; returns where it went ("pcr11:sha256", "rtmr3"). */
export async function recordUnlocked(opts: { tpm?: Tpm; rtmr3Path?: string; log: Logger }): Promise<string[]> {
  const done: string[] = [];
  if (opts.tpm) {
    for (const { bank, pcrs } of await opts.tpm.pcrBanks()) {
      const h = HASHES[bank];
      if (!h || !pcrs.includes(UNLOCKED_PCR)) continue;
      await opts.tpm.pcrExtend(UNLOCKED_PCR, bank, h(event()));
      done.push(`pcr${UNLOCKED_PCR}:${bank}`);
    }
  }
  const rtmr = opts.rtmr3Path ?? RTMR3_PATH;
  if (existsSync(rtmr)) {
    const fd = openSync(rtmr, "w");
    try {
      writeSync(fd, sha384(event()));
    } finally {
      closeSync(fd);
    }
    done.push("rtmr3");
  }
  if (done.length === 0) opts.log.info("no register to record the unlocked event in (no vTPM, no TDX RTMR interface)");
  return done;
}
