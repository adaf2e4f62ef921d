// systemd 252's own systemd-tpm2 token plugin, pointed at a swtpm by the fixtures' LD_PRELOAD shim
// (cryptsetup calls the plugin without a device; the shim maps /sys/class/tpmrm and /dev/tpmrm0 to swtpm).
import { spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "./bin.js";
import { FIXTURES } from "./fixtures.js";

let shim: { so: string; sys: string } | undefined;

function buildShim(): { so: string; sys: string } {
  if (shim) return shim;
  const dir = tempDir("shim-");
  const so = join(dir, "shim.so");
  const r = spawnSync("gcc", ["-shared", "-fPIC", "-O2", "-o", so, join(FIXTURES, "tpmrm-swtpm-shim.c"), "-ldl"], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`building the shim failed: ${r.stderr}`);
  mkdirSync(join(dir, "sys/tpmrm0"), { recursive: true });
  shim = { so, sys: join(dir, "sys") };
  return shim;
}

/** True when systemd's plugin unlocks the device through its systemd-tpm2 token (cryptsetup --token-only). */
export function pluginUnlocks(device: string, swtpmPort: number): boolean {
  const s = buildShim();
  const r = spawnSync("cryptsetup", ["open", "--test-passphrase", "--token-only", "--token-type", "systemd-tpm2", device], {
    env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", SWTPM_SHIM_PORT: String(swtpmPort), SWTPM_SHIM_SYSDIR: s.sys, LD_PRELOAD: s.so },
    encoding: "utf8",
    timeout: 30_000,
  });
  return r.status === 0;
}
