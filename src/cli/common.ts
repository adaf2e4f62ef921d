// Shared by the commands that read the config: file + kernel command line → Effective.
import { readFileSync } from "node:fs";
import { applyCmdline } from "../config/cmdline.js";
import { DEFAULT_CONFIG_PATH, parseConfig, readConfigFile, resolveCa, type Effective } from "../config/config.js";
import { CvmError } from "../errors.js";
import type { Volume } from "../config/config.js";
import { waitFor, type Deadline } from "../flow/deadline.js";
import { deviceExists, devicePath } from "../luks/cryptsetup.js";
import type { Context } from "./command.js";

export function loadEffective(ctx: Context): Effective {
  const path = typeof ctx.flags.config === "string" ? ctx.flags.config : DEFAULT_CONFIG_PATH;
  const config = parseConfig(readConfigFile(path), path);
  const cmdlinePath = typeof ctx.flags.cmdline === "string" ? ctx.flags.cmdline : "/proc/cmdline";
  let cmdline = "";
  try {
    cmdline = readFileSync(cmdlinePath, "utf8");
  } catch (e) {
    if (ctx.flags.cmdline !== undefined) throw new CvmError("CONFIG", `cannot read kernel command line ${cmdlinePath} (${(e as NodeJS.ErrnoException).code})`);
  }
  const applied = applyCmdline(config, cmdline);
  const caPem = applied.config.broker?.ca !== undefined ? resolveCa(applied.config.broker.ca, path) : undefined;
  ctx.log.setLevel(applied.config.log_level);
  if (Object.keys(applied.applied).length > 0) ctx.log.info("kernel command line applied", applied.applied);
  return { config: applied.config, caPem, disabled: applied.disabled, cmdline: applied.applied, source: path };
}

/** Environment variables that change how the Bun runtime behaves (TLS checks, injected flags). */
const UNSAFE_ENV = /^(BUN_OPTIONS|BUN_CONFIG_.*|NODE_OPTIONS|NODE_TLS_REJECT_UNAUTHORIZED|NODE_EXTRA_CA_CERTS|SSL_CERT_FILE|SSL_CERT_DIR|NODE_PATH|https?_proxy|HTTPS?_PROXY|ALL_PROXY|all_proxy)$/;

/** The unlock path refuses to run when the environment could have weakened the runtime. */
export function checkEnvironment(env: Readonly<Record<string, string | undefined>>): void {
  const bad = Object.keys(env).filter((k) => UNSAFE_ENV.test(k) && env[k] !== undefined);
  if (bad.length > 0) {
    throw new CvmError("CONFIG", `refusing to run with ${bad.join(", ")} set in the environment (start the agent with a clean environment)`, { env: bad.join(",") });
  }
}

/** Waits (within the deadline) until every volume's device exists; returns name → device path. */
export async function waitForDevices(volumes: Volume[], deadline: Deadline, ctx: Context): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const v of volumes) {
    const path = devicePath(v.device);
    if (!deviceExists(path)) ctx.log.info("waiting for device", { volume: v.name, device: path });
    await waitFor(deadline, () => (deviceExists(path) ? true : undefined), () => new CvmError("LUKS", `volume ${v.name}: device ${path} did not appear within the deadline`, { volume: v.name }));
    out.set(v.name, path);
  }
  return out;
}
