// The doors a hostile host has at boot that are closed in the agent itself: the kernel command line words
// that open a shell, the environment the runtime starts with, and what a passphrase may hold.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { checkEnvironment, refuseEscapes } from "../../src/cli/common.js";
import { applyCmdline, shellEscapes } from "../../src/config/cmdline.js";
import { parseConfig, type Effective } from "../../src/config/config.js";
import { CvmError } from "../../src/errors.js";
import { Deadline } from "../../src/flow/deadline.js";
import { answerAskPassword } from "../../src/keyring/askpass.js";
import { Logger } from "../../src/log/logger.js";
import { Secret } from "../../src/log/secret.js";
import { askFile } from "../helpers/askpass.js";
import { tempDir } from "../helpers/bin.js";
import { thrown } from "../helpers/errors.js";

const config = parseConfig({ volumes: [{ name: "root", device: "/dev/vda2" }] }, "t");

describe("kernel command line escapes", () => {
  it.each([
    ["init=/bin/sh", "init"],
    ["rdinit=/bin/sh", "rdinit"],
    ["systemd.setenv=BUN_OPTIONS=--inspect", "systemd.setenv"],
    ["rd.systemd.unit=emergency.target", "rd.systemd.unit"],
    ["systemd.unit=rescue.target", "systemd.unit"],
    ["systemd.wants=debug-shell.service", "systemd.wants"],
    ["systemd.mask=cvm-unlock.service", "systemd.mask"],
    ["systemd.debug_shell", "systemd.debug_shell"],
    ["rd.systemd.debug_shell=1", "rd.systemd.debug_shell"],
    ["rd.break", "rd.break"],
    ["rd.break=pre-mount", "rd.break"],
    ["rd.shell", "rd.shell"],
    ["rd.shell=1", "rd.shell"],
    ["rd.cmdline=ask", "rd.cmdline"],
    ["single", "single"],
    ["emergency", "emergency"],
    ["1", "1"],
  ])("%s is an escape", (word, key) => {
    expect(shellEscapes(`console=ttyS0 root=/dev/mapper/x ${word} quiet`)).toEqual([key]);
    const eff: Effective = { config, disabled: false, cmdline: {}, escapes: applyCmdline(config, word).escapes, source: "t" };
    const err = thrown(() => refuseEscapes(eff));
    expect(err).toBeInstanceOf(CvmError);
    expect((err as CvmError).code).toBe("CONFIG");
    expect((err as CvmError).details.cmdline_keys).toBe(key);
    expect((err as CvmError).message).toMatch(/releasing nothing/);
  });

  it("leaves ordinary boots, and the words that turn a shell off, alone", () => {
    const ordinary = 'console=ttyS0 panic=1 rd.luks.uuid=1 root=/dev/mapper/luks-1 rw rd.luks.options=1=tries=1 ip=dhcp rd.neednet=1 systemd.log_level=debug rd.shell=0 systemd.debug_shell=0 initrd=\\x.img "init_on_free=1" rd.emergency=poweroff';
    expect(shellEscapes(ordinary)).toEqual([]);
    expect(() => refuseEscapes({ config, disabled: false, cmdline: {}, escapes: shellEscapes(ordinary), source: "t" })).not.toThrow();
  });

  it("names every escape once", () => {
    expect(shellEscapes("rd.break rd.shell=1 rd.break=cmdline init=/bin/sh")).toEqual(["rd.break", "rd.shell", "init"]);
  });
});

describe("environment allowlist", () => {
  it("lets a unit's and a shell's harmless variables through", () => {
    expect(() => checkEnvironment({ PATH: "/usr/bin", INVOCATION_ID: "x", JOURNAL_STREAM: "8:1", LANG: "C.UTF-8", LC_ALL: "C", PWD: "/", SHLVL: "1", _: "/usr/bin/cvm-unlock", TERM: "linux" })).not.toThrow();
  });
  it.each(["BUN_INSPECT", "BUN_INSPECT_CONNECT_TO", "BUN_JSC_useJIT", "NODE_USE_SYSTEM_CA", "BUN_OPTIONS", "NODE_TLS_REJECT_UNAUTHORIZED", "LD_PRELOAD", "MALLOC_CHECK_", "SSL_CERT_FILE", "https_proxy", "SOMETHING_NEW"])("refuses %s", (name) => {
    const err = thrown(() => checkEnvironment({ PATH: "/usr/bin", [name]: "1" }));
    expect((err as CvmError).code).toBe("CONFIG");
    expect((err as CvmError).details.env).toBe(name);
  });
});

describe("ask-password refuses what the reply cannot carry", () => {
  it.each([
    ["a newline", "pass\nword"],
    ["a carriage return", "pass\rword"],
    ["a NUL byte", "pass\0word"],
  ])("%s: typed LUKS error, no reply sent", async (_what, pass) => {
    const dir = tempDir("ask-");
    writeFileSync(join(dir, "ask.1"), askFile(join(dir, "sck.root"), "cryptsetup:/dev/vda2"));
    // A reply binary that does not exist: reaching it would be a different (spawn) error.
    const r = answerAskPassword({ dir, reply: join(dir, "no-such-reply"), volumes: [{ name: "root", match: ["/dev/vda2"], passphrase: Secret.fromString(pass) }], deadline: new Deadline(5), log: new Logger("info", []), pollMs: 20 });
    await expect(r).rejects.toMatchObject({ code: "LUKS", message: expect.stringMatching(/volume root: the passphrase contains/) });
  });
});

describe("no core dumps", () => {
  it("unlock makes itself non-dumpable before anything else touches the kernel", async () => {
    const { runUnlock } = await import("../helpers/unlock-harness.js");
    const r = await runUnlock({ volumes: [] });
    expect(r.ok).toBe(true);
    expect(r.native.calls.slice(0, 2)).toEqual(["setrlimit", "prctl_set_dumpable"]);
    expect(r.native.dumpable()).toBe(0);
  });
});
