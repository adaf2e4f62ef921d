// rd.cvm_unlock.* on the kernel command line may only make the agent stricter. The host may control the
// command line of a non-UKI boot, so nothing there can choose the broker, its CA, or the simulated TEE;
// any such key, any unknown key and any value that loosens the config is an error (exit code CONFIG).
import { CvmError } from "../errors.js";
import { cloneJson } from "../json.js";
import { LEVELS, type Level } from "../log/logger.js";
import type { Config } from "./config.js";

const PREFIX = "rd.cvm_unlock";

/** Keys that name something the command line must never change. Rejected with their own message. */
const FORBIDDEN = /^(broker|url|ca|insecure|tee|allow_simulated|simulated|keyring|key|config)([._].*)?$/;

export interface CmdlineResult {
  config: Config;
  disabled: boolean;
  applied: Record<string, string>;
  /** Words that open a shell or replace what runs (see shellEscapes); the agent releases nothing then. */
  escapes: string[];
}

/**
 * Kernel command line words with which the host could run its own code, or get a shell, once a disk is
 * unlocked: another init, another target, units masked or added, the environment of every unit, the debug
 * shell, dracut's breakpoints and shell, SysV runlevel words (rescue/emergency in the booted root). The
 * agent releases nothing when one is present, so any shell the host opens holds no unlocked disk. A UKI
 * embeds its command line (systemd-stub ignores the host's under Secure Boot); this is for every other boot.
 */
const ESCAPE_KEYS = new Set([
  "init", "rdinit", "rd.cmdline",
  "systemd.unit", "rd.systemd.unit", "systemd.setenv", "rd.systemd.setenv",
  "systemd.wants", "rd.systemd.wants", "systemd.mask", "rd.systemd.mask",
  "systemd.debug_shell", "rd.systemd.debug_shell", "systemd.confirm_spawn", "rd.systemd.confirm_spawn",
  "systemd.run", "rd.systemd.run", "rd.break", "rd.shell",
]);
/** Bare words systemd takes as a SysV runlevel: rescue or emergency mode. */
const RUNLEVEL_WORDS = new Set(["emergency", "rescue", "single", "s", "S", "1", "-s", "-b"]);

/** The escape words on a command line, each as its key (value cut: it may be long or odd). rd.shell=0 and
 *  systemd.debug_shell=0 turn the feature off and are not escapes. */
export function shellEscapes(cmdline: string): string[] {
  const out: string[] = [];
  for (const word of splitCmdline(cmdline)) {
    const eq = word.indexOf("=");
    const key = eq < 0 ? word : word.slice(0, eq);
    const value = eq < 0 ? undefined : word.slice(eq + 1);
    if (RUNLEVEL_WORDS.has(word)) out.push(word);
    else if (ESCAPE_KEYS.has(key) && !(/(^|\.)(rd\.shell|debug_shell)$/.test(key) && /^(0|no|false|off)$/i.test(value ?? ""))) out.push(key);
  }
  return out.filter((w, i) => out.indexOf(w) === i);
}

/** Splits /proc/cmdline into words, honouring double quotes as the kernel does. */
export function splitCmdline(text: string): string[] {
  const words: string[] = [];
  let cur = "";
  let quoted = false;
  let any = false;
  for (const ch of text) {
    if (ch === '"') {
      quoted = !quoted;
      any = true;
    } else if (!quoted && /\s/.test(ch)) {
      if (any) words.push(cur);
      cur = "";
      any = false;
    } else {
      cur += ch;
      any = true;
    }
  }
  if (any) words.push(cur);
  return words;
}

export function applyCmdline(base: Config, cmdline: string): CmdlineResult {
  const config = cloneJson(base);
  const applied: Record<string, string> = {};
  let disabled = false;
  const problems: string[] = [];

  for (const word of splitCmdline(cmdline)) {
    if (word !== PREFIX && !word.startsWith(PREFIX + ".") && !word.startsWith(PREFIX + "=")) continue;
    const eq = word.indexOf("=");
    const name = eq < 0 ? word : word.slice(0, eq);
    const value = eq < 0 ? "" : word.slice(eq + 1);
    const key = name === PREFIX ? "" : name.slice(PREFIX.length + 1);
    const bad = (why: string) => problems.push(`${name}=${value.slice(0, 64)}: ${why}`);

    if (FORBIDDEN.test(key)) {
      bad("may not be set from the kernel command line (only the measured config chooses the broker, its CA and the TEE)");
      continue;
    }
    switch (key) {
      case "": // rd.cvm_unlock=0 disables the agent; =1 is the default
        if (value === "0" || value === "no" || value === "off") disabled = true;
        else if (!(value === "1" || value === "yes" || value === "on")) bad("expected 0 or 1");
        break;
      case "deadline": {
        const n = /^\d{1,5}$/.test(value) ? Number(value) : NaN;
        if (!(n >= 1)) bad("expected a whole number of seconds");
        else if (n > config.deadline_s) bad(`may only shorten the deadline (config has ${config.deadline_s} s)`);
        else config.deadline_s = n;
        break;
      }
      case "log": {
        if (!(value in LEVELS)) bad(`expected one of ${Object.keys(LEVELS).join(", ")}`);
        else if (LEVELS[value as Level] < LEVELS[config.log_level]) bad(`may only raise verbosity (config has ${config.log_level})`);
        else config.log_level = value as Level;
        break;
      }
      case "debug":
        if (value !== "" && value !== "1") bad("expected no value or 1");
        else config.log_level = "debug";
        break;
      case "volumes": {
        const names = value.split(",").filter((s) => s !== "");
        const known = new Set(config.volumes.map((v) => v.name));
        const unknown = names.filter((n) => !known.has(n));
        if (names.length === 0) bad("expected a comma-separated list of configured volume names");
        else if (unknown.length > 0) bad(`may only restrict to configured volumes; unknown: ${unknown.join(", ")}`);
        else config.volumes = config.volumes.filter((v) => names.includes(v.name));
        break;
      }
      case "on_failure":
        if (value !== "poweroff" && value !== "emergency") bad("expected poweroff or emergency");
        else if (value === "emergency" && config.on_failure !== "emergency") bad("may only make failure handling stricter (emergency → poweroff)");
        else config.on_failure = value;
        break;
      default:
        bad("unknown key (known: rd.cvm_unlock, .deadline, .log, .debug, .volumes, .on_failure)");
        continue;
    }
    applied[name] = value;
  }
  if (problems.length > 0) throw new CvmError("CONFIG", `kernel command line: ${problems.join("; ")}`, { problems: problems.length });
  return { config, disabled, applied, escapes: shellEscapes(cmdline) };
}
