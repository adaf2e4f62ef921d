// Reliability on a hostile network (#15): the compiled agent through the chaos proxy (test/chaos), each case
// as production runs it — Bun's fetch, TLS pinned to the broker's CA, a private session keyring. For every
// case: the run ends by itself, the deadline holds (a run that keeps retrying stops by the deadline, never
// later, and at most one backoff step earlier), no key from a replayed, swapped or unauthenticated answer
// reaches the keyring (a key that is there opens that agent's own volume), the failure record names the
// cause, and no passphrase appears in the agent's output. bench/reliability prints the same cases as a table.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CASES, DEADLINE_S, makeWorld, runCase, type World } from "../chaos/cases.js";
import { requireBin } from "../helpers/bin.js";

let w: World;
beforeAll(async () => {
  requireBin();
  w = await makeWorld();
});
afterAll(async () => {
  await w?.close();
});

describe("the agent against the chaos proxy", () => {
  it.each(CASES.map((c) => [c.name, c] as const))("%s", async (_name, c) => {
    const { outcomes, proxy } = await runCase(w, c);
    for (const o of outcomes) {
      const what = `${c.name}: exit ${o.exit}, ${o.key}, ${o.elapsedMs} ms, ${o.attempts} attempts, ${o.cause}`;
      expect(o.exit, what).toBe(c.expect.exit);
      expect(o.leaked, what).toBe(false);
      if (c.expect.exit === 0) {
        expect(o.key, what).toBe("KEY-OPENS");
      } else {
        expect(o.key, what).toBe("NO-KEY");
        expect(o.cause, what).toMatch(c.expect.cause!);
      }
      // The deadline holds: never past it (a little start-up and exit slack), and a run that retries until
      // it stops at most one backoff step (≤ 4 s here) before it.
      expect(o.elapsedMs, what).toBeLessThan(DEADLINE_S * 1000 + 1500);
      if (c.expect.atDeadline) expect(o.elapsedMs, what).toBeGreaterThan(DEADLINE_S * 1000 - 4000 - 500);
      if (c.expect.attempts !== undefined) expect(o.attempts, what).toBe(c.expect.attempts);
    }
    if (c.pair) expect(proxy.stats.swapped, "answers were swapped").toBeGreaterThan(0);
    if (c.prepare) expect(proxy.stats.replayed, "answers were replayed").toBeGreaterThan(0);
  }, (DEADLINE_S + 40) * 1000);
});
