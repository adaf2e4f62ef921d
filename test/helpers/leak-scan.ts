// Looking for a secret where it must never be: every process's /proc/PID/cmdline and /proc/PID/environ,
// sampled while a command runs, and the files of a directory tree — in its plain form and its encodings
// (hex, base64, base64url, each without padding).
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

/** The forms a secret could leak in. `raw` is the bytes behind the passphrase, when it has some (a sealed
 *  secret whose passphrase is its base64): their hex and encodings count too. */
export function secretForms(passphrase: string, raw?: Uint8Array): string[] {
  const b = Buffer.from(passphrase);
  const forms = [passphrase, b.toString("hex"), b.toString("base64").replace(/=+$/, ""), b.toString("base64url")];
  if (raw) forms.push(Buffer.from(raw).toString("hex"), Buffer.from(raw).toString("base64url"));
  return [...new Set(forms)];
}

export interface ProcSampler {
  /** Stops sampling; what was found (pid, file, process name), how many samples, and how many of them
   *  caught a process named `watch` alive (proof that the window that matters was sampled). */
  stop(): { hits: string[]; samples: number; watched: number };
}

/** Samples /proc every `everyMs` until stopped. */
export function sampleProcs(forms: string[], watch = "cryptsetup", everyMs = 5): ProcSampler {
  const hits = new Set<string>();
  let samples = 0;
  let watched = 0;
  const once = () => {
    samples++;
    let sawWatch = false;
    for (const pid of readdirSync("/proc")) {
      if (!/^\d+$/.test(pid)) continue;
      let comm = "";
      try {
        comm = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
      } catch {
        continue;
      }
      if (comm === watch) sawWatch = true;
      for (const f of ["cmdline", "environ"]) {
        let text: string;
        try {
          text = readFileSync(`/proc/${pid}/${f}`).toString("latin1");
        } catch {
          continue; // the process ended meanwhile
        }
        for (const form of forms) if (text.includes(form)) hits.add(`/proc/${pid}/${f} (${comm})`);
      }
    }
    if (sawWatch) watched++;
  };
  const t = setInterval(once, everyMs);
  return {
    stop() {
      clearInterval(t);
      return { hits: [...hits], samples, watched };
    },
  };
}

/** Every file under `dir` (recursively) that holds one of the forms. */
export function filesHolding(dir: string, forms: string[]): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) {
        const text = readFileSync(p).toString("latin1");
        if (forms.some((f) => text.includes(f))) out.push(p);
      }
    }
  };
  walk(dir);
  return out;
}
