// The reliability cases: the compiled agent, as production runs it (Bun's fetch, TLS pinned to the broker's
// CA, a private session keyring), against the dev broker behind the chaos proxy. Each case says what the proxy
// does and what must come of it: the exit code, the cause the failure record names, whether a key may reach
// the keyring, and whether the run ends at the deadline. Shared by test/spawn/chaos.test.ts (which asserts)
// and bench/reliability.ts (which prints the table).
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { issueServerCert, makeCa, type TestPki } from "../../tools/dev-broker/ca.js";
import { startBroker, type RunningBroker } from "../../tools/dev-broker/server.js";
import { memoryStore } from "../../tools/dev-broker/store.js";
import { BIN, runInSessionAsync, tempDir } from "../helpers/bin.js";
import { makeLuksImage } from "../helpers/luks.js";
import { startChaos, type Action, type ChaosProxy, type PlanContext } from "./proxy.js";

export const DEADLINE_S = 8;
export const REQUEST_TIMEOUT_S = 2;
const PASS = ["chaos-passphrase-one", "chaos-passphrase-two"];

export interface Outcome {
  exit: number | null;
  /** KEY-OPENS: the key in the keyring opens this agent's volume; NO-KEY; KEY-WRONG. */
  key: "KEY-OPENS" | "NO-KEY" | "KEY-WRONG";
  elapsedMs: number;
  attempts: number;
  /** The failure record's code and reason (empty on success). */
  cause: string;
  /** The passphrase (or part of it) appeared on the agent's stdout or stderr. */
  leaked: boolean;
}

export interface Expect {
  exit: number;
  /** What the failure record must say (failures only). */
  cause?: RegExp;
  /** The run lasts until the deadline (a fault that never ends and is retried). */
  atDeadline?: boolean;
  attempts?: number | [number, number];
}

export interface Case {
  name: string;
  /** What the proxy does; `mode` is "prepare" during the case's preparation run, else "run". */
  plan: (c: PlanContext, mode: "prepare" | "run") => Action;
  /** A cert other than the proxy's valid one for 127.0.0.1 (another CA, another host name). */
  cert?: "other-ca" | "other-host";
  /** Run one clean agent first (its answers are what a replay replays). */
  prepare?: boolean;
  /** Two agents at once, on two volumes. */
  pair?: boolean;
  expect: Expect;
}

const pass: Action = { kind: "pass" };
const once = (step: PlanContext["step"], a: Action) => (c: PlanContext): Action => (c.step === step && c.n === 1 ? a : pass);
const always = (step: PlanContext["step"], a: Action) => (c: PlanContext): Action => (c.step === step ? a : pass);

