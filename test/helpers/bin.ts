// Runs the compiled agent with a clean environment, as the initramfs unit does.
import { spawn, spawnSync, type SpawnSyncReturns } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const ROOT = resolve(import.meta.dirname, "../..");
export const BIN = join(ROOT, "dist/cvm-unlock");
/** The test build: the same program with the test-only hooks (convert --fault-at). */
export const BIN_TEST = join(ROOT, "dist/cvm-unlock-test");

export function requireBin(): void {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run npm run build first`);
}

export interface RunOpts {
  env?: Record<string, string>;
  input?: string | Uint8Array;
  /** Wrap in `keyctl session -` so keyring work happens in a private session keyring. */
  session?: boolean;
  timeoutMs?: number;
  /** Another build of the agent (BIN_TEST for the power-loss hooks). */
  bin?: string;
}

export function runBin(args: string[], opts: RunOpts = {}): SpawnSyncReturns<string> & { json?: any } {
  const bin = opts.bin ?? BIN;
  const cmd = opts.session ? "keyctl" : bin;
  const argv = opts.session ? ["session", "-", bin, ...args] : args;
  const r = spawnSync(cmd, argv, {
    encoding: "utf8",
    env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", ...opts.env },
    input: opts.input,
    timeout: opts.timeoutMs ?? 30_000,
  });
  let json: any;
  if (args.includes("--json")) {
    try {
      json = JSON.parse(r.stdout.trim().split("\n").pop() ?? "");
    } catch {
      json = undefined;
    }
  }
  return Object.assign(r, { json });
}

/** runBin without blocking the test process (it may be serving the agent: a broker, a metadata service). */
export function runBinAsync(args: string[], opts: RunOpts = {}): Promise<{ status: number | null; stdout: string; stderr: string; json?: any }> {
  return new Promise((resolve) => {
    const child = spawn(opts.bin ?? BIN, args, { env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", ...opts.env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const t = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 30_000);
    child.on("close", (status) => {
      clearTimeout(t);
      let json: any;
      try {
        json = args.includes("--json") ? JSON.parse(stdout.trim().split("\n").pop() ?? "") : undefined;
      } catch {
        json = undefined;
      }
      resolve({ status, stdout, stderr, json });
    });
  });
}

export function tempDir(prefix = "cvmu-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Runs a shell script inside a private session keyring. */
export function runInSession(script: string, env: Record<string, string> = {}): SpawnSyncReturns<string> {
  return spawnSync("keyctl", ["session", "-", "sh", "-c", script], {
    encoding: "utf8",
    env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", ...env },
    timeout: 30_000,
  });
}

/** Like runInSession, but asynchronous: the test process keeps serving (an in-process broker) meanwhile. */
export function runInSessionAsync(script: string, env: Record<string, string> = {}, timeoutMs = 60_000): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn("keyctl", ["session", "-", "sh", "-c", script], { env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const t = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (status) => {
      clearTimeout(t);
      resolve({ status, stdout, stderr });
    });
  });
}
