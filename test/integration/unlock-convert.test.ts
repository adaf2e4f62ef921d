// The agent on a vTPM image's first boot (tpm.tokens), against the real parts: swtpm with the fixtures' TPM
// state, the owner's tpm2-import header (cryptsetup 2.6 writes), systemd's own systemd-reply-password and a
// stand-in for systemd-cryptsetup's password request. The agent converts the token beside
// systemd-cryptsetup and answers its request with the passphrase it proved — or sees the volume open from
// the new token — and a token that will not unseal sends the volume to the broker.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeUnlock } from "../../src/cli/unlock.js";
import { REPLY_BINARY } from "../../src/keyring/askpass.js";
import { luksActive } from "../../src/luks/cryptsetup.js";
import { parseLuks2 } from "../../src/luks/header.js";
import { Tpm } from "../../src/tpm/commands.js";
import { swtpmTransport } from "../../src/tpm/transport.js";
import { startBroker, type RunningBroker } from "../../tools/dev-broker/server.js";
import { memoryStore } from "../../tools/dev-broker/store.js";
import { askFile, listen } from "../helpers/askpass.js";
import { tempDir } from "../helpers/bin.js";
import { fixtureBytes, fixtureText, headerFile } from "../helpers/fixtures.js";
import { startSwtpm, type Swtpm } from "../helpers/swtpm.js";
import { runUnlockWith } from "../helpers/unlock-harness.js";

let sw: Swtpm;
let broker: RunningBroker;
const extend = Buffer.from(JSON.parse(fixtureText("pcr.json")).extend[0], "hex");
const tpmPass = fixtureText("tpm2-import/tpm2-passphrase.txt").trim();
const recovery = fixtureText("tpm2-import/recovery-passphrase.txt").trim();
const types = (f: string) => parseLuks2(new Uint8Array(readFileSync(f))).tokens.map((t) => t.type);
const uuidOf = (f: string) => parseLuks2(new Uint8Array(readFileSync(f))).uuid;

beforeAll(async () => {
  sw = await startSwtpm();
  const t = new Tpm(await swtpmTransport("127.0.0.1", sw.port));
  await t.pcrExtend(7, "sha256", extend); // the PCR 7 the owner sealed to
  t.transport.close();
  broker = await startBroker({ store: memoryStore({ "cvm/luks/root": recovery }), policy: { allowTees: ["sample"], denyAll: false }, dev: true });
});
afterAll(async () => {
  await broker?.close();
  await sw?.stop();
});

const config = (device: string, spec: string, resource?: string) => ({
  ...(resource ? { broker: { url: broker.url, insecure_http: true }, tee: { allow_simulated: true } } : {}),
  deadline_s: 20,
  tpm: { device: spec, tokens: true, srk: Buffer.from(fixtureBytes("tpm2-import/srk.pub")).toString("base64") },
  volumes: [{ name: "root", device, ...(resource ? { resource } : {}) }],
});

/** systemd-cryptsetup's side: a password request for `device` in a directory of its own. */
async function request(device: string) {
  const dir = tempDir("ask-");
  const l = listen(dir, "root");
  await l.ready;
  writeFileSync(join(dir, "ask.1"), askFile(join(dir, "sck.root"), `cryptsetup:${device}`));
  return { dir, got: l.got };
}

