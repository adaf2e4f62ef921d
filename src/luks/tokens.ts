// Token writes go through cryptsetup itself (never by editing headers): `token import` with the JSON on
// stdin, `token remove --token-id N`, and keyslot checks with the passphrase on stdin.
import { CvmError } from "../errors.js";
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
