// cvm-unlock after-unlock: the initramfs's last word, once systemd-cryptsetup has activated the volumes and
// before the switch to root (its unit is ordered before initrd.target, with FailureAction=poweroff-force):
//   1. revoke the keyring hand-off key: systemd-cryptsetup has read it, nothing else may;
//   2. check every live dm-crypt mapping of a configured volume: its cipher and key size in the volume's
//      allowlist, and equal to what the agent checked before the hand-off (cipher, key size, data offset,
//      sector size, LUKS UUID, backing device). The host serves the header on every read, so only the
//      mapping the kernel holds says what systemd-cryptsetup really set up: a mismatch powers the VM off
//      before the host's root (say, a plaintext one under cipher_null) ever runs;
//   3. refuse (and so power off) when the kernel command line could open a shell, as unlock does;
//   4. record the "unlocked" event (flow/boot-event.ts).
// It checks even when rd.cvm_unlock=0 disabled the release: the command line may only make things stricter.
import { CvmError } from "../errors.js";
import { recordUnlocked } from "../flow/boot-event.js";
import { revokeKey } from "../keyring/handoff.js";
import { checkHeaderCiphers, DEFAULT_CIPHERS, type ExpectedMapping } from "../luks/ciphers.js";
import { devicePath } from "../luks/cryptsetup.js";
import { readLuksHeaderFile } from "../luks/header.js";
import { deviceNumber, dmUuidIsLuks, listDm, mappingDifferences, parseCryptTable, readExpected, type LiveMapping } from "../luks/mapping.js";
import { runCapture } from "../proc.js";
import type { Tpm } from "../tpm/commands.js";
import type { Context, Runner } from "./command.js";
import { checkEnvironment, loadEffective, noCoreDumps, refuseEscapes } from "./common.js";

export interface AfterUnlockDeps {
  /** /sys/block (tests: a directory of their own). */
  sysBlock?: string;
  /** A mapping's table (default: `dmsetup table NAME`). */
  table?: (name: string) => Promise<string>;
  /** The TPM for the unlocked event (default: the config's tpm.device, if there is one). */
  tpm?: (device: string, ctx: Context) => Promise<Tpm | undefined>;
  rtmr3Path?: string;
  /** A volume's device number "major:minor" (tests: fixed; default stats the device path). */
  deviceNumber?: (path: string) => string | undefined;
}

async function dmsetupTable(name: string): Promise<string> {
  const r = await runCapture(["dmsetup", "table", "--", name]);
  if (r.code !== 0) throw new CvmError("LUKS", `dmsetup table ${name} failed (exit ${r.code}): ${r.stderr.trim().slice(0, 160)}`);
  return r.stdout;
}

export function makeAfterUnlock(deps: AfterUnlockDeps = {}): Runner {
  return async (ctx) => {
    checkEnvironment(ctx.env);
    await noCoreDumps(ctx);
    const eff = loadEffective(ctx);
    const config = eff.config;
    const native = await ctx.native();
    const revoked = revokeKey(native, config.keyring);
    if (revoked !== undefined) ctx.log.info("hand-off key revoked", { key: config.keyring.key, serial: revoked });
    refuseEscapes(eff);

    const expected = readExpected(ctx.runDir);
    const table = deps.table ?? dmsetupTable;
    const live: LiveMapping[] = [];
    const problems: string[] = [];
    for (const dm of listDm(deps.sysBlock)) {
      const t = await table(dm.name);
      if (!/^\s*\d+\s+\d+\s+crypt\s/m.test(t)) continue; // not dm-crypt (linear, verity, …)
      try {
        live.push(parseCryptTable(dm.name, dm.dmUuid, t));
      } catch (e) {
        problems.push((e as Error).message);
      }
    }
    const devNo = deps.deviceNumber ?? deviceNumber;
    const checked: string[] = [];
    for (const v of config.volumes) {
      const path = devicePath(v.device);
      const dev = devNo(path);
      const allowed = v.ciphers ?? DEFAULT_CIPHERS;
      let want: ExpectedMapping | undefined = expected.find((e) => e.volume === v.name);
      if (!want && dev !== undefined) {
        // Not checked before (a volume systemd-cryptsetup opened from its vTPM token alone): the header now.
        try {
          want = checkHeaderCiphers(v.name, await readLuksHeaderFile(path), allowed);
        } catch (e) {
          problems.push((e as Error).message);
        }
      }
      const mine = live.filter((m) => (dev !== undefined && m.device === dev) || (want !== undefined && dmUuidIsLuks(m.dmUuid, want.uuid)));
      for (const m of mine) {
        if (!allowed.includes(`${m.cipher}:${m.keyBits}`)) problems.push(`volume ${v.name}: mapping ${m.name} uses ${m.cipher} with a ${m.keyBits}-bit key, not in the allowlist (${allowed.join(", ")})`);
        const diffs = want ? mappingDifferences({ ...want, device: dev }, m) : [];
        if (diffs.length > 0) problems.push(`volume ${v.name}: mapping ${m.name} is not what was checked before the hand-off: ${diffs.join("; ")}`);
        checked.push(m.name);
      }
      if (mine.length === 0 && expected.some((e) => e.volume === v.name)) ctx.log.warn(`volume ${v.name} is not active (systemd-cryptsetup did not open it)`, { volume: v.name });
    }

    let recorded: string[] = [];
    let tpm: Tpm | undefined;
    try {
      tpm = deps.tpm ? await deps.tpm(config.tpm.device, ctx) : await openTpmIfAny(config.tpm.device, ctx);
      recorded = await recordUnlocked({ tpm, rtmr3Path: deps.rtmr3Path, log: ctx.log });
    } catch (e) {
      problems.push(`recording the unlocked event failed: ${(e as Error).message}`);
    } finally {
      tpm?.transport.close();
    }
    if (problems.length > 0) {
      throw new CvmError("LUKS", `after the unlock: ${problems.join(" | ").slice(0, 900)}`, { problems: problems.length, mappings: checked.join(",") });
    }
    const where = recorded.length > 0 ? `; unlocked event recorded in ${recorded.join(", ")}` : "";
    return {
      status: checked.length > 0 || revoked !== undefined ? "done" : "nothing-to-do",
      message: `live mappings checked: ${checked.length > 0 ? checked.join(", ") : "none active"} as checked before the hand-off${revoked !== undefined ? "; hand-off key revoked" : ""}${where}`,
      data: { mappings: checked, revoked: revoked !== undefined, recorded },
    };
  };
}

/** The config's TPM when the device is there; none is no error (a broker-only VM has no vTPM). */
async function openTpmIfAny(device: string, ctx: Context): Promise<Tpm | undefined> {
  const { existsSync } = await import("node:fs");
  if (device.startsWith("/") && !existsSync(device)) return undefined;
  const [{ Tpm }, { openTpm }] = await Promise.all([import("../tpm/commands.js"), import("../tpm/transport.js")]);
  return new Tpm(await openTpm(device, ctx.native));
}

export const afterUnlock: Runner = makeAfterUnlock();