export const CASES: Case[] = [
  { name: "control: everything passes", plan: () => pass, expect: { exit: 0, attempts: 1 } },
  // Transient faults: the next attempt gets through and unlocks.
  { name: "reset during the TLS handshake (once)", plan: once("connect", { kind: "reset-handshake" }), expect: { exit: 0, attempts: 2 } },
  { name: "reset after the request (/attest, once)", plan: once("attest", { kind: "reset-after-request" }), expect: { exit: 0, attempts: 2 } },
  { name: "reset mid-body (/resource, once)", plan: once("resource", { kind: "reset-mid-body" }), expect: { exit: 0, attempts: 2 } },
  { name: "truncated body (/resource, once)", plan: once("resource", { kind: "truncate-body" }), expect: { exit: 0, attempts: 2 } },
  { name: "slow drip, 1 byte/s, in the headers (/auth, once)", plan: once("auth", { kind: "drip", where: "headers" }), expect: { exit: 0, attempts: 2 } },
  { name: "slow drip, 1 byte/s, in the body (/resource, once)", plan: once("resource", { kind: "drip", where: "body" }), expect: { exit: 0, attempts: 2 } },
  { name: "stalled: accepted, never answered (/auth, once)", plan: once("auth", { kind: "stall" }), expect: { exit: 0, attempts: 2 } },
  { name: "408 at /auth (once)", plan: once("auth", { kind: "status", status: 408 }), expect: { exit: 0, attempts: 2 } },
  { name: "429 at /attest (once)", plan: once("attest", { kind: "status", status: 429 }), expect: { exit: 0, attempts: 2 } },
  // Faults that never end: fail closed, at once or at the deadline.
  { name: "reset during every TLS handshake", plan: always("connect", { kind: "reset-handshake" }), expect: { exit: 5, cause: /BROKER_UNREACHABLE.*deadline reached/, atDeadline: true } },
  { name: "slow drip in every answer's headers", plan: always("auth", { kind: "drip", where: "headers" }), expect: { exit: 5, cause: /BROKER_UNREACHABLE.*no answer within/, atDeadline: true } },
  { name: "429 on every /auth", plan: always("auth", { kind: "status", status: 429 }), expect: { exit: 5, cause: /BROKER_UNREACHABLE.*HTTP 429/, atDeadline: true } },
  { name: "307 at /auth", plan: always("auth", { kind: "status", status: 307, headers: { location: "https://127.0.0.1:1/kbs/v0/auth" } }), expect: { exit: 6, cause: /BROKER_PROTOCOL.*redirect \(307\)/, attempts: 1 } },
  { name: "302 redirect at /attest", plan: always("attest", { kind: "status", status: 302, headers: { location: "https://example.invalid/" } }), expect: { exit: 6, cause: /BROKER_PROTOCOL.*redirect \(302\)/, attempts: 1 } },
  { name: "garbage at /attest", plan: always("attest", { kind: "garbage" }), expect: { exit: 6, cause: /BROKER_PROTOCOL.*attest: answer is not JSON.*gave up after 4/, attempts: 4 } },
  { name: "garbage at /resource", plan: always("resource", { kind: "garbage" }), expect: { exit: 6, cause: /BROKER_PROTOCOL.*resource: answer is not JSON.*gave up after 4/, attempts: 4 } },
  { name: "a body over the limit without Content-Length (/resource)", plan: always("resource", { kind: "huge-no-length" }), expect: { exit: 6, cause: /BROKER_PROTOCOL.*over the 262144-byte limit/, attempts: 4 } },
  { name: "a certificate from another CA", plan: () => pass, cert: "other-ca", expect: { exit: 5, cause: /BROKER_UNREACHABLE.*TLS verification failed/, attempts: 1 } },
  { name: "a certificate for another host name", plan: () => pass, cert: "other-host", expect: { exit: 5, cause: /BROKER_UNREACHABLE.*TLS verification failed/, attempts: 1 } },
  // Answers from elsewhere: nothing they carry may reach the keyring.
  { name: "replay of an earlier session's /auth answer", prepare: true, plan: (c, mode) => (mode === "run" && c.step === "auth" ? { kind: "replay" } : pass), expect: { exit: 6, cause: /BROKER_PROTOCOL.*resource .*decryption failed.*gave up after 4/, attempts: 4 } },
  { name: "replay of an earlier session's /attest answer", prepare: true, plan: (c, mode) => (mode === "run" && c.step === "attest" ? { kind: "replay" } : pass), expect: { exit: 6, cause: /BROKER_PROTOCOL.*TokenNotFound.*gave up after 3/, attempts: 3 } },
  { name: "/resource answers swapped between two agents", pair: true, plan: always("resource", { kind: "swap" }), expect: { exit: 6, cause: /BROKER_PROTOCOL.*decryption failed.*gave up after 4/, attempts: 4 } },
];

export interface World {
  dir: string;
  pki: TestPki;
  otherPki: TestPki;
  broker: RunningBroker;
  images: string[];
  certs: { good: { cert: string; key: string }; otherCa: { cert: string; key: string }; otherHost: { cert: string; key: string } };
  close(): Promise<void>;
}

export async function makeWorld(): Promise<World> {
  const dir = tempDir("chaos-");
  const pki = makeCa(join(dir, "ca"));
  const otherPki = makeCa(join(dir, "other-ca"), "some other CA");
  const images = PASS.map((p, i) => makeLuksImage(p, dir, `disk${i}.img`));
  const broker = await startBroker({ store: memoryStore({ "cvm/luks/one": PASS[0]!, "cvm/luks/two": PASS[1]! }), policy: { allowTees: ["sample"], denyAll: false }, dev: true });
  const certs = { good: issueServerCert(pki, "chaos", ["127.0.0.1"]), otherCa: issueServerCert(otherPki, "chaos-other-ca", ["127.0.0.1"]), otherHost: issueServerCert(pki, "chaos-other-host", ["broker.example"]) };
  return { dir, pki, otherPki, broker, images, certs, close: () => broker.close() };
}

