// handoff "activate": which name and flags systemd-cryptsetup would give a volume in the initramfs (its
// generator's rules for rd.luks.* and /etc/crypttab), and the unlock path that opens the volume itself with
// them — one KDF — falling back to the keyring for anything it cannot reproduce. The activation itself
// (cryptsetup open) needs device-mapper, which these machines lack: it is a recorder here and real in the QEMU
// boots (test/e2e), where systemd-cryptsetup then reports the volume as already active.
import { describe, expect, it } from "vitest";
import { activationFlags, systemdVolume } from "../../src/flow/activate.js";
import { makeUnlock } from "../../src/cli/unlock.js";
import { startBroker } from "../../tools/dev-broker/server.js";
import { memoryStore } from "../../tools/dev-broker/store.js";
import { makeLuksImage, opens } from "../helpers/luks.js";
import { runUnlockWith } from "../helpers/unlock-harness.js";
import { cryptsetupWhy, startWithStdin, type PendingCheck } from "../../src/luks/cryptsetup.js";
import { kdfMemoryMiB, readLuksHeaderFile } from "../../src/luks/header.js";
import { memAvailableMiB } from "../../src/proc.js";
import { Secret } from "../../src/log/secret.js";
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../helpers/bin.js";

const U = "95964358-963f-46fe-b42c-22990c0883e6";

describe("systemd's name and options for a volume (the cryptsetup generator's rules)", () => {
  it("rd.luks.uuid gives luks-<UUID>; rd.luks.name names it; rd.luks.options (per UUID, then global) give the options", () => {
    expect(systemdVolume(U, "/dev/vda", `root=/dev/mapper/luks-${U} rd.luks.uuid=${U}`, undefined)).toEqual({ name: `luks-${U}`, options: [], source: "kernel command line" });
    expect(systemdVolume(U.toUpperCase(), "/dev/vda", `rd.luks.uuid=luks-${U}`, undefined)?.name).toBe(`luks-${U}`);
    expect(systemdVolume(U, "/dev/vda", `rd.luks.name=${U}=cryptroot`, undefined)?.name).toBe("cryptroot");
    expect(systemdVolume(U, "/dev/vda", `rd.luks.uuid=${U} rd.luks.options=${U}=tries=1,timeout=150s,discard rd.luks.options=no-read-workqueue`, undefined)?.options).toEqual(["tries=1", "timeout=150s", "discard"]);
    expect(systemdVolume(U, "/dev/vda", `rd.luks.uuid=${U} rd.luks.options=no-read-workqueue`, undefined)?.options).toEqual(["no-read-workqueue"]);
    expect(systemdVolume(U, "/dev/vda", `rd.luks.uuid=${U} rd.luks=0`, undefined)).toBeUndefined();
    expect(systemdVolume(U, "/dev/vda", "root=/dev/vda", undefined)).toBeUndefined(); // not one systemd sets up
  });

  it("a crypttab entry (by UUID= or path) gives its name and options; rd.luks.uuid lists restrict crypttab; rd.luks.crypttab=0 ignores it", () => {
    const tab = `# name device key options\nhome UUID=11111111-2222-3333-4444-555555555555 none luks\ncryptroot UUID=${U} none luks,discard\n`;
    expect(systemdVolume(U, "/dev/vda", "", tab)).toEqual({ name: "cryptroot", options: ["luks", "discard"], source: "crypttab" });
    expect(systemdVolume(U, "/dev/vda", "", `data /dev/vda none same-cpu-crypt`)).toEqual({ name: "data", options: ["same-cpu-crypt"], source: "crypttab" });
    expect(systemdVolume(U, "/dev/vda", "rd.luks.uuid=11111111-2222-3333-4444-555555555555", tab)).toBeUndefined();
    expect(systemdVolume(U, "/dev/vda", `rd.luks.options=${U}=readonly`, tab)?.options).toEqual(["readonly"]); // the command line wins
    expect(systemdVolume(U, "/dev/vda", "rd.luks.crypttab=0", tab)).toBeUndefined();
  });

  it("maps the options that change the mapping to cryptsetup flags, ignores the neutral ones, refuses the rest", () => {
    expect(activationFlags(["luks", "tries=1", "timeout=150s", "discard", "no-read-workqueue", "readonly", "x-initrd.attach"])).toEqual({ flags: ["--allow-discards", "--perf-no_read_workqueue", "--readonly"] });
    expect(activationFlags(["header=/dev/vdb"])).toEqual({ unsupported: "header=/dev/vdb" });
    expect(activationFlags(["sector-size=4096"])).toEqual({ unsupported: "sector-size=4096" });
  });
});

