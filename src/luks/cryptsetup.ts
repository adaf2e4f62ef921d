// The LUKS side of the broker path: find the volume's block device, and prove a passphrase opens one of
// its keyslots with `cryptsetup open --test-passphrase --key-file=-` (passphrase on stdin only; nothing
// is activated, so no device-mapper is needed).
import { CvmError } from "../errors.js";
import type { Secret } from "../log/secret.js";
import { exists } from "../native/files.js";
import { memAvailableMiB, spawnWithStdin } from "../proc.js";
import { dmUuidIsLuks, listDm } from "./mapping.js";

/** UUID=/PARTUUID=/PARTLABEL= → the udev symlink; absolute paths as they are. */
export function devicePath(spec: string): string {
  const m = /^(UUID|PARTUUID|PARTLABEL)=(.+)$/.exec(spec);
  if (!m) return spec;
  const dir = { UUID: "by-uuid", PARTUUID: "by-partuuid", PARTLABEL: "by-partlabel" }[m[1] as "UUID"];
  const value = m[1] === "PARTLABEL" ? udevEscape(m[2]!) : m[2]!.toLowerCase();
  return `/dev/disk/${dir}/${value}`;
}

/** udev's encoding of unusual characters in by-partlabel names (\xHH). */
function udevEscape(s: string): string {
  return s.replace(/[^A-Za-z0-9#+\-.:=@_]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

export const deviceExists = (path: string): boolean => exists(path);

/** Is the LUKS volume with this UUID open (a dm-crypt mapping made by libcryptsetup, whatever its name)?
 *  libcryptsetup names the mapping's dm UUID CRYPT-<type>-<uuid without dashes>-<name>. */
export function luksActive(uuid: string, sysBlock = "/sys/block"): boolean {
  return listDm(sysBlock).some((d) => dmUuidIsLuks(d.dmUuid, uuid, ["1", "2"]));
}

export interface CryptsetupResult {
  ok: boolean;
  exitCode: number | null;
  /** The signal that ended it, or null. */
  signal: string | null;
  /** The agent killed it at its deadline. */
  timedOut: boolean;
  /** MemAvailable (MiB) when the passphrase went in, as the keyslot's KDF started; undefined where unknown. */
  memAvailableMiB?: number;
  stderr: string;
}

/** Why a cryptsetup run failed, for an error message. A SIGKILL the agent did not send is, in an initramfs
 *  without swap, the kernel's OOM killer ending a keyslot's argon2 KDF that did not fit beside the initramfs
 *  (unit OOMPolicy=continue keeps the agent alive to say so); kdfMiB is the most the volume's keyslots take. */
export function cryptsetupWhy(r: CryptsetupResult, timeoutMs: number, kdfMiB?: number): string {
  if (r.timedOut) return `timed out after ${timeoutMs} ms`;
  if (r.signal === "SIGKILL") {
    const need = kdfMiB ? [`its keyslots' KDF takes up to ${kdfMiB} MiB`] : [];
    if (r.memAvailableMiB !== undefined) need.push(`${r.memAvailableMiB} MiB was available when it started`);
    return `killed by SIGKILL, not by the agent: most likely the kernel's OOM killer${need.length ? ` (${need.join("; ")})` : ""} — give the guest more memory or the keyslot a smaller --pbkdf-memory`;
  }
  if (r.signal) return `killed by ${r.signal}`;
  const last = r.stderr.split("\n").pop()?.slice(0, 200) ?? "";
  return `exit ${r.exitCode}${r.exitCode === 3 ? " (out of memory)" : ""}: ${last}`;
}

/** A cryptsetup process started ahead of time, waiting for its passphrase on stdin. */
export interface PendingRun {
  submit(passphrase: Secret): Promise<CryptsetupResult>;
  /** Kills the process (ours, by its handle) when no passphrase will come. */
  abort(): void;
}

/** Starts cryptsetup now; its start-up and header read overlap with whatever the caller does next. */
export function startWithStdin(args: string[], timeoutMs: number, binary = "cryptsetup"): PendingRun {
  const child = spawnWithStdin([binary, ...args]);
  child.catch(() => {}); // observed by submit()
  let timedOut = false;
  let timer: ReturnType<typeof setTimeout> | undefined = setTimeout(() => {
    timedOut = true;
    void child.then((c) => c.kill()).catch(() => {});
  }, timeoutMs);
  const stop = () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
  };
  return {
    async submit(passphrase) {
      let c;
      try {
        c = await child;
      } catch (e) {
        stop();
        throw new CvmError("LUKS", `cannot run ${binary}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
      const memAvailable = memAvailableMiB();
      passphrase.use((bytes) => c.end(bytes));
      const r = await c.exited.finally(stop);
      return { ok: r.code === 0, exitCode: r.code, signal: r.signal, timedOut, memAvailableMiB: memAvailable, stderr: r.stderr.trim() };
    },
    abort() {
      stop();
      void child.then((c) => c.kill()).catch(() => {});
    },
  };
}


export interface PendingCheck {
  /** Resolves when the passphrase opens a keyslot; throws LUKS otherwise. */
  check(passphrase: Secret): Promise<void>;
  abort(): void;
}

/** Starts `cryptsetup open --test-passphrase --key-file=-` for a volume before its passphrase is known. */
export function startPassphraseCheck(name: string, path: string, timeoutMs: number, kdfMiB?: number): PendingCheck {
  const run = startWithStdin(["open", "--test-passphrase", "--key-file=-", path], timeoutMs);
  return {
    abort: run.abort,
    async check(passphrase) {
      const r = await run.submit(passphrase);
      if (r.ok) return;
      // cryptsetup exit codes: 1 wrong parameters, 2 no permission (bad passphrase), 3 out of memory, 4 wrong device, 5 busy.
      if (r.exitCode === 2) throw new CvmError("LUKS", `volume ${name}: the passphrase from the broker opens no keyslot of ${path}`, { volume: name });
      throw new CvmError("LUKS", `volume ${name}: cryptsetup could not check ${path} (${cryptsetupWhy(r, timeoutMs, kdfMiB)})`, { volume: name });
    },
  };
}

