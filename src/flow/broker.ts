// The broker path with its one deadline: every attempt starts from /auth with a fresh nonce and a fresh
// ephemeral key, attests once, and fetches every resource on that session. Failures follow the retry
// classes of kbs/errors.ts (each with its own budget), with exponential backoff and jitter, one log line
// per failed attempt saying why, and never past the deadline.
import { CvmError } from "../errors.js";
import { decryptJwe, generateTeeKey, type TeeKeyPair } from "../jose/jwe.js";
import type { Logger } from "../log/logger.js";
import type { Secret } from "../log/secret.js";
import { KbsClient, runtimeDataDigest, type Challenge } from "../kbs/client.js";
import { AttemptError, RETRY_BUDGET, type RetryClass } from "../kbs/errors.js";
import { NetworkError } from "../kbs/transport.js";
import type { EvidenceProvider } from "../tee/evidence.js";
import { backoffMs, sleep as realSleep, waitFor, type Deadline } from "./deadline.js";
import { hasRoute, isLoopback } from "./network.js";
import type { RunTrace } from "./run.js";

/** One broker: its URL and the client that speaks to it. */
export interface Broker {
  url: string;
  client: KbsClient;
}

export interface BrokerDeps {
  /** The configured brokers, tried in turn inside the one deadline: a network failure moves to the next. */
  brokers: Broker[];
  provider: EvidenceProvider;
  deadline: Deadline;
  log: Logger;
  trace: RunTrace;
  keyGen?: () => Promise<TeeKeyPair>;
  random?: () => number;
  sleep?: (ms: number) => Promise<void>;
  routeReady?: () => boolean;
}

export interface Attested {
  challenge: Challenge;
  token: string;
  key: TeeKeyPair;
}

/** Attests once and fetches every resource (path → passphrase). */
export async function fetchResources(deps: BrokerDeps, resources: string[]): Promise<Map<string, Secret>> {
  return withRetries(deps, async (broker) => {
    const a = await attestOnce(deps, broker);
    const got = new Map<string, Secret>();
    try {
      for (const path of new Set(resources)) {
        const jwe = await deps.trace.run("resource", () => broker.client.resource(a.challenge, path));
        try {
          got.set(path, await decryptJwe(jwe, a.key.privateKey));
        } catch (e) {
          if (e instanceof CvmError) throw new AttemptError(e.code, `resource ${path}: ${e.message}`, "protocol", e.details);
          throw e;
        }
      }
      return got;
    } catch (e) {
      for (const s of got.values()) s.wipe();
      throw e;
    }
  });
}

/** auth + attest with retries. For `debug broker`. */
export async function attestWithRetries(deps: BrokerDeps): Promise<Attested & { broker: string }> {
  return withRetries(deps, async (b) => ({ ...(await attestOnce(deps, b)), broker: b.url }));
}

/** A fresh key and a fresh nonce; the key is made while the /auth round trip is in flight. Every step of
 *  one attempt goes to the same broker (the session, its nonce and cookie are that broker's). */
async function attestOnce(deps: BrokerDeps, broker: Broker): Promise<Attested> {
  const [key, challenge] = await Promise.all([
    deps.trace.run("keygen", () => (deps.keyGen ?? generateTeeKey)()),
    deps.trace.run("auth", () => broker.client.auth(deps.provider.tee)),
  ]);
  const digest = runtimeDataDigest(challenge.nonce, key.publicJwk, challenge.hash);
  const evidence = await deps.trace.run("evidence", () => deps.provider.evidence(digest));
  const token = await deps.trace.run("attest", () => broker.client.attest(challenge, key.publicJwk, evidence));
  return { challenge, token, key };
}

function retryClassOf(e: unknown): { err: CvmError; retry: RetryClass | null } {
  if (e instanceof AttemptError) return { err: e, retry: e.retry };
  if (e instanceof NetworkError) return { err: e, retry: e.tls ? null : "network" };
  if (e instanceof CvmError) return { err: e, retry: null };
  return { err: new CvmError("INTERNAL", e instanceof Error ? e.message : String(e)), retry: null };
}

async function withRetries<T>(deps: BrokerDeps, attempt: (broker: Broker) => Promise<T>): Promise<T> {
  const { deadline, log, trace, brokers } = deps;
  if (brokers.length === 0) throw new CvmError("CONFIG", "no broker configured");
  const sleep = deps.sleep ?? realSleep;
  const names = brokers.map((b) => b.url).join(", ");
  if (!brokers.every((b) => isLoopback(new URL(b.url).hostname))) {
    const ready = deps.routeReady ?? (() => hasRoute());
    if (!ready()) {
      log.info("waiting for a network route to the broker", { broker: names });
      await trace.run("network", () =>
        waitFor(deadline, () => (ready() ? true : undefined), () => new CvmError("BROKER_UNREACHABLE", `no network route appeared within the deadline (broker ${names})`), 250),
      );
    }
  }
  const used: Partial<Record<RetryClass, number>> = {};
  let current = 0;
  for (let n = 1; ; n++) {
    trace.attempts = n;
    const broker = brokers[current]!;
    try {
      return await attempt(broker);
    } catch (e) {
      const { err, retry } = retryClassOf(e);
      if (retry === null) throw err;
      // A broker that cannot be reached (or timed out) costs one attempt: the next one goes to the next broker,
      // at once when there is one (no backoff between different brokers in the first round).
      if (retry === "network" && brokers.length > 1) {
        current = (current + 1) % brokers.length;
        if (current !== 0) {
          log.warn(`attempt ${n} failed at ${broker.url}: ${err.message}; trying ${brokers[current]!.url}`, { code: err.code, retry });
          continue;
        }
      }
      used[retry] = (used[retry] ?? 0) + 1;
      if (used[retry]! >= RETRY_BUDGET[retry] + 1) {
        throw new CvmError(err.code, `${err.message} (gave up after ${used[retry]} such failures)`, { ...err.details, attempts: n });
      }
      const wait = backoffMs(n, undefined, deps.random);
      if (deadline.remainingMs() <= wait) {
        throw new CvmError(err.code, `deadline reached after ${n} attempt(s); last error: ${err.message}`, { ...err.details, attempts: n });
      }
      log.warn(`attempt ${n} failed: ${err.message}; retrying in ${(wait / 1000).toFixed(1)} s`, { code: err.code, retry });
      await sleep(wait);
    }
  }
}