describe("unlock with handoff activate (device-mapper as a seam)", () => {
  const PASS = "activate-passphrase";
  const setup = async () => {
    const image = makeLuksImage(PASS);
    const { execFileSync } = await import("node:child_process");
    const uuid = execFileSync("cryptsetup", ["luksUUID", image], { encoding: "utf8" }).trim();
    const broker = await startBroker({ store: memoryStore({ "cvm/luks/root": PASS }), policy: { allowTees: ["sample"], denyAll: false }, dev: true });
    const config = { broker: { url: broker.url, insecure_http: true }, tee: { allow_simulated: true }, deadline_s: 20, volumes: [{ name: "root", device: image, resource: "cvm/luks/root" }], keyring: { keyring: "@s" } };
    return { image, uuid, broker, config };
  };
  /** A recorder standing in for `cryptsetup open` that still proves the passphrase with cryptsetup's own check. */
  const recorder = (calls: string[]) => (volume: string, path: string, dmName: string, flags: string[]): PendingCheck => ({
    abort: () => {},
    async check(p) {
      calls.push(`${volume} ${dmName} ${flags.join(" ")}`.trim());
      if (!p.use((b) => opens(path, b))) throw new Error("wrong passphrase");
    },
  });

  it("opens the volume itself under systemd's name with its flags; nothing goes to the keyring", async () => {
    const { uuid, broker, config } = await setup();
    try {
      const calls: string[] = [];
      const r = await runUnlockWith(makeUnlock({ dmAvailable: () => true, crypttab: () => undefined, activate: recorder(calls) }), config, { cmdline: `rd.luks.uuid=${uuid} rd.luks.options=${uuid}=tries=1,timeout=150s,discard` });
      expect(r.ok, r.error?.message).toBe(true);
      expect(calls).toEqual([`root luks-${uuid} --allow-discards`]);
      expect(r.native.keys.size).toBe(0);
      expect(r.data).toMatchObject({ handoff: "activate", activated: [{ name: "root", as: `luks-${uuid}` }] });
      expect(r.lines.join("\n")).toMatch(/volume root: activated as luks-/);
    } finally {
      await broker.close();
    }
  });

  it("falls back to the keyring (and says why) with no device-mapper, a volume systemd does not set up, or an option it cannot reproduce", async () => {
    const { uuid, broker, config } = await setup();
    try {
      for (const [deps, cmdline, why] of [
        [{ dmAvailable: () => false }, `rd.luks.uuid=${uuid}`, /no device-mapper here/],
        [{ dmAvailable: () => true }, "", /systemd-cryptsetup does not set it up/],
        [{ dmAvailable: () => true }, `rd.luks.uuid=${uuid} rd.luks.options=${uuid}=header=/dev/vdb`, /option "header=\/dev\/vdb" .* is not one the agent reproduces/],
      ] as const) {
        const calls: string[] = [];
        const r = await runUnlockWith(makeUnlock({ ...deps, crypttab: () => undefined, activate: recorder(calls) }), config, { cmdline });
        expect(r.ok, r.error?.message).toBe(true);
        expect(calls).toEqual([]);
        expect(r.native.keys.size).toBe(1); // the keyring hand-off, as before
        expect(r.lines.join("\n")).toMatch(why);
      }
      // handoff keyring: never activates, even where it could.
      const calls: string[] = [];
      const r = await runUnlockWith(makeUnlock({ dmAvailable: () => true, crypttab: () => undefined, activate: recorder(calls) }), { ...config, keyring: { keyring: "@s", handoff: "keyring" } }, { cmdline: `rd.luks.uuid=${uuid}` });
      expect(r.ok).toBe(true);
      expect(calls).toEqual([]);
      expect(r.native.keys.size).toBe(1);
    } finally {
      await broker.close();
    }
  });
});

