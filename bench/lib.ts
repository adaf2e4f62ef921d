// Shared measuring helpers for the benchmarks: repeated runs, medians, peak RSS via GNU time.
import { spawnSync } from "node:child_process";

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export interface RunStats {
  wallMs: number[];
  rssKiB: number[];
}

/** Runs cmd n times under /usr/bin/time; returns wall times (ms) and peak RSS (KiB). */
export function measure(cmd: string[], n: number, env: Record<string, string> = {}): RunStats {
  const out: RunStats = { wallMs: [], rssKiB: [] };
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const r = spawnSync("/usr/bin/time", ["-f", "%M", ...cmd], { encoding: "utf8", env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env } });
    const ms = performance.now() - t0;
    if (r.status !== 0) throw new Error(`${cmd.join(" ")} failed: ${r.stderr}`);
    out.wallMs.push(ms);
    out.rssKiB.push(Number(r.stderr.trim().split("\n").pop()));
  }
  return out;
}

export const fmt = (x: number, d = 1): string => x.toFixed(d);

export function verdict(ok: boolean): string {
  return ok ? "meets target" : "MISSES target";
}
