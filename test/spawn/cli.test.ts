// The compiled binary itself: help, version, exit codes, config errors, failure record, real keyring.
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { COMMANDS } from "../../src/cli/registry.js";
import { BIN, requireBin, runBin, runInSession, tempDir } from "../helpers/bin.js";

beforeAll(requireBin);

function writeConfig(dir: string, config: unknown, cmdline = "quiet"): string[] {
  writeFileSync(join(dir, "config.json"), typeof config === "string" ? config : JSON.stringify(config));
  writeFileSync(join(dir, "cmdline"), cmdline);
  return ["--config", join(dir, "config.json"), "--cmdline", join(dir, "cmdline"), "--run-dir", join(dir, "run")];
}

const CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const goodConfig = {
  broker: { url: "https://127.0.0.1:9", ca: CA },
  deadline_s: 10,
  volumes: [{ name: "root", device: "/dev/null", resource: "cvm/luks/root" }],
};

describe("compiled binary", () => {
  it("prints version, commit and Bun version", () => {
    const r = runBin(["--version"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^cvm-unlock \d+\.\d+\.\d+ \(commit [0-9a-f]{7,}(\+dirty)?, bun \d+\.\d+\.\d+\)\n$/);
  });

  it("prints help with the exit-code table; no arguments is a usage error", () => {
    const r = runBin(["--help"]);
    expect(r.status).toBe(0);
    for (const c of COMMANDS) expect(r.stdout).toContain(c.name);
    expect(r.stdout).toMatch(/4\s+ATTESTATION_REFUSED/);
    expect(runBin([]).status).toBe(2);
  });

  it.each(COMMANDS.map((c) => c.name))("%s --help works", (name) => {
    const r = runBin([...name.split(" "), "--help"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`usage: cvm-unlock ${name}`);
  });

  it("unknown flags and commands exit 2 naming them", () => {
    let r = runBin(["unlock", "--frobnicate"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("--frobnicate");
    r = runBin(["--frobnicate"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("--frobnicate");
    r = runBin(["debug", "nothing"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('unknown command "debug nothing"');
    r = runBin(["unlock", "--json", "--frobnicate"]);
    expect(r.json).toMatchObject({ ok: false, error: { code: "USAGE", exit: 2 } });
  });


  it.each([
    ["{oops", "not valid JSON"],
    [{ ...goodConfig, surprise: true }, "surprise: unknown key"],
    [{ ...goodConfig, deadline_s: 99999 }, "deadline_s: expected an integer from 1 to 3600"],
  ])("bad config %j exits 3 with the field named; only the failure record is written", (config, msg) => {
    const dir = tempDir();
    const r = runBin(["unlock", ...writeConfig(dir, config)]);
    expect(r.status).toBe(3);
    expect(r.stderr).toContain(msg);
    expect(readdirSync(join(dir, "run"))).toEqual(["last-failure.json"]);
    expect(JSON.parse(readFileSync(join(dir, "run/last-failure.json"), "utf8"))).toMatchObject({ code: "CONFIG", exit: 3 });
  });

  it("bad kernel command line exits 3; only the failure record is written", () => {
    const dir = tempDir();
    const r = runBin(["unlock", "--json", ...writeConfig(dir, goodConfig, "ro rd.cvm_unlock.broker=https://evil")]);
    expect(r.status).toBe(3);
    expect(r.json.error.message).toContain("may not be set from the kernel command line");
    expect(readdirSync(join(dir, "run"))).toEqual(["last-failure.json"]);
  });

  it("a command line that could open a shell: releases nothing, exit 3, the record names the words", () => {
    const dir = tempDir();
    const r = runBin(["unlock", "--json", ...writeConfig(dir, goodConfig, "console=ttyS0 rd.systemd.unit=emergency.target init=/bin/sh")]);
    expect(r.status).toBe(3);
    const record = JSON.parse(readFileSync(join(dir, "run/last-failure.json"), "utf8"));
    expect(record).toMatchObject({ code: "CONFIG", details: { cmdline_keys: "rd.systemd.unit,init" } });
    expect(record.reason).toMatch(/releasing nothing/);
  });

  it("rd.cvm_unlock=0 and an empty volume list are success, said as such", () => {
    const dir = tempDir();
    let r = runBin(["unlock", "--json", ...writeConfig(dir, goodConfig, "rd.cvm_unlock=0")]);
    expect(r.status).toBe(0);
    expect(r.json).toMatchObject({ ok: true, status: "disabled" });
    r = runBin(["unlock", "--json", ...writeConfig(dir, { deadline_s: 5 })]);
    expect(r.status).toBe(0);
    expect(r.json).toMatchObject({ ok: true, status: "nothing-to-do" });
    expect(r.stderr).toContain("nothing to do");
  });

  it.each(["NODE_TLS_REJECT_UNAUTHORIZED", "NODE_USE_SYSTEM_CA", "LD_BIND_NOW", "BUN_CONFIG_VERBOSE_FETCH"])("refuses to unlock with %s in its environment (an allowlist)", (name) => {
    const dir = tempDir();
    const r = runBin(["unlock", ...writeConfig(dir, goodConfig)], { env: { [name]: "1" } });
    expect(r.status).toBe(3);
    expect(r.stderr).toContain(`refusing to run with ${name} in the environment`);
  });

  it("debug config prints the effective config", () => {
    const dir = tempDir();
    const r = runBin(["debug", "config", "--json", ...writeConfig(dir, goodConfig, "rd.cvm_unlock.deadline=4").slice(0, 4)]);
    expect(r.status).toBe(0);
    expect(r.json.config.deadline_s).toBe(4);
    expect(r.json.cmdline).toEqual({ "rd.cvm_unlock.deadline": "4" });
  });

  it("debug config --crypttab gives tpm.tokens volumes tpm2-device=auto and a second try, nothing otherwise", () => {
    const dir = tempDir();
    const vtpm = {
      ...goodConfig,
      keyring: { handoff: "ask-password" },
      tpm: { tokens: true },
      volumes: [{ name: "root", device: "UUID=5e1f", resource: "cvm/luks/root" }, { name: "data", device: "/dev/vdb" }],
    };
    const r = runBin(["debug", "config", "--crypttab", ...writeConfig(dir, vtpm).slice(0, 4)]);
    expect(r.status).toBe(0);
    expect(r.stdout.trim().split("\n")).toEqual(["luks-5e1f UUID=5e1f none tpm2-device=auto,tries=2,timeout=10s", "data /dev/vdb none tpm2-device=auto,tries=2,timeout=10s"]);
    const none = runBin(["debug", "config", "--crypttab", "--json", ...writeConfig(dir, goodConfig).slice(0, 4)]);
    expect(none.json).toMatchObject({ status: "nothing-to-do", crypttab: [] });
  });

  it("debug detect says none on this machine", () => {
    const r = runBin(["debug", "detect", "--json"]);
    expect(r.status).toBe(0);
    expect(r.json.tee).toBe("none");
  });
});

describe("real kernel keyring (private session keyring)", () => {
  it("round-trips a key through the session keyring", () => {
    const r = runBin(["debug", "selfcheck", "--json"], { session: true });
    expect(r.status).toBe(0);
    expect(r.json).toMatchObject({ ok: true, native: "libc", keyring: { keyring: "@s", perm: "3f010000" } });
    // open/read/write/close and getrandom through bun:ffi, and errno decoding
    expect(r.json.syscalls).toMatchObject({ getrandom: 16, write: 3, open_missing: "ENOENT" });
    expect(r.json.syscalls.read_pid).toBeGreaterThan(1);
  });

  it("reads back a key systemd-style: count and lengths only", () => {
    const r = runInSession(`printf 'aaaa\\0bbbbbb' | keyctl padd user cryptsetup @s >/dev/null && exec ${BIN} debug keyring --keyring @s --json`);
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ present: true, count: 2, lengths: [4, 6], description: "cryptsetup" });
    expect(r.stdout).not.toContain("bbbbbb");
  });

  it("reports a missing key as nothing to do", () => {
    const r = runBin(["debug", "keyring", "--keyring", "@s", "--json"], { session: true });
    expect(r.status).toBe(0);
    expect(r.json).toMatchObject({ status: "nothing-to-do", present: false });
  });
});

describe("debug last-failure", () => {
  it("reads the record a failed unlock wrote, and the same line from a console log", () => {
    const dir = tempDir();
    const args = writeConfig(dir, { ...goodConfig, broker: { url: "http://127.0.0.1:9", insecure_http: true }, deadline_s: 1 });
    const fail = runBin(["unlock", ...args]);
    expect(fail.status).not.toBe(0);
    let r = runBin(["debug", "last-failure", "--run-dir", join(dir, "run"), "--json"]);
    expect(r.status).toBe(0);
    expect(r.json).toMatchObject({ status: "done", record: { command: "unlock", exit: fail.status } });
    const line = fail.stderr.split("\n").find((l) => l.startsWith("cvm-unlock: failure {"))!;
    writeFileSync(join(dir, "serial.log"), `[   12.3] systemd[1]: Starting cvm-unlock...\n[   14.1] ${line}\n[   15.0] reboot: Power down\n`);
    r = runBin(["debug", "last-failure", "--from", join(dir, "serial.log"), "--json"]);
    expect(r.json.record).toEqual(JSON.parse(line.slice("cvm-unlock: failure ".length)));
    r = runBin(["debug", "last-failure", "--run-dir", join(dir, "nothing-here"), "--json"]);
    expect(r.status).toBe(0);
    expect(r.json.status).toBe("nothing-to-do");
  });
});
