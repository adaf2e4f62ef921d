// Shared by the commands that read the config: file + kernel command line → Effective.
import { applyCmdline } from "../config/cmdline.js";
import { DEFAULT_CONFIG_PATH, parseConfig, readConfigFile, resolveCa, resolveSrk, type Effective } from "../config/config.js";
import { CvmError } from "../errors.js";
import type { Volume } from "../config/config.js";
import { waitFor, type Deadline } from "../flow/deadline.js";
import { faultAt, type Fault } from "../flow/fault.js";
import { deviceExists, devicePath } from "../luks/cryptsetup.js";
import { readFileBytes, readFileText } from "../native/files.js";
import { pinnedStorageKey } from "../tpm/keys.js";
import type { Context } from "./command.js";

export function loadEffective(ctx: Context): Effective {
  const path = typeof ctx.flags.config === "string" ? ctx.flags.config : DEFAULT_CONFIG_PATH;
  const config = parseConfig(readConfigFile(path), path);
  const cmdlinePath = typeof ctx.flags.cmdline === "string" ? ctx.flags.cmdline : "/proc/cmdline";
  let cmdline = "";
  try {
    cmdline = readFileText(cmdlinePath);
  } catch (e) {
    if (ctx.flags.cmdline !== undefined) throw new CvmError("CONFIG", `cannot read kernel command line ${cmdlinePath} (${(e as NodeJS.ErrnoException).code})`);
  }
  const applied = applyCmdline(config, cmdline);
  const caPem = applied.config.broker?.ca !== undefined ? resolveCa(applied.config.broker.ca, path) : undefined;
  const srk = applied.config.tpm.srk !== undefined ? pinnedSrk(resolveSrk(applied.config.tpm.srk, path)) : undefined;
  ctx.log.setLevel(applied.config.log_level);
  if (Object.keys(applied.applied).length > 0) ctx.log.info("kernel command line applied", applied.applied);
  return { config: applied.config, caPem, srk, disabled: applied.disabled, cmdline: applied.applied, escapes: applied.escapes, cmdlineText: cmdline, source: path };
}

/** The bytes of a file a flag names; an unreadable one is a usage error naming the flag. */
export function readFlagFile(flag: string, path: string): Uint8Array {
  try {
    return readFileBytes(path);
  } catch (e) {
    throw new CvmError("USAGE", `${flag} ${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? "error"})`);
  }
}

/** tpm.srk must be an RSA storage key's TPM2B_PUBLIC; anything else is a config error (found at build time). */
function pinnedSrk(b: Uint8Array) {
  try {
    return pinnedStorageKey(b, "tpm.srk");
  } catch (e) {
    throw new CvmError("CONFIG", (e as Error).message);
  }
}

/** A boot step releases nothing when the kernel command line could open a shell or run the host's code
 *  (init=, rd.break, systemd.unit=, …): it fails closed, and the failure record names the words. */
export function refuseEscapes(eff: Effective): void {
  if (eff.escapes.length === 0) return;
  throw new CvmError("CONFIG", `the kernel command line has ${eff.escapes.join(", ")}, which could give the host a shell or its own code on an unlocked disk: releasing nothing`, { cmdline_keys: eff.escapes.join(",") });
}

/**
 * The only environment variables a boot step runs with: what `env -i` in its unit passes (PATH), what
 * systemd or a shell adds that changes nothing in the runtime, and the locale. Anything else (BUN_*, NODE_*,
 * proxies, CA paths, LD_*, MALLOC_*, …) may change how the runtime, TLS or libc behaves: an allowlist, since
 * a list of the bad ones is never complete.
 */
const SAFE_ENV = new Set([
  "PATH", "HOME", "PWD", "OLDPWD", "SHLVL", "_", "USER", "LOGNAME", "SHELL", "TERM", "LANG", "LANGUAGE", "TZ",
  "INVOCATION_ID", "JOURNAL_STREAM", "SYSTEMD_EXEC_PID", "NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC",
]);
const isSafeEnv = (k: string): boolean => SAFE_ENV.has(k) || /^LC_[A-Z]+$/.test(k);

/** A boot step refuses to run when its environment holds anything outside the allowlist. */
export function checkEnvironment(env: Readonly<Record<string, string | undefined>>): void {
  const bad = Object.keys(env).filter((k) => env[k] !== undefined && !isSafeEnv(k)).sort();
  if (bad.length > 0) {
    const names = bad.slice(0, 8).map((k) => k.slice(0, 40)).join(", ") + (bad.length > 8 ? ` and ${bad.length - 8} more` : "");
    throw new CvmError("CONFIG", `refusing to run with ${names} in the environment: a boot step runs with PATH and the locale only (start it with env -i PATH=…)`, { env: bad.slice(0, 8).join(",") });
  }
}

/** Before a command touches a secret: no core dump can hold it (RLIMIT_CORE 0) and the process is not
 *  dumpable (no core, no ptrace or /proc/PID/mem by other users). A failure stops the command. */
export async function noCoreDumps(ctx: Context): Promise<void> {
  try {
    (await ctx.native()).noCoreDumps();
  } catch (e) {
    throw new CvmError("INTERNAL", `cannot make the process non-dumpable before handling secrets: ${(e as Error).message}`);
  }
}

/** Waits (within the deadline) until every volume's device exists; returns name → device path. */
export async function waitForDevices(volumes: Volume[], deadline: Deadline, ctx: Context): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const v of volumes) {
    const path = devicePath(v.device);
    out.set(v.name, path);
    if (deviceExists(path)) continue; // there already (every later boot): no polling machinery
    ctx.log.info("waiting for device", { volume: v.name, device: path });
    await waitFor(deadline, () => (deviceExists(path) ? true : undefined), () => new CvmError("LUKS", `volume ${v.name}: device ${path} did not appear within the deadline`, { volume: v.name }));
  }
  return out;
}

/** Test builds only: --fault-at STEP, checked against the command's steps (flow/fault.ts). */
export function faultFlag(ctx: Context, steps: readonly string[]): Fault {
  const chosen = (typeof CVM_UNLOCK_TEST_BUILD !== "undefined" && CVM_UNLOCK_TEST_BUILD) && typeof ctx.flags["fault-at"] === "string" ? ctx.flags["fault-at"] : undefined;
  if (chosen !== undefined && !steps.includes(chosen)) throw new CvmError("USAGE", `--fault-at: expected one of ${steps.join(", ")}`);
  return faultAt(chosen);
}
