// update and finalize on the real parts: swtpm at boot 1 of the reseal vector (its real event log), a token
// enrolled by systemd 252's systemd-cryptenroll to PCR 4+7, a GPT disk made by sfdisk whose ESP partition
// the boot entry must name, a directory standing in for efivarfs (the firmware side: Boot####, BootOrder,
// BootNext, BootCurrent files in efivarfs's format). "Boot 2" is
// a fresh swtpm extended with the same log but the UKI's measurement replaced by the new UKI's (systemd's stub
// + objcopy, as dracut makes one) Authenticode hash as pesign (an independent implementation) computes it: systemd's own plugin must unlock from the new
// token there, and finalize must make the trial entry the default and drop the token that no longer matches.
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { hex } from "../../src/bytes.js";
import { decodeLoadOption, fileOf, filePathNode, hardDriveNode, LOAD_OPTION_ACTIVE } from "../../src/efi/loadoption.js";
import { EfiVars } from "../../src/efi/vars.js";
import { parseLuks2 } from "../../src/luks/header.js";
import { authenticode } from "../../src/measured-boot/authenticode.js";
import { BIN, BIN_TEST, ROOT, requireBin, runBin, tempDir } from "../helpers/bin.js";
import { bootedSwtpm, enrolled } from "../helpers/booted.js";
import { FIXTURES } from "../helpers/fixtures.js";
import { pluginUnlocks } from "../helpers/plugin.js";
import type { Swtpm } from "../helpers/swtpm.js";
import { makeUki } from "../helpers/uki.js";
import { VECTORS, vjson } from "../helpers/vectors.js";

const acc = vjson("pcr/reseal-acceptance.json");
const LOG1 = join(VECTORS, "pcr/shim-uki-secureboot/eventlog-uki1.bin");
const UKI_EVENT = acc.replaced_events[0].index as number; // the UKI's EV_EFI_BOOT_SERVICES_APPLICATION in boot 1
const SRK = join(FIXTURES, "tpm2-import/srk.pub");
const SHIM = join(VECTORS, "pcr/binaries/shimx64-snakeoil.efi");
const NEW_PE = makeUki(tempDir("uki-"), "uki-2.efi", "console=ttyS0 cvm-unlock-test=2", new Uint8Array(readFileSync(SHIM)));
const ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";

let sw: Swtpm | undefined;
afterEach(async () => {
  await sw?.stop();
  sw = undefined;
});
beforeAll(requireBin);

const tpm2Tokens = (img: string) => parseLuks2(new Uint8Array(readFileSync(img))).tokens.filter((t) => t.type === "systemd-tpm2");

/** A machine after its first boot from Boot0000 (the removable-media path): disk, ESP, efivars, new UKI. */
function machine() {
  const dir = tempDir("update-");
  const disk = join(dir, "disk.img");
  spawnSync("truncate", ["-s", "48M", disk]);
  const r = spawnSync("sfdisk", ["-q", disk], { input: `label: gpt\nstart=2048, size=65536, type=${ESP_TYPE}, name=ESP\n`, encoding: "utf8" });
  expect(r.status, r.stderr).toBe(0);
  const part = JSON.parse(spawnSync("sfdisk", ["--json", disk], { encoding: "utf8" }).stdout).partitiontable.partitions[0];
  const esp = join(dir, "esp");
  mkdirSync(join(esp, "EFI/BOOT"), { recursive: true });
  const vars = new EfiVars(join(dir, "efivars"));
  mkdirSync(vars.dir);
  vars.setBootEntry(0, { attributes: LOAD_OPTION_ACTIVE, description: "UEFI QEMU HARDDISK", path: [filePathNode("EFI/BOOT/BOOTX64.EFI")], optional: new Uint8Array(0) });
  vars.setBootOrder([0]);
  vars.set("BootCurrent", Uint8Array.from([0, 0]), 0x6); // BS|RT, as firmware sets it
  const uki = join(dir, "uki-2.efi");
  copyFileSync(NEW_PE, uki);
  return { dir, disk, part, esp, vars, uki, trial: join(dir, "var/trial.json") };
}
type Machine = ReturnType<typeof machine>;

