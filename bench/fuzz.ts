// bench/fuzz: the suite's fuzz properties at 1,000,000 cases (FUZZ_RUNS to change), with timings.
import { runAll } from "../test/fuzz/properties.js";

const total = Number(process.env.FUZZ_RUNS ?? 1_000_000);
// A fixed seed, so a crash found here is found again (FUZZ_SEED to explore further).
const seed = Number(process.env.FUZZ_SEED ?? 20261203);
const t0 = performance.now();
const rows = runAll(total, seed);
const ms = performance.now() - t0;
console.log(`bench/fuzz — ${total.toLocaleString("en")} cases over ${rows.length} parsers (seed ${seed}), 0 crashes or hangs (only typed errors), ${(ms / 1000).toFixed(1)} s`);
for (const r of rows) console.log(`  ${r.name.padEnd(48)} ${String(r.runs).padStart(8)} cases  ${(r.ms / 1000).toFixed(1).padStart(6)} s`);
