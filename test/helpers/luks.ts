// Small LUKS2 images made by the real cryptsetup (pbkdf2 with 1000 iterations so they open fast).
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { tempDir } from "./bin.js";

export function makeLuksImage(passphrase: string, dir = tempDir("luks-"), name = "disk.img", opts: { argon2id?: { iterTimeMs: number; memoryKiB?: number } } = {}): string {
  const path = join(dir, name);
  execFileSync("truncate", ["-s", "20M", path]);
  // argon2id as a real image has it (cryptsetup's default KDF, its memory cost sized to the machine), with a
  // shorter time cost than the default 2 s so a test stays quick; pbkdf2 with 1000 iterations otherwise.
  const mem = opts.argon2id?.memoryKiB ? ["--pbkdf-memory", String(opts.argon2id.memoryKiB)] : [];
  const kdf = opts.argon2id ? ["--pbkdf", "argon2id", "--iter-time", String(opts.argon2id.iterTimeMs), ...mem] : ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"];
  execFileSync("cryptsetup", ["luksFormat", "--type", "luks2", "--batch-mode", ...kdf, "--key-file=-", path], { input: passphrase });
  return path;
}

/** True when the passphrase opens a keyslot of the image (cryptsetup's own check). */
export function opens(path: string, passphrase: string | Uint8Array): boolean {
  try {
    execFileSync("cryptsetup", ["open", "--test-passphrase", "--key-file=-", path], { input: passphrase, stdio: ["pipe", "ignore", "ignore"] });
    return true;
  } catch {
    return false;
  }
}
