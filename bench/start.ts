// bench/start: the agent's start cost against a compiled hello-world built the same way, same run.
// Prints wall time, peak RSS and file size, and the ratios against the targets of the foundation issue.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fmt, measure, median, verdict } from "./lib.js";

const root = resolve(import.meta.dirname, "..");
const agent = join(root, "dist/cvm-unlock");
const dir = mkdtempSync(join(tmpdir(), "bench-start-"));
writeFileSync(join(dir, "hello.ts"), 'console.log("hello");\n');
const hello = join(dir, "hello");
const b = spawnSync(join(root, "node_modules/.bin/bun"), ["build", "--compile", "--bytecode", "--format=esm", "--splitting", "--minify", "--sourcemap=none", "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig", "--outfile", hello, join(dir, "hello.ts")], { encoding: "utf8" });
if (b.status !== 0) throw new Error(b.stderr);

const N = Number(process.env.BENCH_RUNS ?? 21);
measure([hello], 3);
measure([agent, "--version"], 3); // warm the page cache for both
const h = measure([hello], N);
const a = measure([agent, "--version"], N);
const hw = median(h.wallMs), aw = median(a.wallMs);
const hr = median(h.rssKiB) / 1024, ar = median(a.rssKiB) / 1024;
const hs = statSync(hello).size / 2 ** 20, as = statSync(agent).size / 2 ** 20;
rmSync(dir, { recursive: true, force: true });

console.log(`bench/start — ${N} runs each, medians; peer: compiled hello-world (same bun, same flags)`);
console.log(`  wall   hello ${fmt(hw)} ms   agent --version ${fmt(aw)} ms   ratio ${fmt(aw / hw, 2)}x   (target <= 2x: ${verdict(aw / hw <= 2)})`);
console.log(`  rss    hello ${fmt(hr)} MiB  agent ${fmt(ar)} MiB   ratio ${fmt(ar / hr, 2)}x   (target <= 64 MiB: ${verdict(ar <= 64)})`);
console.log(`  size   hello ${fmt(hs)} MiB  agent ${fmt(as)} MiB   +${fmt(as - hs, 2)} MiB   (target <= +8 MiB: ${verdict(as - hs <= 8)})`);
