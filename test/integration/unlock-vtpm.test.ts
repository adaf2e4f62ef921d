// The unlock check against a real swtpm and the systemd-tpm2 fixture header: a token whose policy matches
// the current PCRs means "nothing to do" without touching the network; a stale one sends the volume to the
// broker, and the log says the token was stale.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { makeUnlock } from "../../src/cli/unlock.js";
import { Tpm } from "../../src/tpm/commands.js";
import { swtpmTransport } from "../../src/tpm/transport.js";
import { startBroker, type RunningBroker } from "../../tools/dev-broker/server.js";
import { memoryStore } from "../../tools/dev-broker/store.js";
import { fixtureText, headerFile } from "../helpers/fixtures.js";
import { startSwtpm, type Swtpm } from "../helpers/swtpm.js";
import { runUnlockWith } from "../helpers/unlock-harness.js";

let sw: Swtpm;
let broker: RunningBroker;
const recovery = fixtureText("systemd-tpm2/recovery-passphrase.txt");
const extend = Buffer.from(JSON.parse(fixtureText("pcr.json")).extend[0], "hex");

beforeAll(async () => {
  sw = await startSwtpm();
  broker = await startBroker({ store: memoryStore({ "cvm/luks/root": recovery }), policy: { allowTees: ["sample"], denyAll: false }, dev: true });
});
afterAll(async () => {
  await broker?.close();
  await sw?.stop();
});

const config = () => ({
  broker: { url: broker.url, insecure_http: true },
  tee: { allow_simulated: true },
  deadline_s: 20,
  tpm: { device: sw.spec },
  volumes: [{ name: "root", device: headerFile("systemd-tpm2"), resource: "cvm/luks/root" }],
  keyring: { keyring: "@s" },
});
const withTpm = async <T>(fn: (t: Tpm) => Promise<T>) => {
  const t = new Tpm(await swtpmTransport("127.0.0.1", sw.port));
  try {
    return await fn(t);
  } finally {
    t.transport.close();
  }
};

describe("unlock with a systemd-tpm2 token (real swtpm, systemd-cryptenroll 252 header)", () => {
  afterEach(() => {
    broker.stats.auth = 0;
  });

  it("a stale token (PCR 7 not as sealed) goes to the broker, and the log says it was stale", async () => {
    const r = await runUnlockWith(makeUnlock({ broker: { sleep: async () => {} } }), config());
    expect(r.ok, r.error?.message).toBe(true);
    expect(r.status).toBe("done");
    expect(broker.stats.auth).toBe(1);
    expect(r.lines.some((l) => /systemd-tpm2 token 0 is stale \(PCRs changed since it was sealed\)/.test(l))).toBe(true);
    expect(r.native.keys.size).toBe(1);
  });

  it("a token that will unseal means nothing to do: no network, nothing in the keyring", async () => {
    await withTpm((t) => t.pcrExtend(7, "sha256", extend));
    const r = await runUnlockWith(makeUnlock(), config());
    expect(r.ok, r.error?.message).toBe(true);
    expect(r.status).toBe("nothing-to-do");
    expect(r.data!.skipped).toEqual([{ name: "root", reason: expect.stringMatching(/^systemd-tpm2 token 0 will unseal/) }]);
    expect(broker.stats.auth).toBe(0);
    expect(r.native.keys.size).toBe(0);
    // nothing left loaded on the TPM (swtpm has no resource manager)
    expect(await withTpm((t) => t.handles(0x80000000))).toEqual([]);
  });

  it("a token that would unseal while the TPM is in dictionary-attack lockout: the broker unlocks, and the log says why", async () => {
    // Lockout as a host gets it by power-cycling the guest: here one real authorization failure with maxTries 1
    // (tpm2-tools on the same swtpm), then cleared again for the tests after this one.
    const { execFileSync } = await import("node:child_process");
    const tools = (args: string[]) => execFileSync(args[0]!, args.slice(1), { env: { ...process.env, TPM2TOOLS_TCTI: `swtpm:host=127.0.0.1,port=${sw.port}` }, stdio: ["ignore", "pipe", "pipe"] });
    // PCR 7 as sealed (the test before this one extended it already when it ran): the token would unseal.
    if ((await runUnlockWith(makeUnlock(), config())).status !== "nothing-to-do") await withTpm((t) => t.pcrExtend(7, "sha256", extend));
    expect((await runUnlockWith(makeUnlock(), config())).status).toBe("nothing-to-do");
    broker.stats.auth = 0;
    const before = await withTpm((t) => t.lockout());
    expect(before.inLockout).toBe(false);
    tools(["tpm2_dictionarylockout", "-s", "-n", "1", "-t", "600", "-l", "600"]);
    tools(["tpm2_nvdefine", "-C", "o", "-s", "8", "-a", "authread|authwrite", "-p", "good", "0x1500016"]);
    expect(() => tools(["tpm2_nvread", "-P", "bad", "0x1500016"])).toThrow();
    try {
      expect(await withTpm((t) => t.lockout())).toEqual({ inLockout: true, failedTries: 1, maxTries: 1, intervalS: 600 });
      const r = await runUnlockWith(makeUnlock({ broker: { sleep: async () => {} } }), config());
      expect(r.ok, r.error?.message).toBe(true);
      expect(r.status).toBe("done");
      expect(broker.stats.auth).toBe(1);
      expect(r.lines.some((l) => /systemd-tpm2 token 0 is blocked by the TPM's lockout: policy matches, but the TPM is in dictionary-attack lockout \(1 of 1 failed tries; one is forgiven every 600 s\)/.test(l))).toBe(true);
    } finally {
      tools(["tpm2_dictionarylockout", "-c"]);
      tools(["tpm2_dictionarylockout", "-s", "-n", String(before.maxTries ?? 3), "-t", String(before.intervalS ?? 1000), "-l", "1000"]);
      tools(["tpm2_nvundefine", "-C", "o", "0x1500016"]);
    }
    // Out of lockout, the same token means nothing to do again.
    expect((await withTpm((t) => t.lockout())).inLockout).toBe(false);
    const again = await runUnlockWith(makeUnlock(), config());
    expect(again.status).toBe("nothing-to-do");
  });

  it("no TPM at the configured device: the token cannot be checked, the broker unlocks", async () => {
    const r = await runUnlockWith(makeUnlock({ broker: { sleep: async () => {} } }), { ...config(), tpm: { device: "swtpm:host=127.0.0.1,port=9" } });
    expect(r.ok, r.error?.message).toBe(true);
    expect(r.status).toBe("done");
    expect(r.lines.some((l) => /no TPM to check/.test(l))).toBe(true);
  });
});
