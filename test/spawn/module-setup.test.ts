// The dracut module's own shell logic for tpm.tokens images, run by bash with the compiled binary: which
// modules it asks for, and how it merges its crypttab lines into the image's crypttab. dracut's install
// helpers (inst_simple, dwarn, systemctl --root) are stood in for by recorders; the whole module inside real
// dracut builds is exercised by test/e2e (check_vtpm_image and the vTPM boots).
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { BIN, requireBin, tempDir } from "../helpers/bin.js";

const MODULE = join(process.cwd(), "dracut-module/90cvm-unlock/module-setup.sh");
const UUID = "1fc44f44-f461-4372-9eba-423cadc94716";
const CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

function setup(config: object, crypttab?: string) {
  const d = tempDir("module-");
  mkdirSync(join(d, "conf"));
  mkdirSync(join(d, "initrd/etc"), { recursive: true });
  writeFileSync(join(d, "conf/config.json"), JSON.stringify(config));
  if (crypttab !== undefined) writeFileSync(join(d, "initrd/etc/crypttab"), crypttab);
  return d;
}

function run(d: string, script: string) {
  const prelude = `set -u; initdir=${d}/initrd; moddir=${d}/mod; systemdsystemunitdir=/usr/lib/systemd/system; SYSTEMCTL="echo systemctl"
inst_simple() { echo "inst_simple $*"; }
dwarn() { echo "dwarn $*"; }
export cvm_unlock_bin=${BIN} cvm_unlock_confdir=${d}/conf
. ${MODULE}
`;
  return spawnSync("bash", ["-c", prelude + script], { encoding: "utf8", env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" } });
}

const vtpm = { volumes: [{ name: "root", device: `UUID=${UUID}` }], tpm: { tokens: true } };
const line = `luks-${UUID} UUID=${UUID} none tpm2-device=auto,tries=2,timeout=300s`;

beforeAll(() => requireBin());

describe("dracut module, tpm.tokens", () => {
  it("asks for tpm2-tss only for a tpm.tokens config", () => {
    expect(run(setup(vtpm), "depends").stdout.split(/\s+/)).toContain("tpm2-tss");
    expect(run(setup({ volumes: vtpm.volumes }), "depends").stdout.split(/\s+/)).not.toContain("tpm2-tss");
  });

  it("writes crypttab when the image has none", () => {
    const d = setup(vtpm);
    const r = run(d, `cvm_unlock_install_vtpm "$("$cvm_unlock_bin" debug config --config "$cvm_unlock_confdir/config.json" --cmdline /dev/null --crypttab)"`);
    expect(r.status, r.stderr).toBe(0);
    expect(readFileSync(join(d, "initrd/etc/crypttab"), "utf8")).toBe(`${line}\n`);
  });

  it("installs the agent as the ask-password unit, which nothing waits for (tpm.tokens defaults to that hand-off)", () => {
    const d = setup(vtpm);
    const r = run(d, `do_strip=no; systemdutildir=/usr/lib/systemd; inst_binary() { :; }; inst_multiple() { echo "inst_multiple $*"; }; install`);
    expect(r.status, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toContain(`inst_simple ${d}/mod/cvm-unlock-askpass.service /usr/lib/systemd/system/cvm-unlock.service`);
    expect(r.stdout).toContain("inst_multiple /usr/lib/systemd/systemd-reply-password");
    expect(r.stdout).toContain(`systemctl -q --root ${d}/initrd enable cvm-unlock.service`);
    const unit = readFileSync(join(process.cwd(), "systemd/cvm-unlock-askpass.service"), "utf8");
    expect(unit).not.toMatch(/^Before=.*cryptsetup/m);
    expect(unit).toMatch(/^Before=shutdown.target initrd-switch-root.target$/m);
  });

  it("keeps the host's entries, appends its own, and warns about an entry for its volume that names no TPM", () => {
    const other = "swap /dev/vdb /dev/urandom swap\n";
    let d = setup(vtpm, other);
    let r = run(d, `cvm_unlock_install_vtpm "$("$cvm_unlock_bin" debug config --config "$cvm_unlock_confdir/config.json" --cmdline /dev/null --crypttab)"`);
    expect(readFileSync(join(d, "initrd/etc/crypttab"), "utf8")).toBe(`${other}${line}\n`);
    expect(r.stdout).not.toContain("dwarn");

    const own = `cryptroot /dev/disk/by-uuid/${UUID} none discard\n`;
    d = setup(vtpm, own);
    r = run(d, `cvm_unlock_install_vtpm "$("$cvm_unlock_bin" debug config --config "$cvm_unlock_confdir/config.json" --cmdline /dev/null --crypttab)"`);
    expect(readFileSync(join(d, "initrd/etc/crypttab"), "utf8")).toBe(own);
    expect(r.stdout).toContain(`dwarn cvm-unlock: /etc/crypttab in the image lists UUID=${UUID} without tpm2-device=`);

    const withTpm = `cryptroot UUID=${UUID} none tpm2-device=auto,tries=3\n`;
    d = setup(vtpm, withTpm);
    r = run(d, `cvm_unlock_install_vtpm "$("$cvm_unlock_bin" debug config --config "$cvm_unlock_confdir/config.json" --cmdline /dev/null --crypttab)"`);
    expect(readFileSync(join(d, "initrd/etc/crypttab"), "utf8")).toBe(withTpm);
    expect(r.stdout).not.toContain("dwarn");
  });
});

describe("dracut module, install", () => {
  const stubs = `do_strip=no; systemdutildir=/usr/lib/systemd; inst_binary() { echo "inst_binary $*"; }; inst_multiple() { echo "inst_multiple $*"; }; dfatal() { echo "dfatal $*"; }
install`;
  const base = { volumes: [{ name: "root", device: `UUID=${UUID}`, resource: "r/o/1" }], broker: { url: "https://kbs.example", ca: "ca.pem" } };
  const dropins = ["emergency.service", "rescue.service", "dracut-emergency.service"].map((u) => `/usr/lib/systemd/system/${u}.d/90-cvm-unlock.conf`);

  it("on_failure poweroff: emergency drop-ins and FailureAction, no /etc/cmdline.d (it would start two more dracut units)", () => {
    const d = setup({ ...base, on_failure: "poweroff", deadline_s: 90 });
    writeFileSync(join(d, "conf/ca.pem"), CA);
    const r = run(d, stubs);
    expect(r.status, r.stderr + r.stdout).toBe(0);
    for (const f of dropins) expect(r.stdout).toContain(`inst_simple ${d}/mod/cvm-unlock-poweroff.conf ${f}`);
    expect(readFileSync(join(d, "initrd/usr/lib/systemd/system/cvm-unlock.service.d/50-config.conf"), "utf8")).toBe("[Unit]\nFailureAction=poweroff-force\n[Service]\nTimeoutStartSec=120\n");
    expect(readFileSync(join(d, "initrd/usr/lib/systemd/system/cvm-unlock-after.service.d/50-config.conf"), "utf8")).toBe("[Unit]\nFailureAction=poweroff-force\n");
    expect(r.stdout).toContain(`inst_simple ${d}/mod/cvm-unlock-after.service /usr/lib/systemd/system/cvm-unlock-after.service`);
    expect(r.stdout).toContain("inst_multiple cryptsetup env dmsetup");
    expect(existsSync(join(d, "initrd/etc/cmdline.d"))).toBe(false);
  });

  it("on_failure emergency: neither the drop-ins nor FailureAction", () => {
    const d = setup({ ...base, on_failure: "emergency" });
    writeFileSync(join(d, "conf/ca.pem"), CA);
    const r = run(d, stubs);
    expect(r.status, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).not.toContain("cvm-unlock-poweroff.conf");
    expect(readFileSync(join(d, "initrd/usr/lib/systemd/system/cvm-unlock.service.d/50-config.conf"), "utf8")).not.toContain("FailureAction");
  });
});

describe("dracut module, a broker named by DNS", () => {
  it("writes broker.nameservers as the image's /etc/resolv.conf (and only then)", () => {
    const named = { broker: { url: "https://kbs.example:8443", ca: CA, nameservers: ["168.63.129.16", "fec0::3"] }, volumes: [{ name: "root", device: `UUID=${UUID}`, resource: "a/b/c" }] };
    const d = setup(named);
    const install = `do_strip=no; systemdutildir=/usr/lib/systemd; inst_binary() { :; }; inst_multiple() { :; }; inst_libdir_file() { echo "inst_libdir_file $*"; }; install`;
    let r = run(d, install);
    expect(r.status, r.stderr + r.stdout).toBe(0);
    expect(readFileSync(join(d, "initrd/etc/resolv.conf"), "utf8")).toBe("nameserver 168.63.129.16\nnameserver fec0::3\n");
    expect(r.stdout).toContain("inst_libdir_file libnss_dns.so.* libresolv.so.*");
    const plain = setup({ ...named, broker: { url: "https://10.0.2.2:8443", ca: CA } });
    r = run(plain, install);
    expect(r.status, r.stderr + r.stdout).toBe(0);
    expect(existsSync(join(plain, "initrd/etc/resolv.conf"))).toBe(false);
  });
});
