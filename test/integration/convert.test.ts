// First-boot conversion against the real parts: swtpm with the fixtures' TPM state, cryptsetup 2.6 for
// every write, systemd 252's own token plugin as the judge of the result, and the compiled binary for the
// power-loss runs (SIGKILL after each step in turn).
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { convertDevice } from "../../src/flow/convert.js";
import { pinnedStorageKey } from "../../src/tpm/keys.js";
import { Logger, memorySink } from "../../src/log/logger.js";
import { parseLuks2 } from "../../src/luks/header.js";
import { Tpm } from "../../src/tpm/commands.js";
import { swtpmTransport } from "../../src/tpm/transport.js";
import { BIN, BIN_TEST, requireBin } from "../helpers/bin.js";
import { FIXTURES, fixtureBytes, fixtureText, headerFile } from "../helpers/fixtures.js";
import { pluginUnlocks } from "../helpers/plugin.js";
import { startSwtpm, type Swtpm } from "../helpers/swtpm.js";

let sw: Swtpm;
const extend = Buffer.from(JSON.parse(fixtureText("pcr.json")).extend[0], "hex");
/** The storage key the owner pinned: the fixture state's SRK (RHEL template), as `debug tpm --srk-out` writes it. */
const SRK_FILE = `${FIXTURES}/tpm2-import/srk.pub`;
const srk = pinnedStorageKey(new Uint8Array(fixtureBytes("tpm2-import/srk.pub")), "srk.pub");
const secretHex = (set: string) => fixtureText(`${set}/tpm2-secret.hex`).trim();

/** swtpm serves one client at a time: connect per operation, so the shim and the binary can get in. */
async function withTpm<T>(fn: (t: Tpm) => Promise<T>, port = sw.port): Promise<T> {
  const t = new Tpm(await swtpmTransport("127.0.0.1", port));
  try {
    return await fn(t);
  } finally {
    t.transport.close();
  }
}
const loaded = () => withTpm(async (t) => [...(await t.handles(0x80000000)), ...(await t.handles(0x02000000)), ...(await t.handles(0x03000000))]);

beforeAll(async () => {
  requireBin();
  sw = await startSwtpm();
  await withTpm((t) => t.pcrExtend(7, "sha256", extend));
});
afterAll(async () => {
  await sw?.stop();
});

const header = (f: string) => parseLuks2(new Uint8Array(readFileSync(f)));
const types = (f: string) => header(f).tokens.map((t) => t.type);
const run = (f: string) => withTpm((t) => convertDevice(f, t, { log: new Logger("info", [memorySink()]), srk }));
/** A variant of a fixture header with the tpm2-import token's JSON changed (written by cryptsetup). */
function variant(set: string, change: (j: Record<string, unknown>) => void): string {
  const f = headerFile(set);
  const j = JSON.parse(fixtureText(`${set}/token.json`));
  change(j);
  expect(spawnSync("cryptsetup", ["token", "remove", "--token-id", "0", f]).status).toBe(0);
  expect(spawnSync("cryptsetup", ["token", "import", "--token-id", "0", f], { input: JSON.stringify(j) }).status).toBe(0);
  return f;
}
const bytes = (f: string) => new Uint8Array(readFileSync(f));

