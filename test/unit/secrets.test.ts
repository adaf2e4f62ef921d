// A known passphrase pushed through every log and error path must come out nowhere.
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inspect } from "node:util";
import { describe, expect, it } from "vitest";
import { CvmError } from "../../src/errors.js";
import { makeFailureRecord, parseFailureLine, reportFailure } from "../../src/log/failure.js";
import { kmsgSink, Logger, memorySink } from "../../src/log/logger.js";
import { Secret, scrubSecrets } from "../../src/log/secret.js";

const PASS = "correct horse battery staple";

describe("secrets stay out of logs and errors", () => {
  it("every string form of a Secret is [redacted]", () => {
    const s = Secret.fromString(PASS);
    for (const form of [String(s), `${s}`, JSON.stringify({ s }), inspect(s), inspect({ nested: [s] }), s + ""]) {
      expect(form).not.toContain(PASS);
      expect(form).toContain("[redacted]");
    }
    s.wipe();
  });

  it("the logger redacts Secret fields at every level and scrubs raw text", () => {
    const s = Secret.fromString(PASS);
    const mem = memorySink();
    const log = new Logger("debug", [mem]);
    for (const level of ["error", "warn", "notice", "info", "debug"] as const) {
      log[level](`msg ${s}`, { secret: s, list: [s], obj: { s }, str: `x${s}` });
    }
    log.info(`leaked by mistake: ${s.use((b) => new TextDecoder().decode(b))}`);
    log.raw("error", `raw ${PASS} line`);
    expect(mem.lines.length).toBe(7);
    for (const l of mem.lines) expect(l).not.toContain(PASS);
    s.wipe();
    expect(scrubSecrets(PASS)).toBe(PASS); // wiped secrets are no longer tracked
  });

  it("errors, failure records, the file and the console line carry no secret", () => {
    const s = Secret.fromString(PASS);
    const err = new CvmError("LUKS", `passphrase ${s} did not open volume root`, { hint: String(s) });
    expect(err.message).not.toContain(PASS);
    const mem = memorySink();
    const kmsg: string[] = [];
    const log = new Logger("info", [mem, kmsgSink((r) => void kmsg.push(r))]);
    const dir = mkdtempSync(join(tmpdir(), "fail-"));
    const rec = makeFailureRecord(new CvmError("LUKS", `oops ${PASS}`), { version: "t", command: "unlock", step: "check", attempts: 2, timings_ms: { total: 5 } });
    const file = reportFailure(rec, dir, log)!;
    const text = readFileSync(file, "utf8");
    for (const out of [text, ...mem.lines, ...kmsg, JSON.stringify(err), inspect(err)]) expect(out).not.toContain(PASS);
    expect(kmsg[0]).toMatch(/^<3>cvm-unlock: failure \{/);
    const parsed = parseFailureLine(`junk\n[  1.0] ${kmsg[0]}`);
    expect(parsed).toMatchObject({ code: "LUKS", step: "check", attempts: 2, exit: 9, command: "unlock" });
    s.wipe();
  });

  it("a long record still reaches the console as one kmsg record that parses back; the file keeps all of it", () => {
    // kmsg rejects a write over ~1 KiB whole (EINVAL), so an over-long failure line would be lost from the serial
    // console, and a cut one would not parse for `debug last-failure --from`. Boot 24d's real reason, with a device
    // name in multi-byte characters (a host names the disk) and a run with many volumes' step timings:
    const dev = "/dev/disk/by-partlabel/données—chiffrées—de—l’invité";
    const reason = `volume root: cryptsetup could not activate ${dev} as luks-root (killed by SIGKILL, not by the agent: most likely the kernel's OOM killer (its keyslots' KDF takes up to 384 MiB; 264 MiB was available when it started) — give the guest more memory or the keyslot a smaller --pbkdf-memory)`;
    const timings_ms: Record<string, number> = { total: 5005 };
    for (let i = 0; i < 12; i++) for (const k of ["headers", "convert", "check"]) timings_ms[`${k}-${i}`] = 1234;
    const rec = makeFailureRecord(new CvmError("LUKS", reason, { volume: "root" }), { version: "0.1.0", command: "unlock", step: "check", attempts: 1, timings_ms });
    const kmsg: string[] = [];
    const log = new Logger("info", [kmsgSink((r) => void kmsg.push(r))]);
    const dir = mkdtempSync(join(tmpdir(), "fail-"));
    expect(new TextEncoder().encode(JSON.stringify(rec)).length).toBeGreaterThan(1100); // whole, it would not fit
    const file = reportFailure(rec, dir, log)!;
    expect(new TextEncoder().encode(kmsg[0]!).length).toBeLessThanOrEqual(980);
    expect(kmsg[0]!.endsWith("}\n")).toBe(true); // whole, not cut
    const parsed = parseFailureLine(`[   16.806540] ${kmsg[0]}`)!;
    expect(parsed).toMatchObject({ code: "LUKS", step: "check", exit: 9, reason, timings_ms: { total: 5005 }, details: { volume: "root" } });
    expect(Object.keys(parsed.timings_ms)).toEqual(["total"]);
    expect(JSON.parse(readFileSync(file, "utf8")).timings_ms).toEqual(timings_ms);
    // A reason that cannot fit even alone is shortened, and the line still parses.
    const huge = makeFailureRecord(new CvmError("LUKS", "—".repeat(400)), { version: "0.1.0", command: "unlock", step: "check", attempts: 1, timings_ms });
    const kmsg2: string[] = [];
    reportFailure(huge, dir, new Logger("info", [kmsgSink((r) => void kmsg2.push(r))]));
    expect(parseFailureLine(kmsg2[0]!)).toMatchObject({ code: "LUKS", reason: expect.stringMatching(/^—+…$/) });
  });

  it("wipe zeroes the bytes and forbids further use", () => {
    const bytes = new TextEncoder().encode(PASS);
    const s = Secret.adopt(bytes);
    s.wipe();
    expect(bytes.every((b) => b === 0)).toBe(true);
    expect(() => s.use(() => 1)).toThrow(/after wipe/);
  });

  it("kmsg lines are cut to one record", () => {
    const recs: string[] = [];
    kmsgSink((r) => void recs.push(r)).write(6, "x".repeat(5000));
    expect(recs[0]!.length).toBeLessThan(1000);
    expect(recs[0]!.startsWith("<6>")).toBe(true);
    // kmsg's limit is in bytes: a line of multi-byte characters is cut by its UTF-8 size, on a character boundary.
    kmsgSink((r) => void recs.push(r)).write(3, "a—".repeat(400));
    const bytes = new TextEncoder().encode(recs[1]!);
    expect(bytes.length).toBeLessThan(1000);
    expect(recs[1]!).toMatch(/^<3>(a—)+a?\.\.\.\n$/);
    kmsgSink((r) => void recs.push(r)).write(3, "a—".repeat(100));
    expect(recs[2]).toBe(`<3>${"a—".repeat(100)}\n`);
  });
});
