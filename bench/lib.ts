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

/** Runs the commands in turn, n rounds (after `warmup` rounds not counted), so drift on a shared machine
 *  hits each alike; returns each command's wall times and, per command, its median difference to the first
 *  command measured in the same round (the paired figure a target "over a bare start" is judged by). */
export function interleaved(cmds: Record<string, string[]>, n: number, warmup = 3): Record<string, { wallMs: number[]; median: number; pairedMedian: number }> {
  const names = Object.keys(cmds);
  const wall: Record<string, number[]> = Object.fromEntries(names.map((k) => [k, []]));
  for (let i = 0; i < warmup + n; i++) {
    for (const k of names) {
      const [cmd, ...args] = cmds[k]!;
      const t0 = performance.now();
      const r = spawnSync(cmd!, args, { env: {}, stdio: "ignore" });
      const ms = performance.now() - t0;
      if (r.status !== 0) throw new Error(`${k} (${cmds[k]!.join(" ")}) exited ${r.status ?? r.signal}`);
      if (i >= warmup) wall[k]!.push(ms);
    }
  }
  const first = wall[names[0]!]!;
  return Object.fromEntries(names.map((k) => [k, { wallMs: wall[k]!, median: median(wall[k]!), pairedMedian: median(wall[k]!.map((x, i) => x - first[i]!)) }]));
}