describe("a keyslot KDF that does not fit in the guest's memory (no swap in an initramfs)", () => {
  /** A stand-in for cryptsetup that reads the passphrase and then dies as the kernel's OOM killer ends it. */
  const script = (body: string) => {
    const f = join(tempDir("cs-"), "cryptsetup");
    writeFileSync(f, `#!/bin/sh\nhead -c 1 >/dev/null\n${body}\n`);
    chmodSync(f, 0o755);
    return f;
  };

  it("a SIGKILL the agent did not send is named as the OOM killer, with the KDF's memory and what was free; the agent's own kill at the deadline says timed out", async () => {
    const killed = await startWithStdin([], 10_000, script("kill -9 $$")).submit(Secret.fromString("x"));
    expect(killed).toMatchObject({ ok: false, exitCode: null, signal: "SIGKILL", timedOut: false });
    expect(killed.memAvailableMiB).toBeGreaterThan(0);
    expect(cryptsetupWhy(killed, 10_000, 256)).toBe(`killed by SIGKILL, not by the agent: most likely the kernel's OOM killer (its keyslots' KDF takes up to 256 MiB; ${killed.memAvailableMiB} MiB was available when it started) — give the guest more memory or the keyslot a smaller --pbkdf-memory`);
    const late = await startWithStdin([], 300, script("exec sleep 5")).submit(Secret.fromString("x"));
    expect(late).toMatchObject({ ok: false, exitCode: null, signal: "SIGKILL", timedOut: true });
    expect(cryptsetupWhy(late, 300, 256)).toBe("timed out after 300 ms");
    const term = await startWithStdin([], 10_000, script("kill -TERM $$")).submit(Secret.fromString("x"));
    expect(cryptsetupWhy(term, 10_000)).toBe("killed by SIGTERM");
    const oom = await startWithStdin([], 10_000, script("echo 'Not enough available memory to open a keyslot.' >&2; exit 3")).submit(Secret.fromString("x"));
    expect(cryptsetupWhy(oom, 10_000)).toBe("exit 3 (out of memory): Not enough available memory to open a keyslot.");
  });

  it("reads MemAvailable, and the most any keyslot's KDF takes from a real header", async () => {
    expect(memAvailableMiB("MemTotal:  480016 kB\nMemFree:  125872 kB\nMemAvailable:     129712 kB\n")).toBe(126);
    expect(memAvailableMiB("MemTotal: 1 kB\n")).toBeUndefined();
    expect(memAvailableMiB()).toBeGreaterThan(0);
    expect(kdfMemoryMiB(await readLuksHeaderFile(makeLuksImage("p", undefined, undefined, { argon2id: { iterTimeMs: 50, memoryKiB: 40960 } })))).toBe(40);
    expect(kdfMemoryMiB(await readLuksHeaderFile(makeLuksImage("p")))).toBe(0); // pbkdf2
    expect(kdfMemoryMiB({ keyslots: [{ id: "0", type: "luks2", kdf: { type: "argon2id", memory: "1e9" as unknown as number } }] })).toBe(0); // hostile JSON
  });

  it("volumes whose KDFs do not fit together run one after another, a volume whose KDF alone does not fit is named; with room they run at once", async () => {
    const { execFileSync } = await import("node:child_process");
    const dir = tempDir("kdf-");
    const images = ["a", "b"].map((n) => makeLuksImage(`pass-${n}`, dir, `${n}.img`, { argon2id: { iterTimeMs: 50, memoryKiB: 49152 } }));
    const uuids = images.map((i) => execFileSync("cryptsetup", ["luksUUID", i], { encoding: "utf8" }).trim());
    const broker = await startBroker({ store: memoryStore({ "cvm/luks/a": "pass-a", "cvm/luks/b": "pass-b" }), policy: { allowTees: ["sample"], denyAll: false }, dev: true });
    const config = {
      broker: { url: broker.url, insecure_http: true }, tee: { allow_simulated: true }, deadline_s: 30, keyring: { keyring: "@s" },
      volumes: [{ name: "a", device: images[0], resource: "cvm/luks/a" }, { name: "b", device: images[1], resource: "cvm/luks/b" }],
    };
    const cmdline = uuids.map((u) => `rd.luks.uuid=${u}`).join(" ");
    try {
      const run = async (available: number) => {
        const events: string[] = [];
        const activate = (volume: string, path: string, _dm: string, _f: string[], _t: number, kdfMiB?: number): PendingCheck => ({
          abort: () => {},
          async check(p) {
            events.push(`start ${volume} ${kdfMiB}`);
            const ok = p.use((b) => opens(path, b)); // the real KDF, 48 MiB each
            await new Promise((r) => setTimeout(r, 50));
            events.push(`end ${volume}`);
            if (!ok) throw new Error("wrong passphrase");
          },
        });
        const r = await runUnlockWith(makeUnlock({ dmAvailable: () => true, crypttab: () => undefined, activate, memAvailableMiB: () => available }), config, { cmdline });
        expect(r.ok, r.error?.message).toBe(true);
        return { events, log: r.lines.join("\n") };
      };
      const tight = await run(100); // 48 + 32 fits alone, 96 + 32 does not fit together
      expect(tight.events).toEqual(["start a 48", "end a", "start b 48", "end b"]);
      expect(tight.log).toMatch(/the keyslots' KDFs take up to 96 MiB together and 100 MiB is available: they run one after another/);
      expect(tight.log).not.toMatch(/may be killed for want of memory/);
      const roomy = await run(4096);
      expect(roomy.events.slice(0, 2).sort()).toEqual(["start a 48", "start b 48"]);
      expect(roomy.log).not.toMatch(/one after another/);
      const small = await run(60); // not even one fits: named, and still tried (the estimate is the kernel's)
      expect(small.log).toMatch(/volume a: its keyslots' KDF takes up to 48 MiB and 60 MiB is available: cryptsetup may be killed for want of memory/);
      expect(small.events).toEqual(["start a 48", "end a", "start b 48", "end b"]);
    } finally {
      await broker.close();
    }
  });
});
