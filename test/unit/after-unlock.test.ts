// cvm-unlock after-unlock against a kernel-like /sys/block, the fake keyring and recorded dm tables: what
// the host can change between the agent's header read and systemd-cryptsetup's (the cipher, the offset,
// the UUID, the backing device) is caught on the live mapping; the hand-off key is revoked in every case.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { Context } from "../../src/cli/command.js";
import { makeAfterUnlock, type AfterUnlockDeps } from "../../src/cli/after-unlock.js";
import { asCvmError } from "../../src/errors.js";
import { RunTrace } from "../../src/flow/run.js";
import { handOff } from "../../src/keyring/handoff.js";
import { checkHeaderCiphers, DEFAULT_CIPHERS } from "../../src/luks/ciphers.js";
import { parseLuks2 } from "../../src/luks/header.js";
import { writeExpected } from "../../src/luks/mapping.js";
import { Logger, memorySink } from "../../src/log/logger.js";
import { Secret } from "../../src/log/secret.js";
import { FakeNative } from "../../src/native/fake.js";
import { tempDir } from "../helpers/bin.js";
import { headerFile } from "../helpers/fixtures.js";

const header = headerFile("systemd-tpm2");
const h = parseLuks2(new Uint8Array(readFileSync(header)));
const dmUuid = `CRYPT-LUKS2-${h.uuid.replace(/-/g, "")}-luks-${h.uuid}`;
const ss = h.segments[0]!.sectorSize ?? 512;
const goodTable = `0 98304 crypt aes-xts-plain64 :64:logon:cryptsetup:${h.uuid}-d0 0 254:0 ${Number(h.segments[0]!.offset) / 512}${ss === 512 ? "" : ` 1 sector_size:${ss}`}\n`;

async function run(opts: { table?: string; cmdline?: string; record?: boolean; extraEnv?: Record<string, string> }) {
  const dir = tempDir("after-");
  const sys = join(dir, "sys");
  mkdirSync(join(sys, "dm-0/dm"), { recursive: true });
  writeFileSync(join(sys, "dm-0/dm/name"), `luks-${h.uuid}\n`);
  writeFileSync(join(sys, "dm-0/dm/uuid"), `${dmUuid}\n`);
  writeFileSync(join(dir, "config.json"), JSON.stringify({ volumes: [{ name: "root", device: header, resource: "a/b/c" }], broker: { url: "https://kbs", ca: "-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----" }, keyring: { keyring: "@s" } }));
  writeFileSync(join(dir, "cmdline"), opts.cmdline ?? "console=ttyS0 root=/dev/mapper/x");
  const runDir = join(dir, "run");
  if (opts.record !== false) writeExpected(runDir, [checkHeaderCiphers("root", h, DEFAULT_CIPHERS)]);
  const native = new FakeNative();
  const serial = handOff(native, { keyring: "@s", key: "cryptsetup", timeout_s: 120 }, [Secret.fromString("released-passphrase")]);
  const mem = memorySink();
  const ctx: Context = {
    log: new Logger("debug", [mem]), json: true, flags: { config: join(dir, "config.json"), cmdline: join(dir, "cmdline") }, positionals: [],
    env: { PATH: "/usr/bin", ...opts.extraEnv }, trace: new RunTrace(), runDir, native: async () => native, print: () => {},
  };
  const deps: AfterUnlockDeps = { sysBlock: sys, table: async () => opts.table ?? goodTable, tpm: async () => undefined, rtmr3Path: join(dir, "no-rtmr"), deviceNumber: () => "254:0" };
  let result, error;
  try {
    result = await makeAfterUnlock(deps)(ctx);
  } catch (e) {
    error = asCvmError(e);
  }
  // Revoked (and unlinked: the fake then forgets it, as the kernel frees it).
  return { result, error, revoked: native.calls.includes("keyctl_revoke") && (native.keys.get(serial)?.revoked ?? true), lines: mem.lines };
}

describe("after-unlock", () => {
  it("a mapping as checked: done, and the hand-off key revoked", async () => {
    const r = await run({});
    expect(r.error).toBeUndefined();
    expect(r.result).toMatchObject({ status: "done", data: { mappings: [`luks-${h.uuid}`], revoked: true } });
    expect(r.revoked).toBe(true);
  });

  it.each([
    ["cipher_null over the same offset", `0 98304 crypt cipher_null-ecb - 0 254:0 ${Number(h.segments[0]!.offset) / 512}`, /uses cipher_null-ecb with a 0-bit key, not in the allowlist.*cipher cipher_null-ecb \(checked: aes-xts-plain64\)/],
    ["another data offset", `0 98304 crypt aes-xts-plain64 :64:logon:cryptsetup:x-d0 0 254:0 8`, /data offset 8 sectors/],
    ["another backing device", `0 98304 crypt aes-xts-plain64 :64:logon:cryptsetup:x-d0 0 8:16 ${Number(h.segments[0]!.offset) / 512}`, /backing device 8:16/],
    ["a 256-bit key", `0 98304 crypt aes-xts-plain64 ${"0".repeat(64)} 0 254:0 ${Number(h.segments[0]!.offset) / 512}`, /256-bit key/],
  ])("%s: typed LUKS error (the unit powers off), the key revoked all the same", async (_what, table, message) => {
    const r = await run({ table });
    expect(r.error?.code).toBe("LUKS");
    expect(r.error?.message).toMatch(message);
    expect(r.revoked).toBe(true);
  });

  it("without a record (a volume systemd-cryptsetup opened from its token) checks against the header read now", async () => {
    expect((await run({ record: false })).error).toBeUndefined();
    const r = await run({ record: false, table: `0 98304 crypt cipher_null-ecb - 0 254:0 0` });
    expect(r.error?.message).toMatch(/cipher_null-ecb/);
  });

  it("a command line that could open a shell fails it (power off), after revoking the key", async () => {
    const r = await run({ cmdline: "console=ttyS0 init=/bin/sh" });
    expect(r.error?.code).toBe("CONFIG");
    expect(r.error?.details.cmdline_keys).toBe("init");
    expect(r.revoked).toBe(true);
  });

  it("a rd.cvm_unlock=0 from the host does not turn the check off", async () => {
    const r = await run({ cmdline: "rd.cvm_unlock=0", table: `0 98304 crypt cipher_null-ecb - 0 254:0 0` });
    expect(r.error?.code).toBe("LUKS");
  });

  it("refuses an environment outside the allowlist", async () => {
    const r = await run({ extraEnv: { BUN_INSPECT: "1" } });
    expect(r.error?.code).toBe("CONFIG");
  });
});
