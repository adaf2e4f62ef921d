// One run of a boot command: the current step, per-step timings and attempt count, for the log and the
// failure record. Steps are named so an admin can tell where a boot stopped.
export class RunTrace {
  readonly started = performance.now();
  step = "start";
  attempts = 0;
  readonly timings_ms: Record<string, number> = {};

  async run<T>(step: string, fn: () => Promise<T> | T): Promise<T> {
    this.step = step;
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      this.timings_ms[step] = Math.round((this.timings_ms[step] ?? 0) + performance.now() - t0);
      this.timings_ms.total = Math.round(performance.now() - this.started);
    }
  }

  elapsedMs(): number {
    return Math.round(performance.now() - this.started);
  }
}