/** One compiled agent through the proxy, in its own session keyring; volume `which` (0 or 1). */
async function agent(w: World, url: string, which: number): Promise<Outcome> {
  const cfg = join(tempDir("chaos-cfg-"), "config.json");
  writeFileSync(cfg, JSON.stringify({
    broker: { url, ca: w.pki.caPath, request_timeout_s: REQUEST_TIMEOUT_S },
    tee: { allow_simulated: true },
    deadline_s: DEADLINE_S,
    volumes: [{ name: "root", device: w.images[which], resource: which === 0 ? "cvm/luks/one" : "cvm/luks/two" }],
    keyring: { keyring: "@s" },
  }));
  const img = w.images[which];
  const script = `t0=$(date +%s%N); ${BIN} unlock --json --config ${cfg} --cmdline /dev/null --run-dir ${w.dir}/run-$$; rc=$?; t1=$(date +%s%N); echo ELAPSED_MS=$(( (t1 - t0) / 1000000 ));
if k=$(keyctl search @s user cryptsetup 2>/dev/null); then if keyctl pipe $k | cryptsetup open --test-passphrase --key-file=- ${img} 2>/dev/null; then echo KEY-OPENS; else echo KEY-WRONG; fi; else echo NO-KEY; fi; exit $rc`;
  const r = await runInSessionAsync(script, {}, (DEADLINE_S + 20) * 1000);
  const elapsedMs = Number(/ELAPSED_MS=(\d+)/.exec(r.stdout)?.[1] ?? NaN);
  const key = (/KEY-OPENS|NO-KEY|KEY-WRONG/.exec(r.stdout)?.[0] ?? "NO-KEY") as Outcome["key"];
  const json = r.stdout.split("\n").find((l) => l.startsWith("{"));
  const rec = /cvm-unlock: failure (\{.*\})/.exec(r.stderr)?.[1];
  const record = rec ? JSON.parse(rec) : undefined;
  const attempts = record?.attempts ?? (json ? JSON.parse(json).attempts : 0);
  const all = r.stdout + r.stderr;
  return { exit: r.status, key, elapsedMs, attempts, cause: record ? `${record.code}: ${record.reason}` : "", leaked: PASS.some((p) => all.includes(p) || all.includes(p.slice(0, 12))) };
}

/** Runs one case: a proxy with its plan (and cert), the preparation run if any, then the agent(s). */
export async function runCase(w: World, c: Case): Promise<{ outcomes: Outcome[]; proxy: ChaosProxy }> {
  let mode: "prepare" | "run" = c.prepare ? "prepare" : "run";
  const tls = c.cert === "other-ca" ? w.certs.otherCa : c.cert === "other-host" ? w.certs.otherHost : w.certs.good;
  const proxy = await startChaos({ upstream: w.broker.url, tls, plan: (ctx) => c.plan(ctx, mode) });
  try {
    if (c.prepare) {
      const p = await agent(w, proxy.url, 0);
      if (p.exit !== 0) throw new Error(`${c.name}: the preparation run failed (${p.cause})`);
      mode = "run";
    }
    const outcomes = c.pair ? await Promise.all([agent(w, proxy.url, 0), agent(w, proxy.url, 1)]) : [await agent(w, proxy.url, 0)];
    return { outcomes, proxy };
  } finally {
    await proxy.close();
  }
}

/** The table row of a case: what happened, how long, how many attempts. */
export function row(c: Case, outcomes: Outcome[]): string {
  const o = outcomes.map((x) => `${x.exit === 0 ? `unlocked (${x.key})` : `exit ${x.exit}, ${x.key}`}`).join(" / ");
  const t = outcomes.map((x) => (x.elapsedMs / 1000).toFixed(1)).join(" / ");
  const a = outcomes.map((x) => x.attempts).join(" / ");
  return `| ${c.name} | ${o} | ${t} s | ${a} | ${outcomes.map((x) => x.cause.replace(/\|/g, "/").slice(0, 90)).filter(Boolean).join(" / ") || "—"} |`;
}
