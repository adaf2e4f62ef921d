// bench/reliability: the chaos cases of test/chaos against the compiled agent, printed as a table of case ×
// (outcome, elapsed, attempts, the failure record's cause). The deadline is 8 s, one request 2 s.
import { CASES, DEADLINE_S, makeWorld, REQUEST_TIMEOUT_S, row, runCase } from "../test/chaos/cases.js";

const w = await makeWorld();
const t0 = performance.now();
console.log(`bench/reliability — the compiled agent through the chaos proxy to the dev broker (TLS, deadline ${DEADLINE_S} s, request timeout ${REQUEST_TIMEOUT_S} s)`);
console.log("| case | outcome | elapsed | attempts | failure record |");
console.log("|---|---|---|---|---|");
let bad = 0;
try {
  for (const c of CASES) {
    const { outcomes } = await runCase(w, c);
    const ok = outcomes.every((o) => o.exit === c.expect.exit && !o.leaked && (o.exit === 0 ? o.key === "KEY-OPENS" : o.key === "NO-KEY") && o.elapsedMs < DEADLINE_S * 1000 + 1500);
    if (!ok) bad++;
    console.log(row(c, outcomes) + (ok ? "" : " **UNEXPECTED**"));
  }
} finally {
  await w.close();
}
console.log(`${CASES.length} cases in ${((performance.now() - t0) / 1000).toFixed(0)} s; ${bad === 0 ? "every run ended by itself inside the deadline, no key from a replayed, swapped or unauthenticated answer reached the keyring" : `${bad} UNEXPECTED`}`);
process.exit(bad === 0 ? 0 : 1);
