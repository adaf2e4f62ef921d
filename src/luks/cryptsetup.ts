// The LUKS side of the broker path: find the volume's block device, and prove a passphrase opens one of
// its keyslots with `cryptsetup open --test-passphrase --key-file=-` (passphrase on stdin only; nothing
// is activated, so no device-mapper is needed).
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { CvmError } from "../errors.js";
import type { Secret } from "../log/secret.js";

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

export const deviceExists = (path: string): boolean => existsSync(path);

export interface CryptsetupResult {
  ok: boolean;
  exitCode: number | null;
  stderr: string;
}

/** Runs cryptsetup with the passphrase on stdin. */
export function runWithPassphrase(args: string[], passphrase: Secret, timeoutMs: number, binary = "cryptsetup"): Promise<CryptsetupResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { stdio: ["pipe", "ignore", "pipe"], env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", LC_ALL: "C" } });
    let stderr = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (d: string) => {
      if (stderr.length < 4096) stderr += d;
    });
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(new CvmError("LUKS", `cannot run ${binary}: ${(e as NodeJS.ErrnoException).code ?? e.message}`));
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ ok: code === 0, exitCode: code, stderr: stderr.trim() });
    });
    child.stdin.on("error", () => {
      /* cryptsetup may exit before reading everything; its exit code says why */
    });
    passphrase.use((bytes) => child.stdin.end(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)));
  });
}

/** Resolves when the passphrase opens a keyslot of the LUKS volume at `path`; throws LUKS otherwise. */
export async function testPassphrase(name: string, path: string, passphrase: Secret, timeoutMs: number): Promise<void> {
  const r = await runWithPassphrase(["open", "--test-passphrase", "--key-file=-", path], passphrase, timeoutMs);
  if (r.ok) return;
  // cryptsetup exit codes: 1 wrong parameters, 2 no permission (bad passphrase), 3 out of memory, 4 wrong device, 5 busy.
  if (r.exitCode === 2) throw new CvmError("LUKS", `volume ${name}: the passphrase from the broker opens no keyslot of ${path}`, { volume: name });
  const why = r.exitCode === null ? `timed out after ${timeoutMs} ms` : `exit ${r.exitCode}: ${r.stderr.split("\n").pop()?.slice(0, 200) ?? ""}`;
  throw new CvmError("LUKS", `volume ${name}: cryptsetup could not check ${path} (${why})`, { volume: name });
}
