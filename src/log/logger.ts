// Levelled logger with two sinks: stderr (always) and /dev/kmsg with <prio> prefixes (in the initramfs,
// so lines survive on the serial console). Field values go through String(), so a Secret prints as
// [redacted]; every finished line is also scrubbed of live secrets before it leaves the process.
import { scrubSecrets } from "./secret.js";

export const LEVELS = { error: 3, warn: 4, notice: 5, info: 6, debug: 7 } as const;
export type Level = keyof typeof LEVELS;
export type Fields = Record<string, unknown>;

export interface Sink {
  write(prio: number, line: string): void;
}

/** kmsg takes a record of at most ~1 KiB in bytes (a longer write fails whole, EINVAL); longer lines are cut on a
 *  UTF-8 boundary, never split across records. */
export const KMSG_MAX = 976;

export const utf8Length = (s: string): number => new TextEncoder().encode(s).length;

function cutUtf8(line: string, max: number): string {
  if (line.length * 3 <= max) return line; // cannot be over: at most 3 UTF-8 bytes per UTF-16 unit
  const b = new TextEncoder().encode(line);
  if (b.length <= max) return line;
  let end = max - 3;
  while (end > 0 && (b[end]! & 0xc0) === 0x80) end--; // not inside a character
  return new TextDecoder().decode(b.subarray(0, end)) + "...";
}

export class Logger {
  constructor(
    private level: Level,
    private sinks: Sink[],
  ) {}

  setLevel(level: Level): void {
    this.level = level;
  }
  getLevel(): Level {
    return this.level;
  }
  addSink(sink: Sink): void {
    this.sinks.push(sink);
  }

  error(msg: string, fields?: Fields): void {
    this.log("error", msg, fields);
  }
  warn(msg: string, fields?: Fields): void {
    this.log("warn", msg, fields);
  }
  notice(msg: string, fields?: Fields): void {
    this.log("notice", msg, fields);
  }
  info(msg: string, fields?: Fields): void {
    this.log("info", msg, fields);
  }
  debug(msg: string, fields?: Fields): void {
    this.log("debug", msg, fields);
  }

  /** A line written as-is at the given level (used for the one-line failure record). */
  raw(level: Level, line: string): void {
    const prio = LEVELS[level];
    const clean = scrubSecrets(line);
    for (const s of this.sinks) s.write(prio, clean);
  }

  log(level: Level, msg: string, fields?: Fields): void {
    if (LEVELS[level] > LEVELS[this.level]) return;
    this.raw(level, `cvm-unlock: ${msg}${formatFields(fields)}`);
  }
}

export function formatFields(fields?: Fields): string {
  if (!fields) return "";
  let out = "";
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    const s = typeof v === "string" ? v : typeof v === "object" && v !== null && !isPlain(v) ? String(v) : JSON.stringify(v);
    out += ` ${k}=${/[\s"=]/.test(s) ? JSON.stringify(s) : s}`;
  }
  return out;
}

function isPlain(v: object): boolean {
  if (Array.isArray(v)) return true;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

export function stderrSink(write: (s: string) => void = (s) => console.error(s.slice(0, -1))): Sink {
  return { write: (_prio, line) => write(line + "\n") };
}

/** Writes records to an already opened kmsg file descriptor writer; failures are swallowed (kmsg is best effort). */
export function kmsgSink(writeRecord: (record: string) => void): Sink {
  return {
    write(prio, line) {
      const body = cutUtf8(line, KMSG_MAX);
      try {
        writeRecord(`<${prio}>${body}\n`);
      } catch {
        /* kmsg is a mirror of stderr; losing it must not fail the boot */
      }
    },
  };
}

/** A sink that keeps lines in memory (tests, and --json collection). */
export function memorySink(): Sink & { lines: string[] } {
  const lines: string[] = [];
  return { lines, write: (_p, line) => void lines.push(line) };
}

export function parseLevel(s: string): Level | undefined {
  return s in LEVELS ? (s as Level) : undefined;
}