describe("convert (swtpm, cryptsetup, systemd 252's plugin)", () => {
  beforeEach(async () => {
    expect(await loaded()).toEqual([]); // nothing left loaded by the previous test
  });

  it.each(["tpm2-import", "tpm2-import-unique"])("%s: converts, systemd's plugin unlocks, the old token is gone", async (set) => {
    const f = headerFile(set);
    expect(pluginUnlocks(f, sw.port)).toBe(false);
    const r = await run(f);
    expect(r.converted).toEqual([{ token: "0", keyslot: "1", resumed: false }]);
    expect(types(f)).toEqual(["systemd-tpm2"]);
    const t = header(f).tokens[0]!.json;
    expect(t).toMatchObject({ keyslots: ["1"], "tpm2-pcrs": [7], "tpm2-pcr-bank": "sha256", "tpm2-primary-alg": "ecc", "tpm2-pin": false });
    expect(Object.keys(t).sort()).toEqual(["keyslots", "tpm2-blob", "tpm2-pcr-bank", "tpm2-pcrs", "tpm2-pin", "tpm2-policy-hash", "tpm2-primary-alg", "type"]);
    expect(await loaded()).toEqual([]);
    expect(pluginUnlocks(f, sw.port)).toBe(true);
    // a second run has nothing to do
    expect((await run(f)).converted).toEqual([]);
  });

  it.each([
    ["PCR mismatch", "pcr", /PCR mismatch/, "TPM"],
    ["wrong parent (unique_dat dropped)", "unique", /refused to import the owner's parent/, "TPM"],
    ["corrupted sealed blob", "blob", /TPM_RC_INTEGRITY|TPM_RC_/, "TPM"],
    ["missing field", "missing", /parent_seed missing/, "LUKS"],
    ["two keyslots", "two", /exactly one keyslot/, "LUKS"],
    ["bad pcrpolicy_dat", "policy", /32-byte SHA-256 policy digest/, "LUKS"],
  ])("%s: a typed error and nothing changed on disk", async (_what, kind, msg, code) => {
    let f: string;
    switch (kind) {
      case "pcr":
        f = headerFile("tpm2-import");
        break;
      case "unique":
        f = variant("tpm2-import-unique", (j) => delete j.unique_dat);
        break;
      case "blob":
        f = variant("tpm2-import", (j) => {
          const b = Buffer.from(j.seal_prv as string, "base64");
          b[40]! ^= 0xff;
          j.seal_prv = b.toString("base64");
        });
        break;
      case "missing":
        f = variant("tpm2-import", (j) => delete j.parent_seed);
        break;
      case "two":
        f = variant("tpm2-import", (j) => (j.keyslots = ["1", "0"]));
        break;
      default:
        f = variant("tpm2-import", (j) => (j.pcrpolicy_dat = Buffer.alloc(20).toString("base64")));
    }
    const before = bytes(f);
    const other = kind === "pcr" ? await startSwtpm() : undefined; // a TPM whose PCR 7 was never extended
    const port = other?.port ?? sw.port;
    try {
      const e = await withTpm((t) => convertDevice(f, t, { log: new Logger("info", []), srk }), port).then(() => undefined, (x) => x);
      expect(e?.code, String(e)).toBe(code);
      expect(e.message).toMatch(msg);
      expect(Buffer.from(bytes(f)).equals(Buffer.from(before))).toBe(true);
      expect(await withTpm((t) => t.handles(0x80000000), port)).toEqual([]);
    } finally {
      await other?.stop();
    }
  });

  it("duplicate keyslot references are refused", async () => {
    const f = headerFile("tpm2-import");
    const j = JSON.parse(fixtureText("tpm2-import/token.json"));
    expect(spawnSync("cryptsetup", ["token", "import", "--token-id", "1", f], { input: JSON.stringify(j) }).status).toBe(0);
    const before = bytes(f);
    await expect(run(f)).rejects.toThrow(/duplicate keyslot reference/);
    expect(Buffer.from(bytes(f)).equals(Buffer.from(before))).toBe(true);
  });

  it("the production binary has no power-loss hook: convert, update and finalize --fault-at is an unknown flag (exit 2)", () => {
    const r = spawnSync(BIN, ["convert", "--device", headerFile("tpm2-import"), "--fault-at", "proved"], { encoding: "utf8", env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" } });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/unknown flag --fault-at/);
    for (const cmd of ["update", "finalize"]) {
      const u = spawnSync(BIN, [cmd, "--fault-at", "resealed"], { encoding: "utf8", env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" } });
      expect([u.status, u.stderr]).toEqual([2, expect.stringMatching(/unknown flag --fault-at/)]);
    }
    expect(readFileSync(BIN).includes("fault-at")).toBe(false); // the hook is not compiled in at all
    expect(readFileSync(BIN_TEST).includes("fault-at")).toBe(true);
  });

  it.each(["unsealed", "proved", "token-added", "token-removed"])("power loss after %s: still unlocks one way or another, the next run completes", async (step) => {
    const f = headerFile("tpm2-import");
    const spec = `swtpm:host=127.0.0.1,port=${sw.port}`;
    const killed = spawnSync(BIN_TEST, ["convert", "--device", f, "--tpm-device", spec, "--srk", SRK_FILE, "--fault-at", step, "--run-dir", `${f}.run`], { encoding: "utf8", env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" } });
    expect(killed.signal).toBe("SIGKILL");
    // The kernel's resource manager flushes a dead process's objects and sessions; swtpm has none, so do it here.
    await withTpm(async (t) => {
      for (const h of [...(await t.handles(0x80000000)), ...(await t.handles(0x02000000)), ...(await t.handles(0x03000000))]) await t.flush(h);
    });
    const t = types(f);
    // a working token remains: the untouched tpm2-import token, or a systemd-tpm2 token the plugin opens
    expect(t.includes("tpm2-import") || pluginUnlocks(f, sw.port)).toBe(true);
    if (step === "token-added") expect(t.sort()).toEqual(["systemd-tpm2", "tpm2-import"]);
    const again = spawnSync(BIN, ["convert", "--device", f, "--tpm-device", spec, "--srk", SRK_FILE, "--json", "--run-dir", `${f}.run`], { encoding: "utf8", env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" } });
    expect(again.status, again.stderr).toBe(0);
    expect(types(f)).toEqual(["systemd-tpm2"]);
    expect(pluginUnlocks(f, sw.port)).toBe(true);
    if (step === "token-added") expect(JSON.parse(again.stdout.trim()).results[0].converted[0].resumed).toBe(true);
    expect(again.stdout + again.stderr).not.toContain(secretHex("tpm2-import"));
  });
});

describe("the secret on the TPM interface", () => {
  it("never crosses in clear: Unseal's outData and Create's inSensitive are encrypted, responses HMAC-checked", async () => {
    const f = headerFile("tpm2-import");
    const secret = Buffer.from(secretHex("tpm2-import"), "hex");
    const wire: Uint8Array[] = [];
    const r = await withTpm(async (t) => {
      const inner = t.transport;
      const recording = new Tpm({
        name: inner.name,
        send: async (cmd) => {
          wire.push(cmd);
          const rsp = await inner.send(cmd);
          wire.push(rsp);
          return rsp;
        },
        close: () => inner.close(),
      });
      return convertDevice(f, recording, { log: new Logger("info", []), srk });
    });
    expect(r.converted).toHaveLength(1);
    expect(wire.length).toBeGreaterThan(20);
    for (const chunk of wire) expect(Buffer.from(chunk).includes(secret)).toBe(false);
    // and the recording is not vacuous: the Unseal and Create commands are on it
    expect(wire.some((c) => c.length >= 10 && new DataView(c.buffer, c.byteOffset).getUint32(6) === 0x15e)).toBe(true);
    expect(wire.some((c) => c.length >= 10 && new DataView(c.buffer, c.byteOffset).getUint32(6) === 0x153)).toBe(true);
    expect(pluginUnlocks(f, sw.port)).toBe(true);
  });
});

describe("the vTPM transport is untrusted: sessions are salted to the pinned storage key", () => {
  /** A proxy between the agent and swtpm that swaps the RSA storage primary for one of its own: it rewrites
   *  CreatePrimary's template (a unique of its choosing), so the real TPM answers with another key. A
   *  session salted to the returned key would be salted to the proxy's. */
  function substitutingProxy(inner: Tpm["transport"], wire: Uint8Array[]): Tpm {
    return new Tpm({
      name: inner.name,
      send: async (cmd) => {
        const dv = new DataView(cmd.buffer, cmd.byteOffset, cmd.byteLength);
        if (dv.getUint32(6) === 0x131 && dv.getUint16(35) === 0x0001 && dv.getUint16(cmd.length - 8) === 0) {
          const own = new Uint8Array(cmd.length + 4);
          own.set(cmd.subarray(0, cmd.length - 8));
          own.set([0, 4, 0x68, 0x6f, 0x73, 0x74], cmd.length - 8); // unique = "host"
          own.set(cmd.subarray(cmd.length - 6), cmd.length - 2);
          const odv = new DataView(own.buffer);
          odv.setUint32(2, own.length);
          odv.setUint16(33, dv.getUint16(33) + 4);
          cmd = own;
        }
        wire.push(cmd);
        return inner.send(cmd);
      },
      close: () => inner.close(),
    });
  }

  it("a substituted primary: typed TPM error (Name mismatch), nothing unsealed, the header byte-identical", async () => {
    const f = headerFile("tpm2-import");
    const before = bytes(f);
    const wire: Uint8Array[] = [];
    const e = await withTpm((t) => convertDevice(f, substitutingProxy(t.transport, wire), { log: new Logger("info", []), srk })).then(() => undefined, (x) => x);
    expect(e).toMatchObject({ code: "TPM", details: { reason: "srk-mismatch" } });
    expect((e as Error).message).toMatch(/not the pinned .*substituted it.*nothing is unsealed/);
    expect(wire.some((c) => new DataView(c.buffer, c.byteOffset).getUint32(6) === 0x131)).toBe(true); // the proxy did act
    expect(wire.some((c) => new DataView(c.buffer, c.byteOffset).getUint32(6) === 0x15e)).toBe(false); // no Unseal
    expect(Buffer.from(bytes(f)).equals(Buffer.from(before))).toBe(true);
    expect(await loaded()).toEqual([]);
  });

  it("a PCR extended between PolicyPCR and Unseal (TPM_RC_PCR_CHANGED) is retried with a new policy session", async () => {
    const f = headerFile("tpm2-import");
    const rcs: number[] = [];
    let injected = false;
    const r = await withTpm(async (t) => {
      const inner = t.transport;
      const side = new Tpm(inner);
      const racing = new Tpm({
        name: inner.name,
        send: async (cmd) => {
          if (!injected && new DataView(cmd.buffer, cmd.byteOffset).getUint32(6) === 0x15e) {
            injected = true; // someone extends PCR 8 (not in the policy) just before the first Unseal
            await side.pcrExtend(8, "sha256", new Uint8Array(32).fill(7));
          }
          const rsp = await inner.send(cmd);
          if (new DataView(cmd.buffer, cmd.byteOffset).getUint32(6) === 0x15e) rcs.push(new DataView(rsp.buffer, rsp.byteOffset).getUint32(6));
          return rsp;
        },
        close: () => inner.close(),
      });
      return convertDevice(f, racing, { log: new Logger("info", []), srk });
    });
    expect(rcs[0]).toBe(0x128); // TPM_RC_PCR_CHANGED from the real TPM
    expect(rcs.slice(1).every((rc) => rc === 0)).toBe(true);
    expect(r.converted).toHaveLength(1);
    expect(pluginUnlocks(f, sw.port)).toBe(true);
  });

  it("no pin: nothing is unsealed, and the error says where the pin comes from", async () => {
    const f = headerFile("tpm2-import");
    const before = bytes(f);
    const e = await withTpm((t) => convertDevice(f, t, { log: new Logger("info", []), srk: undefined })).then(() => undefined, (x) => x);
    expect(e).toMatchObject({ code: "TPM", details: { reason: "no-pinned-srk" } });
    expect((e as Error).message).toContain("debug tpm --srk-out");
    expect(Buffer.from(bytes(f)).equals(Buffer.from(before))).toBe(true);
  });

  it("a pin that is not an RSA storage key's TPM2B_PUBLIC is a config error", () => {
    const r = spawnSync(BIN, ["convert", "--device", headerFile("tpm2-import"), "--srk", `${FIXTURES}/pcr.json`], { encoding: "utf8", env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" } });
    expect(r.status).toBe(8);
    expect(r.stderr).toMatch(/--srk .*pcr\.json: not a TPM2B_PUBLIC/);
  });
});

describe("convert with a config (the config's volumes, waited for, as an admin runs it on a booted system)", () => {
  const env = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" };
  const configFor = (devices: string[], tpm: string) => {
    const f = `${headerFile("systemd-tpm2")}.config.json`;
    writeFileSync(f, JSON.stringify({ deadline_s: 2, tpm: { device: tpm, tokens: true, srk: SRK_FILE }, volumes: devices.map((d, i) => ({ name: `v${i}`, device: d })) }));
    return f;
  };
  const boot = (cfg: string) => spawnSync(BIN, ["convert", "--config", cfg, "--cmdline", "/dev/null", "--json", "--run-dir", `${cfg}.run`], { encoding: "utf8", env });

  it("converts the volumes that carry a tpm2-import token and leaves the others alone", async () => {
    const a = headerFile("tpm2-import"), b = headerFile("systemd-tpm2");
    const before = bytes(b);
    const r = boot(configFor([a, b], `swtpm:host=127.0.0.1,port=${sw.port}`));
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim())).toMatchObject({ status: "done", results: [{ device: a, converted: [{ resumed: false }] }] });
    expect(types(a)).toEqual(["systemd-tpm2"]);
    expect(Buffer.from(bytes(b)).equals(Buffer.from(before))).toBe(true);
  });

  it("a later boot reads the headers and is done without opening the TPM", () => {
    const r = boot(configFor([headerFile("systemd-tpm2")], "/dev/nonexistent-tpmrm0"));
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim())).toMatchObject({ status: "nothing-to-do" });
  });

  it("waits for a device within the deadline, then fails with a LUKS error", () => {
    const t0 = Date.now();
    const r = boot(configFor(["/nonexistent/disk"], "/dev/nonexistent-tpmrm0"));
    expect(r.status).toBe(9);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1900);
    expect(r.stderr).toContain("did not appear within the deadline");
  });

  it("a tpm2-import token and no TPM: a TPM error, the header untouched (the broker remains the way in)", () => {
    const a = headerFile("tpm2-import");
    const before = bytes(a);
    const r = boot(configFor([a], "/dev/nonexistent-tpmrm0"));
    expect(r.status).toBe(8);
    expect(Buffer.from(bytes(a)).equals(Buffer.from(before))).toBe(true);
  });
});
