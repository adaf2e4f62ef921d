// A real unified kernel image made the way dracut --uefi makes one: systemd 252's own stub with .osrel,
// .cmdline and .linux sections added by objcopy (the "kernel" is whatever bytes the test wants).
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

export const STUB = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";

export function makeUki(dir: string, name: string, cmdline: string, linux: Uint8Array): string {
  const out = join(dir, name);
  const parts = { osrel: "ID=cvm-unlock-test\n", cmdline: `${cmdline}\n` };
  for (const [k, v] of Object.entries(parts)) writeFileSync(join(dir, `${name}.${k}`), v);
  writeFileSync(join(dir, `${name}.linux`), linux);
  const r = spawnSync("objcopy", [
    "--add-section", `.osrel=${join(dir, `${name}.osrel`)}`, "--change-section-vma", ".osrel=0x20000",
    "--add-section", `.cmdline=${join(dir, `${name}.cmdline`)}`, "--change-section-vma", ".cmdline=0x30000",
    "--add-section", `.linux=${join(dir, `${name}.linux`)}`, "--change-section-vma", ".linux=0x2000000",
    STUB, out,
  ], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`objcopy: ${r.stderr}`);
  return out;
}