const updateArgs = (m: Machine, img: string, port: Swtpm) => ["update", "--json", "--uki", m.uki, "--esp", m.esp, "--esp-disk", m.disk, "--esp-partition", "1", "--efivars", m.vars.dir, "--trial-record", m.trial, "--device", img, "--tpm-device", port.spec, "--eventlog", LOG1, "--srk", SRK];
const finalizeArgs = (m: Machine, img: string, port: Swtpm) => ["finalize", "--json", "--efivars", m.vars.dir, "--trial-record", m.trial, "--device", img, "--tpm-device", port.spec];

/** The firmware's part of a boot from entry n: BootNext consumed, BootCurrent set. */
function firmwareBoots(m: Machine, n: number) {
  m.vars.remove("BootNext");
  m.vars.set("BootCurrent", Uint8Array.from([n & 0xff, n >> 8]), 0x6);
}

/** Boot 2 on the new UKI: boot 1's log with the UKI's measurement replaced by pesign's Authenticode hash. */
async function bootNewUki(): Promise<Swtpm> {
  const pesign = /hash: ([0-9a-f]{64})/.exec(spawnSync("pesign", ["-h", "-i", NEW_PE], { encoding: "utf8" }).stdout)?.[1];
  const ours = authenticode(new Uint8Array(readFileSync(NEW_PE)));
  expect(hex(ours.sha256)).toBe(pesign);
  return bootedSwtpm(LOG1, (e, i) => (i === UKI_EVENT ? new Map([["sha1", ours.sha1], ["sha256", Uint8Array.from(Buffer.from(pesign!, "hex"))]]) : e.digests));
}

