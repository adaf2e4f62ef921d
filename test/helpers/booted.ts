// A swtpm "booted" through a real event log (every event's digests extended into its PCRs), optionally with
// some events' digests replaced (what a boot of another binary measures), and a LUKS image with systemd 252's
// own systemd-cryptenroll token for PCR 4+7 of it. Shared by the reseal and update tests and bench/update.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { EV, parseEventLog, type LogEvent } from "../../src/measured-boot/eventlog.js";
import { Tpm } from "../../src/tpm/commands.js";
import { swtpmTransport } from "../../src/tpm/transport.js";
import { tempDir } from "./bin.js";
import { makeLuksImage } from "./luks.js";
import { startSwtpm, type Swtpm } from "./swtpm.js";

export async function bootedSwtpm(logPath: string, digestsOf: (e: LogEvent, index: number) => Map<string, Uint8Array> = (e) => e.digests): Promise<Swtpm> {
  const s = await startSwtpm();
  const log = parseEventLog(new Uint8Array(readFileSync(logPath)));
  const t = new Tpm(await swtpmTransport("127.0.0.1", s.port));
  try {
    for (const [i, e] of log.events.entries()) if (e.type !== EV.NO_ACTION) for (const [bank, d] of digestsOf(e, i)) await t.pcrExtend(e.pcr, bank, d);
  } finally {
    t.transport.close();
  }
  return s;
}

export async function pcrsOf(port: number, bank: string, pcrs = [4, 7]): Promise<Map<number, Uint8Array>> {
  const t = new Tpm(await swtpmTransport("127.0.0.1", port));
  try {
    return await t.pcrRead(bank, pcrs);
  } finally {
    t.transport.close();
  }
}

/** A volume with a recovery passphrase and systemd-cryptenroll's own token for PCR 4+7 of this swtpm. */
export function enrolled(port: number, passphrase = "recovery-passphrase"): string {
  const img = makeLuksImage(passphrase, tempDir("enrolled-"));
  const r = spawnSync("systemd-cryptenroll", [`--tpm2-device=swtpm:host=127.0.0.1,port=${port}`, "--tpm2-pcrs=4+7", img], { env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", PASSWORD: passphrase }, encoding: "utf8", timeout: 120_000 });
  if (r.status !== 0) throw new Error(`systemd-cryptenroll failed: ${r.stderr}`);
  return img;
}
