// Token writes go through cryptsetup itself (never by editing headers): `token import` with the JSON on
// stdin, `token remove --token-id N`, and keyslot checks with the passphrase on stdin.
import { CvmError } from "../errors.js";
import type { LuksHeader } from "./header.js";
import type { Secret } from "../log/secret.js";
import { spawnWithStdin } from "../proc.js";
import { startWithStdin } from "./cryptsetup.js";

async function cryptsetup(args: string[], stdin: Uint8Array | undefined, what: string): Promise<{ code: number | null; stderr: string }> {
  const child = await spawnWithStdin(["cryptsetup", ...args]);
  child.end(stdin ?? new Uint8Array(0));
  const r = await child.exited;
  if (r.code !== 0 && what) throw new CvmError("LUKS", `${what}: cryptsetup exit ${r.code}: ${r.stderr.trim().split("\n").pop()?.slice(0, 200) ?? ""}`, { exit: r.code ?? -1 });
  return r;
}

export async function importToken(device: string, json: Record<string, unknown>): Promise<void> {
  await cryptsetup(["token", "import", device], new TextEncoder().encode(JSON.stringify(json)), `cannot add a token to ${device}`);
}

export async function removeToken(device: string, id: string): Promise<void> {
  await cryptsetup(["token", "remove", "--token-id", id, device], undefined, `cannot remove token ${id} from ${device}`);
}

/** True when the passphrase opens this keyslot (nothing is activated). */
export async function keyslotOpens(device: string, keyslot: string, passphrase: Secret, timeoutMs = 60_000): Promise<boolean> {
  return (await startWithStdin(["open", "--test-passphrase", "--key-slot", keyslot, "--key-file=-", device], timeoutMs).submit(passphrase)).ok;
}

/** Removes a keyslot this program just added (batch mode: no passphrase asked; never the last one). */
export async function killKeyslot(device: string, slot: string): Promise<void> {
  await cryptsetup(["luksKillSlot", "--batch-mode", device, slot], undefined, `cannot remove keyslot ${slot} from ${device}`);
}

/** The lowest keyslot number the header does not use. */
export function freeKeyslot(header: LuksHeader, device: string): string {
  const used = new Set(header.keyslots.map((k) => k.id));
  const slot = [...Array(32).keys()].find((i) => !used.has(String(i)));
  if (slot === undefined) throw new CvmError("LUKS", `${device}: no free keyslot`);
  return String(slot);
}

/** luksAddKey with both passphrases through pipes, never a file: the new one on stdin ("-"), the existing
 *  one on fd 3, re-piped by bash so cryptsetup can open it as /dev/fd/5 (Bun's extra stdio is a socketpair,
 *  which /dev/fd cannot open). The new passphrase is a 256-bit random secret's base64, so the new keyslot
 *  takes pbkdf2 at its minimal cost, as systemd-cryptenroll does for TPM-sealed keys. The caller wipes both. */
export async function addKeyslot(device: string, slot: string, existing: Secret, added: Secret): Promise<void> {
  const script = 'exec cryptsetup luksAddKey --batch-mode --key-slot "$1" --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file=/dev/fd/5 "$2" - 5< <(cat <&3)';
  const { spawn } = await import("node:child_process"); // loaded only here: its module alone costs ~4 ms of a compiled start
  const c = spawn("bash", ["-c", script, "bash", slot, device], { stdio: ["pipe", "ignore", "pipe", "pipe"], env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", LC_ALL: "C" } });
  let err = "";
  c.stderr!.on("data", (d) => (err += d));
  const done = new Promise<number | null>((resolve, reject) => {
    c.on("error", (e) => reject(new CvmError("LUKS", `cannot run cryptsetup: ${e.message}`)));
    c.on("close", resolve);
  });
  existing.use((b) => (c.stdio[3] as NodeJS.WritableStream).end(Buffer.from(b)));
  added.use((b) => c.stdin!.end(Buffer.from(b)));
  const code = await done;
  if (code !== 0) throw new CvmError("LUKS", `cryptsetup luksAddKey ${device}: exit ${code}${code === 2 ? " (the existing passphrase is wrong)" : ""}: ${err.trim().split("\n").pop() ?? ""}`);
}
