// One deadline for a whole boot step, and the backoff between attempts inside it.
import { CvmError } from "../errors.js";

export class Deadline {
  readonly at: number;
  constructor(
    seconds: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.at = now() + seconds * 1000;
  }
  remainingMs(): number {
    return Math.max(0, this.at - this.now());
  }
  expired(): boolean {
    return this.remainingMs() <= 0;
  }
  /** Per-request timeout: at most `capMs`, never past the deadline. */
  timeoutMs(capMs = 30_000): number {
    return Math.max(1, Math.floor(Math.min(capMs, this.remainingMs())));
  }
}

export interface Backoff {
  baseMs: number;
  capMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { baseMs: 500, capMs: 10_000 };

/** Exponential backoff with jitter: attempt 1 → base, doubling to the cap, each scaled by 0.5–1.0. */
export function backoffMs(attempt: number, b: Backoff = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const exp = Math.min(b.capMs, b.baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exp * (0.5 + 0.5 * random()));
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `ready` until it returns a value or the deadline passes (then throws `onTimeout()`). */
export async function waitFor<T>(deadline: Deadline, ready: () => T | undefined | Promise<T | undefined>, onTimeout: () => CvmError, pollMs = 200): Promise<T> {
  for (;;) {
    const v = await ready();
    if (v !== undefined) return v;
    if (deadline.expired()) throw onTimeout();
    await sleep(Math.min(pollMs, deadline.remainingMs()));
  }
}
