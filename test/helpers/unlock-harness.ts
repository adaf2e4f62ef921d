// Runs the unlock command in-process with the fake keyring and a recorded log, so broker behaviours can
// be tested quickly (backoff sleeps are shortened, never skipped: the deadline still counts real time).
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Context, Runner } from "../../src/cli/command.js";
import { makeUnlock } from "../../src/cli/unlock.js";
import { asCvmError, type CvmError } from "../../src/errors.js";
import { RunTrace } from "../../src/flow/run.js";
import { Logger, memorySink } from "../../src/log/logger.js";
import { FakeNative } from "../../src/native/fake.js";
import { tempDir } from "./bin.js";

export interface HarnessResult {
  ok: boolean;
  error?: CvmError;
  data?: Record<string, unknown>;
  status?: string;
  lines: string[];
  native: FakeNative;
  /** The run directory (failure and expected-mapping records). */
  runDir: string;
  attempts: number;
  elapsedMs: number;
}

export async function runUnlock(config: Record<string, unknown>, opts: { sleepScale?: number; cmdline?: string } = {}): Promise<HarnessResult> {
  const scale = opts.sleepScale ?? 0.02;
  return runUnlockWith(makeUnlock({ broker: { sleep: (ms) => new Promise((r) => setTimeout(r, ms * scale)) } }), config, opts);
}

/** Runs a given unlock runner (custom seams) against a config. */
export async function runUnlockWith(run: Runner, config: Record<string, unknown>, opts: { cmdline?: string } = {}): Promise<HarnessResult> {
  const dir = tempDir("unl-");
  writeFileSync(join(dir, "config.json"), JSON.stringify(config));
  writeFileSync(join(dir, "cmdline"), opts.cmdline ?? "");
  const mem = memorySink();
  const native = new FakeNative();
  const trace = new RunTrace();
  const ctx: Context = {
    log: new Logger("debug", [mem]),
    json: true,
    flags: { config: join(dir, "config.json"), cmdline: join(dir, "cmdline") },
    positionals: [],
    env: {},
    trace,
    runDir: join(dir, "run"),
    native: async () => native,
    print: () => {},
  };
  const t0 = performance.now();
  try {
    const r = await run(ctx);
    return { ok: true, data: r.data, status: r.status, lines: mem.lines, native, runDir: join(dir, "run"), attempts: trace.attempts, elapsedMs: performance.now() - t0 };
  } catch (e) {
    return { ok: false, error: asCvmError(e), lines: mem.lines, native, runDir: join(dir, "run"), attempts: trace.attempts, elapsedMs: performance.now() - t0 };
  }
}
