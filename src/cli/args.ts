// A small declared-flags parser: each command lists its flags; anything else is a usage error naming it.
import { CvmError } from "../errors.js";

export interface FlagSpec {
  name: string; // without leading dashes
  value?: string; // metavariable when the flag takes a value; absent for booleans
  help: string;
}

export interface Parsed {
  flags: Record<string, string | boolean>;
  positionals: string[];
}

export function parseArgs(argv: readonly string[], specs: readonly FlagSpec[], maxPositionals: number): Parsed {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const flags: Record<string, string | boolean> = {};
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg === "-h") {
      flags.help = true;
      continue;
    }
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      const name = arg.slice(2, eq < 0 ? undefined : eq);
      const spec = byName.get(name);
      if (!spec) throw new CvmError("USAGE", `unknown flag --${name}`, { flag: `--${name}` });
      if (spec.value === undefined) {
        if (eq >= 0) throw new CvmError("USAGE", `flag --${name} takes no value`, { flag: `--${name}` });
        flags[name] = true;
      } else {
        const v = eq >= 0 ? arg.slice(eq + 1) : argv[++i];
        if (v === undefined) throw new CvmError("USAGE", `flag --${name} needs a value (${spec.value})`, { flag: `--${name}` });
        flags[name] = v;
      }
      continue;
    }
    if (arg.startsWith("-") && arg !== "-") throw new CvmError("USAGE", `unknown flag ${arg}`, { flag: arg });
    positionals.push(arg);
  }
  if (positionals.length > maxPositionals && !flags.help) {
    throw new CvmError("USAGE", `unexpected argument ${JSON.stringify(positionals[maxPositionals])}`);
  }
  return { flags, positionals };
}

export function flagHelp(specs: readonly FlagSpec[]): string {
  const rows = specs.map((s) => [`--${s.name}${s.value ? ` ${s.value}` : ""}`, s.help] as const);
  const w = Math.max(...rows.map((r) => r[0].length));
  return rows.map(([a, b]) => `  ${a.padEnd(w)}  ${b}`).join("\n");
}
