// Reseal on rescue, on the real parts: swtpm with the fixtures' state (PCR 7 not as the systemd-tpm2 fixture
// token was sealed: the token is stale), the dev broker releasing the recovery passphrase, systemd's own
// systemd-reply-password answering a stand-in for systemd-cryptsetup's request, cryptsetup writing the
// header. After the broker unlocked the volume, the agent adds a keyslot and a systemd-tpm2 token sealed to
// the current PCRs, proven before it is written; systemd 252's own plugin then unlocks from it (the next
// boot needs no broker). Without a pinned storage key nothing is unsealed or sealed, and the header is as it was.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeUnlock } from "../../src/cli/unlock.js";
import { REPLY_BINARY } from "../../src/keyring/askpass.js";
import { parseLuks2 } from "../../src/luks/header.js";
import { startBroker, type RunningBroker } from "../../tools/dev-broker/server.js";
import { memoryStore } from "../../tools/dev-broker/store.js";
import { askFile, listen } from "../helpers/askpass.js";
import { tempDir } from "../helpers/bin.js";
import { fixtureBytes, fixtureText, headerFile } from "../helpers/fixtures.js";
import { pluginUnlocks } from "../helpers/plugin.js";
import { startSwtpm, type Swtpm } from "../helpers/swtpm.js";
import { runUnlockWith } from "../helpers/unlock-harness.js";

let sw: Swtpm;
let broker: RunningBroker;
const recovery = fixtureText("systemd-tpm2/recovery-passphrase.txt");
const header = (f: string) => parseLuks2(new Uint8Array(readFileSync(f)));

beforeAll(async () => {
  sw = await startSwtpm(); // PCR 7 as booted, not as the fixture token was sealed: stale
  broker = await startBroker({ store: memoryStore({ "cvm/luks/root": recovery }), policy: { allowTees: ["sample"], denyAll: false }, dev: true });
});
afterAll(async () => {
  await broker?.close();
  await sw?.stop();
});

const config = (device: string, srk: boolean) => ({
  broker: { url: broker.url, insecure_http: true },
  tee: { allow_simulated: true },
  deadline_s: 30,
  tpm: { device: sw.spec, tokens: true, ...(srk ? { srk: Buffer.from(fixtureBytes("tpm2-import/srk.pub")).toString("base64") } : {}) },
  volumes: [{ name: "root", device, resource: "cvm/luks/root" }],
});

async function unlockWithRequest(f: string, srk: boolean) {
  const dir = tempDir("ask-");
  const l = listen(dir, "root");
  await l.ready;
  writeFileSync(join(dir, "ask.1"), askFile(join(dir, "sck.root"), `cryptsetup:${f}`));
  const r = await runUnlockWith(makeUnlock({ askpass: { dir, pollMs: 50 }, luksActive: () => false, broker: { sleep: async () => {} } }), config(f, srk));
  return { r, got: await l.got };
}

describe.runIf(existsSync(REPLY_BINARY))("reseal on rescue (swtpm, dev broker, cryptsetup, systemd 252's plugin)", () => {
  it("a stale token, the broker unlocks: a keyslot and a token for the current PCRs are added, and systemd's plugin unlocks from it", async () => {
    const f = headerFile("systemd-tpm2");
    const before = header(f);
    expect(pluginUnlocks(f, sw.port)).toBe(false); // stale: this boot needs the broker
    const { r, got } = await unlockWithRequest(f, true);
    expect(r.ok, r.error?.message).toBe(true);
    expect(got).toBe(`+${recovery}\0`);
    const after = header(f);
    const added = after.keyslots.find((k) => !before.keyslots.some((b) => b.id === k.id))!;
    expect(r.data!.rescued).toEqual([{ name: "root", keyslot: added.id }]);
    expect(added.kdf).toMatchObject({ type: "pbkdf2", iterations: 1000 }); // a 256-bit secret: minimal PBKDF, as systemd-cryptenroll
    const tokens = after.tokens.filter((t) => t.type === "systemd-tpm2");
    expect(tokens.map((t) => t.keyslots)).toEqual([before.tokens[0]!.keyslots, [added.id]]); // the stale token stays for finalize
    expect(pluginUnlocks(f, sw.port)).toBe(true); // the next boot: no broker
    expect(r.lines.some((l) => l.includes(`resealed on rescue: keyslot ${added.id}`))).toBe(true);
    for (const l of r.lines) expect(l).not.toContain(recovery);
  });

  it("no pinned storage key: nothing sealed, nothing written, the boot still unlocks, the warning says why", async () => {
    const f = headerFile("systemd-tpm2");
    const before = header(f);
    const { r } = await unlockWithRequest(f, false);
    expect(r.ok, r.error?.message).toBe(true);
    expect(r.data!.rescued).toBeUndefined();
    expect(r.lines.some((l) => /reseal on rescue failed, the next boot needs the broker again: no pinned storage key/.test(l))).toBe(true);
    expect(header(f).seqid).toBe(before.seqid); // not one header write
  });
});
