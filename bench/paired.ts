// bench/paired: `bun bench/paired.ts OUT.json RUNS name=command…` — the commands run in turn (empty
// environment, as env -i), RUNS rounds; writes each one's median wall time and its median difference to
// the first command within the same round (bench/lib.ts interleaved) to OUT.json.
import { writeFileSync } from "node:fs";
import { interleaved } from "./lib.js";

const [out, runs, ...specs] = process.argv.slice(2);
if (!out || !runs || specs.length < 2) throw new Error("usage: paired.ts OUT.json RUNS name=command name=command…");
const cmds = Object.fromEntries(specs.map((s) => [s.slice(0, s.indexOf("=")), s.slice(s.indexOf("=") + 1).split(" ").filter(Boolean)]));
const r = interleaved(cmds, Number(runs));
writeFileSync(out, JSON.stringify(Object.fromEntries(Object.entries(r).map(([k, v]) => [k, { median: v.median, pairedMedian: v.pairedMedian, runs: v.wallMs.length }]))));