describe("update → trial boot → finalize (swtpm, sfdisk GPT, systemd 252's plugin)", () => {
  it("reseals, installs, adds Boot0001 as BootNext; the trial boot unlocks from the new token; finalize makes it the default and removes the stale token", async () => {
    sw = await bootedSwtpm(LOG1);
    const img = enrolled(sw.port);
    const m = machine();
    const r = runBin(updateArgs(m, img, sw), { timeoutMs: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ status: "done", entry: 1, entryCreated: true, installed: true, fallback: 0, file: "EFI/Linux/uki-2.efi" });
    expect(readFileSync(join(m.esp, "EFI/Linux/uki-2.efi")).equals(readFileSync(NEW_PE))).toBe(true);
    const entry = decodeLoadOption(m.vars.get("Boot0001")!.data);
    expect(fileOf(entry)).toEqual({ partition: m.part.uuid.toLowerCase(), file: "\\EFI\\Linux\\uki-2.efi" });
    expect(Buffer.from(entry.path[0]!.data).readBigUInt64LE(4)).toBe(BigInt(m.part.start));
    expect([m.vars.bootNext(), m.vars.bootOrder()]).toEqual([1, [0]]); // tried once; the old entry stays the default
    const tokens = tpm2Tokens(img);
    expect(tokens).toHaveLength(2);
    const record = JSON.parse(readFileSync(m.trial, "utf8"));
    expect(record).toMatchObject({ entry: 1, file: "EFI/Linux/uki-2.efi", fallback: 0, tokens: [`${img}|1|${tokens[1]!.json["tpm2-policy-hash"]}`] });
    expect(pluginUnlocks(img, sw.port)).toBe(true); // this boot still unlocks
    expect(r.stdout + r.stderr).not.toContain("recovery-passphrase");

    const again = runBin(updateArgs(m, img, sw), { timeoutMs: 120_000 });
    expect(again.json).toMatchObject({ status: "done", entry: 1, entryCreated: false, installed: false });
    expect(tpm2Tokens(img)).toHaveLength(2);

    // finalize before the reboot: the trial is pending, nothing changes.
    const early = runBin(finalizeArgs(m, img, sw));
    expect(early.json).toMatchObject({ status: "nothing-to-do", trial: "pending" });
    expect(tpm2Tokens(img)).toHaveLength(2);

    await sw.stop();
    sw = await bootNewUki();
    firmwareBoots(m, 1);
    expect(pluginUnlocks(img, sw.port)).toBe(true);
    const dry = runBin([...finalizeArgs(m, img, sw), "--dry-run"]);
    expect(dry.json).toMatchObject({ trial: "finalized", bootOrder: [1, 0], volumes: [{ removed: [{ token: tokens[0]!.id }] }] });
    expect([m.vars.bootOrder(), tpm2Tokens(img).length, existsSync(m.trial)]).toEqual([[0], 2, true]);
    const fin = runBin(finalizeArgs(m, img, sw));
    expect(fin.status, fin.stderr).toBe(0);
    expect(fin.json).toMatchObject({ status: "done", trial: "finalized", volumes: [{ kept: [{ token: tokens[1]!.id, why: "this-boot" }], removed: [{ token: tokens[0]!.id }] }] });
    expect(m.vars.bootOrder()).toEqual([1, 0]);
    expect(existsSync(m.trial)).toBe(false);
    expect(tpm2Tokens(img).map((t) => t.json["tpm2-policy-hash"])).toEqual([tokens[1]!.json["tpm2-policy-hash"]]);
    expect(pluginUnlocks(img, sw.port)).toBe(true); // a further boot of the new UKI unlocks
    expect(runBin(finalizeArgs(m, img, sw)).json).toMatchObject({ status: "nothing-to-do", trial: "none" });
  }, 240_000);

  it("a trial that never came up: the next boot is the old entry, its token still works, finalize keeps both tokens and the order", async () => {
    sw = await bootedSwtpm(LOG1);
    const img = enrolled(sw.port);
    const m = machine();
    expect(runBin(updateArgs(m, img, sw), { timeoutMs: 120_000 }).status).toBe(0);
    firmwareBoots(m, 0); // the trial UKI powered off; the firmware came back on BootOrder's first entry
    expect(pluginUnlocks(img, sw.port)).toBe(true);
    const fin = runBin(finalizeArgs(m, img, sw));
    expect(fin.status, fin.stderr).toBe(0);
    expect(fin.json).toMatchObject({ status: "nothing-to-do", trial: "not-taken", volumes: [{ removed: [] }] });
    expect(fin.stderr).toMatch(/did not come up/);
    expect([m.vars.bootOrder(), tpm2Tokens(img).length, existsSync(m.trial)]).toEqual([[0], 2, true]);
  }, 240_000);

  it("power loss after every step of update and of finalize: this boot still unlocks, the order is untouched until finalize, a rerun finishes", async () => {
    sw = await bootedSwtpm(LOG1);
    const base = enrolled(sw.port);
    const steps = ["resealed", "installed", "entry-written", "recorded", "boot-next-set"];
    for (const step of steps) {
      const img = join(tempDir("update-kill-"), "disk.img");
      copyFileSync(base, img);
      const m = machine();
      const k = runBin([...updateArgs(m, img, sw), "--fault-at", step], { bin: BIN_TEST, timeoutMs: 120_000 });
      expect(k.signal, `${step}: ${k.stderr}`).toBe("SIGKILL");
      expect(pluginUnlocks(img, sw.port), step).toBe(true);
      expect(m.vars.bootOrder(), step).toEqual([0]);
      const r = runBin(updateArgs(m, img, sw), { timeoutMs: 120_000 });
      expect(r.json, `${step}: ${r.stderr}`).toMatchObject({ status: "done", entry: 1 });
      expect([m.vars.bootNext(), tpm2Tokens(img).length, m.vars.bootNumbers()], step).toEqual([1, 2, [0, 1]]);
    }
    // finalize on the trial boot, killed after each of its steps, then rerun.
    const img = join(tempDir("update-kill-"), "disk.img");
    copyFileSync(base, img);
    const m = machine();
    expect(runBin(updateArgs(m, img, sw), { timeoutMs: 120_000 }).status).toBe(0);
    const sealed = tpm2Tokens(img);
    await sw.stop();
    sw = await bootNewUki();
    firmwareBoots(m, 1);
    for (const step of ["order-set", "token-removed", "record-removed"]) {
      const k = runBin([...finalizeArgs(m, img, sw), "--fault-at", step], { bin: BIN_TEST });
      expect(k.signal, `${step}: ${k.stderr}`).toBe("SIGKILL");
      expect(pluginUnlocks(img, sw.port), step).toBe(true);
      expect(m.vars.bootOrder(), step).toEqual([1, 0]);
    }
    const r = runBin(finalizeArgs(m, img, sw));
    expect(r.json, r.stderr).toMatchObject({ status: "nothing-to-do", trial: "none" });
    expect(tpm2Tokens(img).map((t) => t.id)).toEqual([sealed[1]!.id]);
    expect(pluginUnlocks(img, sw.port)).toBe(true);
  }, 600_000);

  it("refusals change nothing: no efivars, an ESP path outside the ESP, a disk without that partition, a log that does not replay", async () => {
    sw = await bootedSwtpm(LOG1);
    const img = enrolled(sw.port);
    const m = machine();
    const before = readFileSync(img);
    const cases: [string[], number, RegExp][] = [
      [updateArgs(m, img, sw).map((a) => (a === m.vars.dir ? join(m.dir, "none") : a)), 11, /no UEFI variables/],
      [[...updateArgs(m, img, sw), "--install-as", "EFI/../../etc/x.efi"], 2, /expected a relative path/],
      [updateArgs(m, img, sw).map((a, i, all) => (all[i - 1] === "--esp-partition" ? "3" : a)), 11, /no GPT partition 3/],
      [updateArgs(m, img, sw).map((a) => (a === m.uki ? SHIM : a)), 2, /not a unified kernel image/],
      [updateArgs(m, img, sw).map((a) => (a === LOG1 ? join(VECTORS, "pcr/shim-uki-secureboot/eventlog-uki2.bin") : a)), 8, /the event log does not match the TPM/],
    ];
    for (const [args, code, re] of cases) {
      const r = runBin(args, { timeoutMs: 120_000 });
      expect(r.status, r.stderr).toBe(code);
      expect(r.stderr).toMatch(re);
    }
    expect(readFileSync(img).equals(before)).toBe(true);
    expect([m.vars.bootNumbers(), m.vars.bootNext(), existsSync(m.trial), existsSync(join(m.esp, "EFI/Linux"))]).toEqual([[0], undefined, false, false]);
    // remove refuses to take BootOrder's only entry.
    m.vars.setBootEntry(5, { attributes: LOAD_OPTION_ACTIVE, description: "only", path: [hardDriveNode({ number: 1, start: BigInt(m.part.start), size: BigInt(m.part.size), guid: m.part.uuid.toLowerCase() }), filePathNode("EFI/Linux/only.efi")], optional: new Uint8Array(0) });
    m.vars.setBootOrder([5]);
    const last = runBin(["remove", "--file", "EFI/Linux/only.efi", "--esp", m.esp, "--esp-disk", m.disk, "--esp-partition", "1", "--efivars", m.vars.dir, "--trial-record", m.trial]);
    expect([last.status, last.stderr]).toEqual([11, expect.stringMatching(/every entry of BootOrder: removing it would leave nothing to boot/)]);
    expect([m.vars.bootOrder(), m.vars.bootNumbers()]).toEqual([[5], [0, 5]]);
    mkdirSync(join(m.dir, "var"));
    writeFileSync(m.trial, "{not json");
    const bad = runBin(finalizeArgs(m, img, sw));
    expect(bad.status).toBe(11);
    expect(bad.stderr).toMatch(/is not JSON/);
  }, 240_000);

  it("systemd 252's kernel-install with the packaged plugin runs update for a UKI, leaves a plain kernel alone, and removes what it installed", async () => {
    sw = await bootedSwtpm(LOG1);
    const img = enrolled(sw.port);
    const m = machine();
    // The agent as the plugin calls it, with this machine's disk, efivars and TPM added to update's flags.
    const wrapper = join(m.dir, "cvm-unlock");
    const extra = ["--esp-disk", m.disk, "--esp-partition", "1", "--efivars", m.vars.dir, "--trial-record", m.trial, "--device", img, "--tpm-device", sw.spec, "--eventlog", LOG1, "--srk", SRK];
    const machineFlags = ["--esp-disk", m.disk, "--esp-partition", "1", "--efivars", m.vars.dir, "--trial-record", m.trial].join(" ");
    writeFileSync(wrapper, `#!/bin/sh\n[ "$1" = update ] && exec ${BIN} "$@" ${extra.join(" ")}\n[ "$1" = remove ] && exec ${BIN} "$@" ${machineFlags}\nexec ${BIN} "$@"\n`, { mode: 0o755 });
    const conf = join(m.dir, "kernel-conf");
    mkdirSync(conf);
    const env = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", KERNEL_INSTALL_PLUGINS: join(ROOT, "packaging/kernel-install/95-cvm-unlock.install"), KERNEL_INSTALL_CONF_ROOT: conf, BOOT_ROOT: m.esp, MACHINE_ID: "0123456789abcdef0123456789abcdef", CVM_UNLOCK_BIN: wrapper };
    const plain = spawnSync("kernel-install", ["add", "6.1.0-test", SHIM], { env, encoding: "utf8", timeout: 120_000 });
    expect(plain.status, plain.stderr).toBe(0);
    expect([m.vars.bootNumbers(), tpm2Tokens(img).length]).toEqual([[0], 1]);
    const r = spawnSync("kernel-install", ["add", "6.1.0-test", m.uki], { env, encoding: "utf8", timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const name = "EFI/Linux/0123456789abcdef0123456789abcdef-6.1.0-test.efi";
    expect(readFileSync(join(m.esp, name)).equals(readFileSync(m.uki))).toBe(true);
    expect(fileOf(decodeLoadOption(m.vars.get("Boot0001")!.data))?.file).toBe(`\\${name.replace(/\//g, "\\")}`);
    expect([m.vars.bootNext(), m.vars.bootOrder(), tpm2Tokens(img).length]).toEqual([1, [0], 2]);

    // Removing that kernel: never while its UKI is what this boot came from; otherwise entry, file and trial go.
    m.vars.set("BootCurrent", Uint8Array.from([1, 0]), 0x6);
    const busy = spawnSync("kernel-install", ["remove", "6.1.0-test"], { env, encoding: "utf8", timeout: 60_000 });
    expect(busy.status).toBe(11);
    expect(busy.stderr).toMatch(/what this boot came from \(Boot0001\): not removed/);
    expect(existsSync(join(m.esp, name))).toBe(true);
    m.vars.set("BootCurrent", Uint8Array.from([0, 0]), 0x6);
    const rm = spawnSync("kernel-install", ["remove", "6.1.0-test"], { env, encoding: "utf8", timeout: 60_000 });
    expect(rm.status, rm.stderr).toBe(0);
    expect([m.vars.bootNumbers(), m.vars.bootNext(), m.vars.bootOrder(), existsSync(join(m.esp, name)), existsSync(m.trial)]).toEqual([[0], undefined, [0], false, false]);
    expect(spawnSync("kernel-install", ["remove", "6.1.0-test"], { env, encoding: "utf8" }).status).toBe(0); // nothing left: nothing to do
  }, 240_000);
});
