// What a subcommand is, and what it gets to run with.
import type { Logger } from "../log/logger.js";
import type { Native } from "../native/types.js";
import type { RunTrace } from "../flow/run.js";
import type { FlagSpec } from "./args.js";

export interface Context {
  log: Logger;
  json: boolean;
  flags: Record<string, string | boolean>;
  positionals: string[];
  env: Readonly<Record<string, string | undefined>>;
  trace: RunTrace;
  /** Where boot steps keep their records (--run-dir, default /run/cvm-unlock). */
  runDir: string;
  native(): Promise<Native>;
  /** Writes human output (stdout); suppressed under --json. */
  print(text: string): void;
}

export type Status = "done" | "nothing-to-do" | "disabled";

export interface Result {
  status: Status;
  /** One line for humans and the log. */
  message: string;
  /** Structured output for --json (and for the human report below the message). */
  data?: Record<string, unknown>;
}

export interface Command {
  name: string;
  summary: string;
  args?: string;
  flags: FlagSpec[];
  positionals?: number;
  /** A boot step: failures write the failure record. */
  boot?: boolean;
  /** Loads the implementation on demand, so --help and --version stay cheap. */
  load(): Promise<Runner>;
}

export type Runner = (ctx: Context) => Promise<Result>;

export const JSON_FLAG: FlagSpec = { name: "json", help: "print the result as one JSON object on stdout" };
export const CONFIG_FLAGS: FlagSpec[] = [
  { name: "config", value: "PATH", help: "config file (default /etc/cvm-unlock/config.json)" },
  { name: "cmdline", value: "PATH", help: "kernel command line to apply (default /proc/cmdline)" },
];
export const RUN_DIR_FLAG: FlagSpec = { name: "run-dir", value: "DIR", help: "where the failure record goes (default /run/cvm-unlock)" };

