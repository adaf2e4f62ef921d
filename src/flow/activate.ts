// Activating a volume ourselves (keyring.handoff "activate", the default): where device-mapper exists the agent
// runs `cryptsetup open` itself with the released passphrase, so the keyslot's KDF runs once per boot — an
// argon2id keyslot sized for the guest costs seconds, and a separate proof (`--test-passphrase`) followed by
// systemd-cryptsetup's own activation would pay it twice. systemd-cryptsetup then finds the volume active and
// does nothing ("Volume … already active"), so the mapping must have the name and the activation flags it
// would have used: the ones systemd's cryptsetup generator derives from the kernel command line (rd.luks.uuid,
// rd.luks.name, rd.luks.options) and the initramfs's /etc/crypttab. When that cannot be known for sure (the
// volume is not one systemd sets up, an option we do not model, no device-mapper) the agent falls back to the
// keyring hand-off. after-unlock checks the live mapping either way.
import { CvmError } from "../errors.js";
import { splitCmdline } from "../config/cmdline.js";
import type { Secret } from "../log/secret.js";
import { cryptsetupWhy, startWithStdin, type PendingCheck } from "../luks/cryptsetup.js";

/** crypttab options that change the dm-crypt mapping, and the cryptsetup flag for each. */
const FLAGS: Record<string, string> = {
  discard: "--allow-discards",
  "same-cpu-crypt": "--perf-same_cpu_crypt",
  "submit-from-crypt-cpus": "--perf-submit_from_crypt_cpus",
  "no-read-workqueue": "--perf-no_read_workqueue",
  "no-write-workqueue": "--perf-no_write_workqueue",
  "read-only": "--readonly",
  readonly: "--readonly",
};
/** Options that do not change the mapping (how systemd-cryptsetup asks, waits or orders, the token kinds). */
const NEUTRAL = /^(luks|tries=\d+|timeout=\S+|headless(=\S+)?|nofail|noauto|_netdev|initramfs|x-initrd\.attach|x-systemd\.\S+|keyfile-(size|offset|erase|timeout)(=\S+)?|token-timeout=\S+|try-empty-password(=\S+)?|password-echo=\S+|tpm2-\S+|fido2-\S+|pkcs11-\S+|link-volume-key=\S+|force|silent)$/;

export interface SystemdVolume {
  /** The dm name systemd-cryptsetup uses (luks-<UUID>, rd.luks.name, or crypttab's). */
  name: string;
  options: string[];
  /** Where that came from, for the log. */
  source: "crypttab" | "kernel command line";
}

const normUuid = (s: string) => s.replace(/^luks-/i, "").toLowerCase();

/** What systemd's cryptsetup generator (in the initramfs) makes of a LUKS volume, or undefined when it sets
 *  up no unit for it. */
export function systemdVolume(uuid: string, devicePath: string, cmdline: string, crypttab: string | undefined): SystemdVolume | undefined {
  const u = uuid.toLowerCase();
  let enabled = true;
  let readCrypttab = true;
  const uuids = new Set<string>();
  const names = new Map<string, string>();
  const uuidOptions = new Map<string, string>();
  let defaultOptions: string | undefined;
  for (const w of splitCmdline(cmdline)) {
    const eq = w.indexOf("=");
    const key = eq < 0 ? w : w.slice(0, eq);
    const value = eq < 0 ? "" : w.slice(eq + 1);
    if (key === "rd.luks" || key === "luks") enabled = !/^(0|no|false|off)$/i.test(value);
    else if (key === "rd.luks.crypttab" || key === "luks.crypttab") readCrypttab = !/^(0|no|false|off)$/i.test(value);
    else if (key === "rd.luks.uuid" || key === "luks.uuid") uuids.add(normUuid(value));
    else if (key === "rd.luks.name" || key === "luks.name") {
      const i = value.indexOf("=");
      if (i > 0) {
        uuids.add(normUuid(value.slice(0, i)));
        names.set(normUuid(value.slice(0, i)), value.slice(i + 1));
      }
    } else if (key === "rd.luks.options" || key === "luks.options") {
      const m = /^([0-9a-fA-F-]{36})=(.*)$/.exec(value);
      if (m) {
        uuids.add(m[1]!.toLowerCase());
        uuidOptions.set(m[1]!.toLowerCase(), m[2]!);
      } else defaultOptions = value;
    }
  }
  if (!enabled) return undefined;
  const cmdOptions = uuidOptions.get(u) ?? defaultOptions;
  const split = (o: string | undefined) => (o ?? "").split(",").filter((x) => x !== "");
  // crypttab entries: name, device, key file, options. With rd.luks.uuid given, only those UUIDs count.
  if (readCrypttab && crypttab) {
    for (const line of crypttab.split("\n")) {
      const f = line.trim().split(/\s+/);
      if (f.length < 2 || f[0]!.startsWith("#")) continue;
      const dev = f[1]!;
      const isOurs = dev.toLowerCase() === `uuid=${u}` || dev.toLowerCase() === `/dev/disk/by-uuid/${u}` || dev === devicePath;
      if (!isOurs) continue;
      if (uuids.size > 0 && !uuids.has(u)) return undefined;
      return { name: f[0]!, options: split(cmdOptions ?? f[3]), source: "crypttab" };
    }
  }
  if (!uuids.has(u)) return undefined;
  return { name: names.get(u) ?? `luks-${u}`, options: split(cmdOptions), source: "kernel command line" };
}

/** The cryptsetup flags for crypttab options, or the first option this code does not model. */
export function activationFlags(options: string[]): { flags: string[] } | { unsupported: string } {
  const flags: string[] = [];
  for (const o of options) {
    if (FLAGS[o]) flags.push(FLAGS[o]!);
    else if (!NEUTRAL.test(o)) return { unsupported: o };
  }
  return { flags: [...new Set(flags)] };
}

/** Starts `cryptsetup open --key-file=- [flags] DEVICE NAME` before the passphrase is known; its check()
 *  activates the volume (the proof and the activation in one KDF run). */
export function startActivation(volume: string, path: string, dmName: string, flags: string[], timeoutMs: number, kdfMiB?: number): PendingCheck {
  const run = startWithStdin(["open", "--type", "luks", "--key-file=-", ...flags, path, dmName], timeoutMs);
  return {
    abort: run.abort,
    async check(passphrase: Secret) {
      const r = await run.submit(passphrase);
      if (r.ok) return;
      if (r.exitCode === 2) throw new CvmError("LUKS", `volume ${volume}: the passphrase from the broker opens no keyslot of ${path}`, { volume });
      throw new CvmError("LUKS", `volume ${volume}: cryptsetup could not activate ${path} as ${dmName} (${cryptsetupWhy(r, timeoutMs, kdfMiB)})`, { volume });
    },
  };
}