describe.runIf(existsSync(REPLY_BINARY))("unlock on a vTPM image's first boot (swtpm, cryptsetup, systemd-reply-password)", () => {
  it("converts the tpm2-import token and answers systemd-cryptsetup with the proven passphrase", async () => {
    const f = headerFile("tpm2-import");
    const req = await request(f);
    const r = await runUnlockWith(makeUnlock({ askpass: { dir: req.dir, pollMs: 50 }, luksActive: () => false }), config(f, sw.spec));
    expect(r.ok, r.error?.message).toBe(true);
    expect(r.status).toBe("done");
    expect(r.data!.volumes).toEqual([{ name: "root", device: f, source: "tpm2-import" }]);
    expect(await req.got).toBe(`+${tpmPass}\0`);
    expect(types(f)).toEqual(["systemd-tpm2"]);
    expect(r.lines.some((l) => l.includes("converted tpm2-import token 0 (keyslot 1)"))).toBe(true);
    for (const l of r.lines) expect(l).not.toContain(tpmPass);
  });

  it("systemd-cryptsetup opened the volume from the new token first: no request comes, and that is done too", async () => {
    const f = headerFile("tpm2-import");
    const uuid = uuidOf(f);
    const asked: string[] = [];
    const r = await runUnlockWith(makeUnlock({ askpass: { dir: tempDir("ask-"), pollMs: 50 }, luksActive: (u) => (asked.push(u), u === uuid) }), config(f, sw.spec));
    expect(r.ok, r.error?.message).toBe(true);
    expect(r.status).toBe("done");
    expect(asked).toContain(uuid);
    expect(r.lines.some((l) => l.includes("volume opened without a password request"))).toBe(true);
    expect(types(f)).toEqual(["systemd-tpm2"]);
  });

  it("a later boot: nothing to do, nothing asked, nothing written", async () => {
    const f = headerFile("tpm2-import");
    const first = await request(f);
    expect((await runUnlockWith(makeUnlock({ askpass: { dir: first.dir, pollMs: 50 }, luksActive: () => false }), config(f, sw.spec))).status).toBe("done");
    await first.got;
    const before = readFileSync(f);
    const r = await runUnlockWith(makeUnlock({ askpass: { dir: tempDir("ask-"), pollMs: 50 } }), config(f, sw.spec, "cvm/luks/root"));
    expect(r.ok, r.error?.message).toBe(true);
    expect(r.status).toBe("nothing-to-do");
    expect(broker.stats.auth).toBe(0);
    expect(readFileSync(f).equals(before)).toBe(true);
  });

  it("a tpm2-import token sealed to other PCRs: the header is untouched and the broker's passphrase answers", async () => {
    const other = await startSwtpm(); // PCR 7 never extended
    try {
      const f = headerFile("tpm2-import");
      const before = readFileSync(f);
      const req = await request(f);
      const r = await runUnlockWith(makeUnlock({ askpass: { dir: req.dir, pollMs: 50 }, luksActive: () => false, broker: { sleep: async () => {} } }), config(f, other.spec, "cvm/luks/root"));
      expect(r.ok, r.error?.message).toBe(true);
      expect(r.status).toBe("done");
      expect(await req.got).toBe(`+${recovery}\0`);
      expect(readFileSync(f).equals(before)).toBe(true);
      expect(r.lines.some((l) => /converting its tpm2-import token failed \(the broker is asked instead\).*PCR/.test(l))).toBe(true);
    } finally {
      await other.stop();
    }
  });
});

describe("unlock on a vTPM image, a volume without a broker resource", () => {
  it("a token that will unseal: nothing to do; a stale one is logged and left to systemd-cryptsetup", async () => {
    const f = headerFile("systemd-tpm2");
    const auths = broker.stats.auth;
    let r = await runUnlockWith(makeUnlock(), config(f, sw.spec));
    expect(r.ok, r.error?.message).toBe(true);
    expect(r.status).toBe("nothing-to-do");
    expect(r.data!.skipped).toEqual([{ name: "root", reason: expect.stringMatching(/^systemd-tpm2 token 0 will unseal/) }]);
    const other = await startSwtpm(); // PCR 7 never extended: the token is stale there
    try {
      r = await runUnlockWith(makeUnlock(), config(f, other.spec));
    } finally {
      await other.stop();
    }
    expect(r.ok, r.error?.message).toBe(true);
    expect(r.status).toBe("nothing-to-do");
    expect(r.data!.skipped).toEqual([{ name: "root", reason: expect.stringMatching(/left to systemd-cryptsetup$/) }]);
    expect(r.lines.some((l) => /systemd-tpm2 token 0 is stale/.test(l))).toBe(true);
    expect(broker.stats.auth).toBe(auths);
  });
});

describe("luksActive", () => {
  it("finds a dm-crypt mapping of the volume by its dm UUID, whatever its name", () => {
    const sys = tempDir("sys-");
    const dm = (n: string, uuid: string) => {
      mkdirSync(join(sys, n, "dm"), { recursive: true });
      writeFileSync(join(sys, n, "dm/uuid"), `${uuid}\n`);
    };
    dm("dm-0", "LVM-abc");
    expect(luksActive("9e55d58b-3a36-4e10-bd93-44855a282629", sys)).toBe(false);
    dm("dm-1", "CRYPT-LUKS2-9e55d58b3a364e10bd9344855a282629-luks-9e55d58b-3a36-4e10-bd93-44855a282629");
    expect(luksActive("9e55d58b-3a36-4e10-bd93-44855a282629", sys)).toBe(true);
    expect(luksActive("00000000-3a36-4e10-bd93-44855a282629", sys)).toBe(false);
    expect(luksActive("x", join(sys, "missing"))).toBe(false);
  });
});
